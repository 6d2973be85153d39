"""Tokens that expire or die at Meta, end to end: `tokenvault` processes talking HTTP to the simulator's server,
notifications delivered by apprise to a real ``json://`` endpoint on 127.0.0.1 (the ``webhook`` fixture).

* an imported 60-day token three days from expiry is *refreshed* by `run-due` (one exchange at Meta, no mint,
  a new version active and valid, the old one still working), a never-expiring token is left alone;
* a token invalidated at Meta is found by `token verify --all` (exit 6, status invalidated) and reissued by
  the next `run-due` with a new active version Meta accepts;
* SIGKILL after each journaled step of a refresh and of a reissue: the next `run-due` finishes it, with
  exactly one exchange (or mint) at Meta;
* `exec --restart-on-rotate` picks up a refreshed version.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cli_support import SupervisedChild, short_sha
from graph_world import SCOPES, World, make_world, served_world, valid_minted
from plugins.webhook import Webhook

from meta_tokenvault.types import TokenSource, TokenStatus

ROOT = Path(__file__).resolve().parent.parent


def tokenvault(world: World, url: str, *args: str, stdin: str | None = None, extra: dict[str, str] | None = None,
               timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = world.env(url)
    env.update(extra or {})
    return subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, input=stdin if stdin is not None else "")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[World, str]]:
    """A world whose simulator clock starts 57 days ago (the `tokenvault` processes use the real clock)."""
    yield from served_world(tmp_path, start=datetime.now(UTC) - timedelta(days=57))


def exchanges(world: World, since: int = 0) -> list[str]:
    """The fb_exchange_token calls Meta (the simulator) received after request #``since``."""
    return [r.route for r in world.sim.requests[since:]
            if r.route == "/oauth/access_token" and r.query.get("grant_type") == "fb_exchange_token"]


def mints(world: World, since: int = 0) -> list[str]:
    return [r.route for r in world.sim.requests[since:] if r.route.endswith("/access_tokens")]


@pytest.mark.slow
def test_run_due_refreshes_a_60_day_token_three_days_from_expiry_and_leaves_a_permanent_one(
        served: tuple[World, str], webhook: Webhook) -> None:
    world, url = served
    ids = world.ids
    expiring = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES, expiring=True)  # 57 days ago
    permanent = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES)
    world.sim.clock.set(datetime.now(UTC))  # Meta's now: the 60-day token expires in three days
    notify = {"TOKENVAULT_NOTIFY_URLS": webhook.url()}
    for label, value in (("exp", expiring), ("perm", permanent)):
        imported = tokenvault(world, url, "token", "import", label, "--business", "acme", "--json", stdin=value)
        assert imported.returncode == 0, imported.stderr
    shown = json.loads(tokenvault(world, url, "token", "show", "exp", "--json").stdout)
    assert shown["expires_at"] is not None and shown["data_access_expires_at"] is not None
    listed = tokenvault(world, url, "token", "list")
    assert "in 2 days" in listed.stdout or "in 3 days" in listed.stdout, listed.stdout  # a countdown
    doctor = tokenvault(world, url, "doctor", "--json")
    (expiring_check,) = [c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "expiring tokens"]
    assert expiring_check["warning"] and "exp expires in" in expiring_check["detail"]
    assert "perm" not in expiring_check["detail"]

    before = len(world.sim.requests)
    ran = tokenvault(world, url, "run-due", "--json", extra=notify)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["refreshed"] == ["exp"] and report["policy_rotated"] == [] and report["failed"] == []
    assert len(exchanges(world, before)) == 1 and mints(world, before) == []  # refreshed, not re-minted
    exchange = next(r for r in world.sim.requests[before:] if r.route == "/oauth/access_token")
    assert exchange.query["set_token_expires_in_60_days"] == "true" and exchange.query["client_id"] == ids.app_id

    m = world.manager()
    record = m.show_token("exp")
    assert record.version == 2 and record.status is TokenStatus.ACTIVE and record.source is TokenSource.REFRESHED
    assert [v.status for v in record.history] == [TokenStatus.ACTIVE, TokenStatus.RETIRED]
    new = m.reveal("exp").reveal()
    assert world.sim.token_state(new) == "valid" and world.sim.token(new).via == "fb_exchange_token"
    assert world.sim.token_state(expiring) == "valid"  # the old one works until its own expiry: not revoked
    assert record.expires_at is not None and record.expires_at > datetime.now(UTC) + timedelta(days=59)
    perm = m.show_token("perm")
    assert perm.version == 1 and perm.expires_at is None  # never refreshed (it would become a 60-day token)
    assert world.sim.token(permanent).expiring is False
    m.close()
    assert webhook.titles() == ["tokenvault: exp refreshed"]
    assert expiring not in webhook.requests[0]["body"] and new not in webhook.requests[0]["body"]

    again = tokenvault(world, url, "run-due", "--json", extra=notify)
    assert json.loads(again.stdout)["refreshed"] == [] and len(exchanges(world, before)) == 1


