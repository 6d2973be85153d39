"""Detection, renewal policy and their edges, in-process against the simulator (httpx transport, virtual time):
on_invalid = alert, a refused refresh falling back to a rotation, renewal blocked by the seven-day rule,
verify_interval, LiveToken following refreshed and reissued versions, settings, the countdown, doctor, and
the renewal migration on a database made by the previous tokenvault."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import CliRunner, served_business
from graph_world import SCOPES, World, make_world

from meta_tokenvault import migrations, policy
from meta_tokenvault.api import TokenVault
from meta_tokenvault.config import Settings, parse_duration
from meta_tokenvault.errors import InvalidInput
from meta_tokenvault.service import TokenManager
from meta_tokenvault.types import TokenSource, TokenStatus


@dataclass
class Recorder:
    """A Notifier that keeps what it was told."""

    sent: list[tuple[str, str]] = field(default_factory=list)

    def notify(self, title: str, body: str) -> bool:
        self.sent.append((title, body))
        return True

    def titles(self) -> list[str]:
        return [t for t, _ in self.sent]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def manager(world: World) -> tuple[TokenManager, Recorder]:
    m = world.manager()
    recorder = Recorder()
    m.ctx.notifier = recorder
    return m, recorder


def debug_calls(world: World, since: int = 0) -> int:
    return sum(r.route == "/debug_token" for r in world.sim.requests[since:])


def make_admins_young(world: World, m: TokenManager) -> None:
    """Every admin system user younger than seven days, for Meta and for tokenvault: minting is blocked."""
    for knob in ("mint_requires_old_admin", "seven_day_rule_on_mint"):  # Meta applies the rule to minting
        setattr(world.sim, knob, True)  # (the knob's name differs between simulator versions)
    now = world.sim.clock.now()
    for su_id in (world.ids.old_admin_id, world.ids.new_admin_id):
        world.sim.system_user(su_id).created_time = now - timedelta(hours=1)
        m.set_system_user_created(su_id, now - timedelta(hours=1))


def test_on_invalid_alert_is_detected_and_notified_but_not_reissued(world: World) -> None:
    m, recorder = manager(world)
    m.generate_token("watched", business="acme", scopes=SCOPES, on_invalid="alert")
    assert m.show_token("watched").on_invalid == "alert"
    world.sim.invalidate(m.reveal("watched").reveal(), 458)
    world.sim.clock.advance(hours=25)  # past verify_interval: run-due checks it
    minted = len(world.sim.minted)
    report = m.run_due()
    assert report.invalidated == ["watched"] and report.alert_only == ["watched"] and report.reissued == []
    assert len(world.sim.minted) == minted
    assert m.show_token("watched").status is TokenStatus.INVALIDATED
    assert recorder.titles() == ["tokenvault: watched invalidated"]
    assert m.run_due().alert_only == ["watched"] and recorder.titles() == ["tokenvault: watched invalidated"]
    m.close()


def test_a_refused_refresh_falls_back_to_a_rotation_through_an_admin(world: World) -> None:
    m, recorder = manager(world)
    m.generate_token("exp", business="acme", scopes=SCOPES, expiring=True)
    old = m.reveal("exp").reveal()
    world.sim.clock.advance(days=52)
    world.sim.fail_next(1, kind="code100", path_contains="oauth/access_token")  # Meta refuses the exchange
    report = m.run_due()
    assert report.refreshed == [] and report.policy_rotated == ["exp"] and report.failed == []
    record = m.show_token("exp")
    assert record.version == 2 and record.source is TokenSource.ROTATED
    assert world.sim.token_state(old) == "revoked"  # a rotation revokes the old token as usual
    assert world.sim.token(m.reveal("exp").reveal()).via == "access_tokens"
    assert recorder.titles() == ["tokenvault: refresh of exp failed", "tokenvault: exp rotated instead of refreshed"]
    rotation = m.store.get_rotation(1)
    assert rotation.kind == "rotate" and rotation.error is not None
    m.close()


def test_renewal_blocked_by_the_seven_day_rule_leaves_a_reminder_and_says_it_expires_first(world: World) -> None:
    m, recorder = manager(world)
    m.generate_token("exp", business="acme", scopes=SCOPES, expiring=True)
    world.sim.clock.advance(days=57)  # three days left
    make_admins_young(world, m)
    world.sim.fail_next(1, kind="code100", path_contains="oauth/access_token")
    report = m.run_due()
    assert report.still_waiting == ["exp"] and report.refreshed == [] and report.failed == []
    (reminder,) = m.reminders(open_only=True)
    assert reminder.label == "exp" and reminder.due_at > world.sim.clock.now() + timedelta(days=6)
    assert recorder.titles() == ["tokenvault: refresh of exp failed",
                                 "tokenvault: exp expires before it can be renewed"]
    assert "Business Settings" in recorder.sent[-1][1]
    assert m.show_token("exp").version == 1  # the current token stays active meanwhile
    m.close()


def test_a_reissue_blocked_by_the_seven_day_rule_is_deferred_and_says_nothing_works(world: World) -> None:
    m, recorder = manager(world)
    m.generate_token("prod", business="acme", scopes=SCOPES)
    world.sim.invalidate(m.reveal("prod").reveal())
    make_admins_young(world, m)
    world.sim.clock.advance(hours=25)
    report = m.run_due()
    assert report.invalidated == ["prod"] and report.still_waiting == ["prod"] and report.reissued == []
    assert recorder.titles() == ["tokenvault: prod invalidated", "tokenvault: reissue of prod deferred"]
    assert "NO working token" in recorder.sent[-1][1]
    world.sim.clock.advance(days=7)  # the window opens: run-due finishes the deferred reissue
    later = m.run_due()
    assert later.completed == ["prod"]
    record = m.show_token("prod")
    assert record.version == 2 and record.status is TokenStatus.ACTIVE
    assert world.sim.token_state(m.reveal("prod").reveal()) == "valid"
    m.close()


def test_run_due_checks_only_tokens_not_verified_within_the_interval(world: World) -> None:
    m, _ = manager(world)
    for label in ("a", "b"):
        m.generate_token(label, business="acme", scopes=SCOPES)  # verified when minted
    start = len(world.sim.requests)
    world.sim.clock.advance(hours=23)
    assert m.run_due().verified == 0 and debug_calls(world, start) == 0
    world.sim.clock.advance(hours=2)
    assert m.run_due().verified == 2 and debug_calls(world, start) == 2
    assert m.run_due().verified == 0 and debug_calls(world, start) == 2
    m.close()


def test_a_never_expiring_token_is_never_refreshed(world: World) -> None:
    m, _ = manager(world)
    m.generate_token("perm", business="acme", scopes=SCOPES)
    world.sim.clock.advance(days=400)
    assert m.run_due().refreshed == []
    assert not [r for r in world.sim.requests if r.route == "/oauth/access_token"]
    with pytest.raises(InvalidInput, match="never expires"):
        m.refresh("perm")
    m.close()


def test_live_token_follows_refreshed_and_reissued_versions(world: World) -> None:
    m, _ = manager(world)
    m.generate_token("exp", business="acme", scopes=SCOPES, expiring=True)
    live = TokenVault(m).live("exp", check_every=0)
    first = live.get()
    world.sim.clock.advance(days=55)
    assert m.run_due().refreshed == ["exp"]
    refreshed = live.get()
    assert refreshed != first and live.version == 2 and world.sim.token_state(refreshed.reveal()) == "valid"
    world.sim.invalidate(refreshed.reveal())
    m.verify("exp")
    assert m.run_due().reissued == ["exp"]
    assert live.refresh() is True  # a newer version was loaded: the request is worth repeating
    assert live.version == 3 and world.sim.token_state(live.get().reveal()) == "valid"
    m.close()


def test_verify_marks_only_an_active_token_invalidated(world: World) -> None:
    m, recorder = manager(world)
    m.generate_token("prod", business="acme", scopes=SCOPES)
    world.sim.revoke(m.reveal("prod").reveal())
    record, info = m.verify("prod")
    assert not info.is_valid and info.error_code == 190 and info.error_subcode == 467
    assert record.status is TokenStatus.INVALIDATED
    again, _ = m.verify("prod")  # checked again: still invalidated, audited once as found dead
    assert again.status is TokenStatus.INVALIDATED
    assert [e.action for e in m.audit_events(label="prod")].count("token.invalidated") == 1
    assert recorder.titles() == ["tokenvault: prod invalidated"]
    m.close()


def test_verify_all_checks_many_tokens_in_parallel_and_records_each(world: World) -> None:
    m, recorder = manager(world)
    for i in range(12):
        m.generate_token(f"t{i:02d}", business="acme", scopes=SCOPES)
    dead = [f"t{i:02d}" for i in (3, 7)]
    for label in dead:
        world.sim.invalidate(m.reveal(label).reveal(), 460)
    seen: list[str] = []
    checks = m.verify_all(concurrency=4, progress=lambda c: seen.append(c.label))
    assert [c.label for c in checks] == [f"t{i:02d}" for i in range(12)]
    assert sorted(seen) == [c.label for c in checks]
    assert [c.label for c in checks if c.valid is False] == dead
    assert {t.label for t in m.list_tokens() if t.status is TokenStatus.INVALIDATED} == set(dead)
    assert recorder.titles() == [f"tokenvault: {label} invalidated" for label in dead]
    m.close()


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(days=12, hours=3), "in 12 days"), (timedelta(hours=5), "in 5 hours"),
    (timedelta(minutes=30), "in 30 minutes"), (timedelta(seconds=30), "now"), (-timedelta(days=3), "3 days ago"),
], ids=["days", "hours", "minutes", "now", "past"])
def test_countdown(delta: timedelta, text: str) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert policy.countdown(now + delta, now=now) == text
    assert policy.countdown(None, now=now) == "never"


def test_refresh_due_and_verify_due() -> None:
    now, margin = datetime(2026, 1, 1, tzinfo=UTC), timedelta(days=10)
    assert policy.refresh_due(now + timedelta(days=10), now=now, margin=margin)
    assert not policy.refresh_due(now + timedelta(days=10, seconds=1), now=now, margin=margin)
    assert not policy.refresh_due(None, now=now, margin=margin)
    assert policy.verify_due(None, now=now, interval=timedelta(hours=24))
    assert not policy.verify_due(now - timedelta(hours=23), now=now, interval=timedelta(hours=24))


def test_renewal_settings_resolve_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.resolve(environ={"TOKENVAULT_HOME": str(tmp_path), "TOKENVAULT_REFRESH_MARGIN_DAYS": "5",
                                         "TOKENVAULT_VERIFY_INTERVAL": "12h"})
    assert settings.renewal == policy.Renewal(timedelta(days=5), timedelta(hours=12))
    assert Settings.resolve(environ={"TOKENVAULT_HOME": str(tmp_path)}).renewal == policy.Renewal()
    with pytest.raises(InvalidInput, match="refresh margin"):
        Settings.resolve(environ={"TOKENVAULT_HOME": str(tmp_path), "TOKENVAULT_REFRESH_MARGIN_DAYS": "sixty"})
    with pytest.raises(InvalidInput, match="duration"):
        Settings.resolve(environ={"TOKENVAULT_HOME": str(tmp_path), "TOKENVAULT_VERIFY_INTERVAL": "soon"})
    assert parse_duration("90") == timedelta(seconds=90) and parse_duration("2d") == timedelta(days=2)


def test_a_context_built_without_renewal_or_notifier_takes_the_defaults() -> None:
    # built on first use (the reads never need them), the same defaults as before: no notifications, 10 days
    from meta_tokenvault.context import VaultContext
    from meta_tokenvault.ports.notify import NullNotifier

    ctx = VaultContext(store=None, secrets=None, keys=None)  # type: ignore[arg-type]  # none is used here
    assert ctx.renewal == policy.Renewal() and ctx.renewal.refresh_margin == timedelta(days=10)
    assert isinstance(ctx.notifier, NullNotifier) and ctx.notifier.notify("t", "b") is False
    assert ctx.notifier is ctx.notifier and ctx.renewal is ctx.renewal


def test_a_smaller_margin_refreshes_later(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    m, _ = manager(world)
    m.ctx.renewal = policy.Renewal(refresh_margin=timedelta(days=2))
    m.generate_token("exp", business="acme", scopes=SCOPES, expiring=True)
    world.sim.clock.advance(days=55)
    assert m.run_due().refreshed == []
    world.sim.clock.advance(days=3)
    assert m.run_due().refreshed == ["exp"]
    m.close()


def test_doctor_warns_about_tokens_never_verified(world: World) -> None:
    m, _ = manager(world)
    value = world.sim.issue_token(world.ids.app_id, world.ids.old_admin_id, SCOPES)
    from meta_tokenvault.types import Secret

    m.import_token("unchecked", business="acme", secret=Secret(value), system_user_id=world.ids.old_admin_id,
                   verify=False)
    checks = {c.name: c for c in m.doctor()}
    assert checks["verified tokens"].warning and "unchecked" in checks["verified tokens"].detail
    assert checks["expiring tokens"].ok
    m.close()


RENEWAL_MIGRATION = next(n for n, step in migrations.MIGRATIONS if "renewal" in step.__name__)


def test_the_renewal_migration_upgrades_a_database_of_the_previous_tokenvault(world: World) -> None:
    m, _ = manager(world)
    m.generate_token("prod", business="acme", scopes=SCOPES)
    m.rotate("prod")
    m.close()
    db = world.home / "tokenvault.db"
    if sqlite3.sqlite_version_info < (3, 35):
        pytest.skip("DROP COLUMN needs SQLite 3.35")
    with sqlite3.connect(db) as conn:  # back to schema 2, as the previous release left it
        for table, column in (("tv_token", "on_invalid"), ("tv_token_version", "data_access_expires_at"),
                              ("tv_rotation", "kind")):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute("DELETE FROM tv_schema_version WHERE version = ?", (RENEWAL_MIGRATION,))
    m, _ = manager(world)  # opening the store migrates it
    assert m.store.schema_version() == migrations.LATEST
    record = m.show_token("prod")
    assert record.on_invalid == "reissue" and record.version == 2
    assert m.store.get_rotation(1).kind == "rotate"
    m.close()


# ---------------------------------------------------------------------------------------------- the CLI
SCOPES_CSV = ",".join(SCOPES)


@pytest.fixture
def served_cli(env_home: Path, monkeypatch: pytest.MonkeyPatch, cli: CliRunner) -> Iterator[tuple[CliRunner, Any]]:
    """The CLI in-process, over HTTP to a simulator on the real clock, with acme registered and synced."""
    with served_business(cli, monkeypatch) as (sim, _world):
        yield cli, sim


def test_cli_refresh_on_invalid_and_usage_errors(served_cli: tuple[CliRunner, Any]) -> None:
    cli, sim = served_cli
    assert cli("token", "generate", "exp", "--business", "acme", "--scopes", SCOPES_CSV, "--expiring").code == 0
    assert cli("token", "generate", "perm", "--business", "acme", "--scopes", SCOPES_CSV,
               "--on-invalid", "alert").code == 0
    shown = cli("token", "show", "exp")
    assert "in 59 days" in shown.out and "data access expires" in shown.out and "reissue" in shown.out
    assert cli("token", "show", "perm", "--json").json()["on_invalid"] == "alert"
    bad = cli("token", "generate", "other", "--business", "acme", "--on-invalid", "maybe")
    assert bad.code == 2 and "on-invalid" in bad.err and "Traceback" not in bad.err
    assert cli("token", "verify").code == 2 and cli("token", "verify", "exp", "--all").code == 2

    refreshed = cli("token", "refresh", "exp", "--json")
    assert refreshed.code == 0, refreshed.err
    assert (refreshed.json()["kind"], refreshed.json()["to_version"]) == ("refresh", 2)
    assert cli("token", "show", "exp", "--json").json()["source"] == "refreshed"
    never = cli("token", "refresh", "perm")
    assert never.code == 2 and "never expires" in never.err


def test_cli_run_due_reports_what_it_found_and_did(served_cli: tuple[CliRunner, Any]) -> None:
    cli, sim = served_cli
    assert cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES_CSV).code == 0
    value = cli("token", "reveal", "prod").out.strip()
    sim.invalidate(value, 467)
    assert cli("token", "verify", "prod").code == 6
    ran = cli("run-due", "--concurrency", "2")
    assert ran.code == 0, ran.err
    assert "[reissue 1] prod: done" in ran.err and "reissued: prod" in ran.err
    assert value not in ran.out + ran.err
    again = cli("token", "verify", "--all", "--json")
    assert again.code == 0 and again.json()["valid"] == 1


def test_cli_run_due_with_failures_does_not_say_it_finished_well(served_cli: tuple[CliRunner, Any]) -> None:
    cli, sim = served_cli
    value = sim.issue_token(sim.demo.app_id, sim.demo.old_admin_id, SCOPES)
    assert cli("token", "import", "prod", "--business", "acme", "--system-user", sim.demo.old_admin_id,
               "--scopes", SCOPES_CSV, "--no-verify", stdin=value).code == 0  # never checked: due for a check
    sim.fail_next(20, kind="http503", path_contains="debug_token")
    ran = cli("run-due")
    assert ran.code == 6, ran.err
    assert "failed: prod" in ran.err and "✓" not in ran.err and "1 failure(s)" in ran.err