@pytest.mark.slow
def test_a_token_invalidated_at_meta_is_found_by_verify_all_and_reissued_by_run_due(
        served: tuple[World, str], webhook: Webhook) -> None:
    world, url = served
    world.sim.clock.set(datetime.now(UTC))
    ids = world.ids
    value = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES)
    healthy = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES)
    notify = {"TOKENVAULT_NOTIFY_URLS": webhook.url()}
    for label, token in (("prod", value), ("other", healthy)):
        assert tokenvault(world, url, "token", "import", label, "--business", "acme", stdin=token).returncode == 0
    # Meta invalidates the token out of band (GitHub secret scanning found it), through the control endpoint
    answer = httpx.post(f"{url}/_sim/invalidate", json={"token": value, "subcode": 460}, timeout=10)
    assert answer.status_code == 200 and answer.json()["state"] == "revoked"

    checked = tokenvault(world, url, "token", "verify", "--all", "--json", extra=notify)
    assert checked.returncode == 6, checked.stderr
    report = json.loads(checked.stdout)
    assert (report["total"], report["valid"], report["invalid"]) == (2, 1, 1)
    (dead,) = [c for c in report["checks"] if not c["valid"]]
    assert dead["label"] == "prod" and dead["status"] == "invalidated" and "invalidated" in dead["error"]
    shown = json.loads(tokenvault(world, url, "token", "show", "prod", "--json").stdout)
    assert shown["status"] == "invalidated"
    listed = tokenvault(world, url, "token", "list")
    assert "invalidated" in listed.stdout
    m = world.manager()
    (event,) = [e for e in m.audit_events(label="prod") if e.action == "token.invalidated"]
    assert event.details["subcode"] == 460
    m.close()
    assert webhook.titles() == ["tokenvault: prod invalidated"]
    # checked again before run-due reissued it: still dead, still exit 6 (a monitor keeps alerting)
    again = tokenvault(world, url, "token", "verify", "--all", "--json")
    assert again.returncode == 6 and json.loads(again.stdout)["still_invalidated"] == ["prod"]

    before = len(world.sim.requests)
    ran = tokenvault(world, url, "run-due", "--json", extra=notify)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["reissued"] == ["prod"]
    assert len(mints(world, before)) == 1  # through an eligible admin
    assert not [r for r in world.sim.requests[before:] if r.route == "/oauth/revoke"]  # nothing left to revoke
    m = world.manager()
    record = m.show_token("prod")
    assert record.version == 2 and record.status is TokenStatus.ACTIVE
    assert [v.status for v in record.history] == [TokenStatus.ACTIVE, TokenStatus.INVALIDATED]
    new = m.reveal("prod").reveal()
    assert world.sim.token_state(new) == "valid"
    m.close()
    # Meta accepts the new one: a check now exits 0
    assert tokenvault(world, url, "token", "verify", "--all").returncode == 0
    assert webhook.titles()[1:] == ["tokenvault: prod reissued"]


# ---------------------------------------------------------------------------------------------- crash safety
REFRESH_STEPS = ["minting", "stored", "verified"]


@pytest.mark.slow
@pytest.mark.parametrize("step", REFRESH_STEPS, ids=[f"refresh-after-{s}" for s in REFRESH_STEPS])
def test_sigkill_after_each_refresh_step_then_run_due_finishes(served: tuple[World, str], step: str) -> None:
    world, url = served
    ids = world.ids
    old = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES, expiring=True)
    world.sim.clock.set(datetime.now(UTC))
    assert tokenvault(world, url, "token", "import", "exp", "--business", "acme", stdin=old).returncode == 0
    before = len(world.sim.requests)
    crashed = tokenvault(world, url, "run-due", extra={"TOKENVAULT_TEST_MODE": "1",
                                                       "TOKENVAULT_TEST_CRASH_AFTER": step})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = tokenvault(world, url, "run-due", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] == ["exp"]  # "done" is written behind "verified": resumed too
    m = world.manager()
    record = m.show_token("exp")
    assert record.version == 2 and [v.status for v in record.history].count(TokenStatus.ACTIVE) == 1
    assert record.status is TokenStatus.ACTIVE and record.source is TokenSource.REFRESHED
    current = m.reveal("exp").reveal()
    assert world.sim.token_state(current) == "valid"
    assert len(exchanges(world, before)) == 1 and mints(world, before) == []  # one exchange, nothing lost
    assert [t for t in world.sim.tokens if t.via == "fb_exchange_token"][0].value == current
    m.close()


REISSUE_STEPS = ["minting", "stored", "verified"]


@pytest.mark.slow
@pytest.mark.parametrize("step", REISSUE_STEPS, ids=[f"reissue-after-{s}" for s in REISSUE_STEPS])
def test_sigkill_after_each_reissue_step_then_run_due_finishes(served: tuple[World, str], step: str) -> None:
    world, url = served
    world.sim.clock.set(datetime.now(UTC))
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    dead = m.reveal("prod").reveal()
    world.sim.invalidate(dead, 467)
    m.verify("prod")
    assert m.show_token("prod").status is TokenStatus.INVALIDATED
    m.close()
    minted = len(world.sim.minted)
    crashed = tokenvault(world, url, "run-due", extra={"TOKENVAULT_TEST_MODE": "1",
                                                       "TOKENVAULT_TEST_CRASH_AFTER": step})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = tokenvault(world, url, "run-due", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] == ["prod"]
    m = world.manager()
    record = m.show_token("prod")
    assert record.version == 2 and record.status is TokenStatus.ACTIVE
    assert [v.status for v in record.history] == [TokenStatus.ACTIVE, TokenStatus.INVALIDATED]
    assert valid_minted(world.sim) == [m.reveal("prod").reveal()]  # nothing minted is lost
    assert len(world.sim.minted) == minted + 1
    m.close()


@pytest.mark.slow
def test_exec_restart_on_rotate_picks_up_a_refreshed_version(served: tuple[World, str]) -> None:
    world, url = served
    ids = world.ids
    old = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES, expiring=True)
    world.sim.clock.set(datetime.now(UTC))
    assert tokenvault(world, url, "token", "import", "exp", "--business", "acme", stdin=old).returncode == 0
    with SupervisedChild("exp", world.env(url), ROOT) as child:
        assert child.serving() == short_sha(old)
        ran = tokenvault(world, url, "run-due", "--json")
        assert json.loads(ran.stdout)["refreshed"] == ["exp"], ran.stderr
        m = world.manager()
        new = m.reveal("exp").reveal()
        m.close()
        assert child.serving() == short_sha(new)  # restarted with the refreshed token
        code, err = child.stop()
        assert code == 0, err
        assert old not in err and new not in err


def test_an_interrupted_pass_never_refreshes_twice(tmp_path: Path) -> None:
    """A refresh journaled by one pass is resumed, not restarted, by the next (in-process, transport)."""
    world = make_world(tmp_path)
    m = world.manager()
    m.generate_token("exp", business="acme", scopes=SCOPES, expiring=True)
    m.close()
    world.sim.clock.advance(days=55)
    world.sim.fail_next(2, kind="http503", path_contains="debug_token")  # the check, then the new token's check
    m = world.manager(max_attempts=1)
    first = m.run_due()
    m.close()
    assert first.refreshed == [] and any(f.startswith("exp: ") for f in first.failed)
    m = world.manager()
    second = m.run_due()
    assert second.resumed == ["exp"] and second.refreshed == []  # finished from the journal
    assert len([t for t in world.sim.tokens if t.via == "fb_exchange_token"]) == 1
    assert m.show_token("exp").source is TokenSource.REFRESHED
    m.close()


@pytest.mark.slow
def test_token_refresh_that_fell_back_to_a_rotation_is_not_announced_as_refreshed(
        served: tuple[World, str], webhook: Webhook) -> None:
    """Meta refuses the exchange: `token refresh` rotates instead, and the notifications say so (not "refreshed")."""
    world, url = served
    ids = world.ids
    expiring = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES, expiring=True)
    world.sim.clock.set(datetime.now(UTC))
    assert tokenvault(world, url, "token", "import", "exp", "--business", "acme", stdin=expiring).returncode == 0
    world.sim.fail_next(1, kind="code100", path_contains="oauth/access_token")
    ran = tokenvault(world, url, "token", "refresh", "exp", extra={"TOKENVAULT_NOTIFY_URLS": webhook.url()})
    assert ran.returncode == 0, ran.stderr
    assert "Refreshed" not in ran.stderr and "rotated it through an admin system user instead" in ran.stderr
    shown = json.loads(tokenvault(world, url, "token", "show", "exp", "--json").stdout)
    assert shown["version"] == 2 and shown["source"] == "rotated"
    assert world.sim.token_state(expiring) == "revoked"  # a rotation: the old one revoked
    titles = webhook.titles()
    assert "tokenvault: exp refreshed" not in titles, titles
    assert titles[-1] == "tokenvault: exp rotated instead of refreshed", titles


def test_an_unverified_import_has_an_unknown_expiry_not_never(served: tuple[World, str]) -> None:
    """Imported with --no-verify, a 60-day token's expiry was never read: shown as not known (not "never"), and
    `token refresh` says to verify it first instead of calling it a never-expiring token."""
    world, url = served
    ids = world.ids
    expiring = world.sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES, expiring=True)
    imported = tokenvault(world, url, "token", "import", "exp", "--business", "acme", "--system-user",
                          ids.old_admin_id, "--scopes", ",".join(SCOPES), "--no-verify", stdin=expiring)
    assert imported.returncode == 0, imported.stderr
    assert "expires              not known" in tokenvault(world, url, "token", "show", "exp").stdout
    assert "never" not in tokenvault(world, url, "token", "list").stdout
    refused = tokenvault(world, url, "token", "refresh", "exp")
    assert refused.returncode == 2 and "never expires" not in refused.stderr
    assert "`tokenvault token verify exp`" in refused.stderr
    assert tokenvault(world, url, "token", "verify", "exp").returncode == 0
    assert tokenvault(world, url, "token", "refresh", "exp").returncode == 0
