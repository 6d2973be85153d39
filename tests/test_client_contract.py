"""What the Graph client and the CLI promise, each test written to fail on one deliberate bug of
tests/mutants.py (named in the docstring): the token stays out of URLs, verify fails on an invalid token,
pacing waits, an unconfirmed revocation is an error, a lost mint is not repeated, ``expires_at: 0`` is
"never", query-string secrets are redacted from httpx's log lines, an edited audit event is found, validity
needs ``is_valid: true``, every page of system users is read."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import CliRunner
from meta_oracle import assert_declared_by_meta, from_sim_log

from meta_tokenvault.adapters.graph_httpx import USER_AGENT, HttpxGraphApi, parse_meta_time
from meta_tokenvault.adapters.graph_wire import HttpxSender, StdlibSender, build_httpx_client
from meta_tokenvault.errors import InvalidRequest, Transient
from meta_tokenvault.ports.graph import AppCredentials
from meta_tokenvault.testing.graph_sim import DemoWorld, GraphSimulator, SimClock
from meta_tokenvault.types import Secret

SCOPES = "whatsapp_business_management,whatsapp_business_messaging"
WA = ("whatsapp_business_management", "whatsapp_business_messaging")


def _app(world: DemoWorld) -> AppCredentials:
    return AppCredentials(world.app_id, Secret(world.app_secret))


@pytest.fixture
def sim_world() -> tuple[GraphSimulator, DemoWorld]:
    sim, world = GraphSimulator.demo_world(clock=SimClock())
    return sim, world


def _api(sim: GraphSimulator, **kwargs: object) -> HttpxGraphApi:
    return HttpxGraphApi(httpx.Client(transport=sim.transport()), **{"sleep": lambda _s: None, **kwargs})  # type: ignore[arg-type]


Api = Callable[..., HttpxGraphApi]


@pytest.fixture(params=["httpx-transport", "stdlib-server", "httpx-server"])
def api_of(request: pytest.FixtureRequest, sim_world: tuple[GraphSimulator, DemoWorld]) -> Iterator[Api]:
    """A client on the simulator through each sender: httpx on its in-process transport, and over HTTP to its
    server the http.client sender (what tokenvault builds itself) and an httpx client (the proxy fallback's)."""
    sim, _ = sim_world
    if request.param == "httpx-transport":
        yield lambda **kwargs: _api(sim, **kwargs)
        return
    made: list[HttpxGraphApi] = []

    def make(**kwargs: Any) -> HttpxGraphApi:
        client = build_httpx_client(15.0, USER_AGENT) if request.param == "httpx-server" else None
        api = HttpxGraphApi(client, base_url=server.url, **{"sleep": lambda _s: None, **kwargs})
        assert isinstance(api.sender, StdlibSender if client is None else HttpxSender)
        made.append(api)
        return api

    with sim.serve() as server:
        yield make
        for api in made:
            api.close()
            if isinstance(api.sender, HttpxSender):
                api.sender.client.close()


# ----- the client ------------------------------------------------------------------------------------------------

def test_no_token_travels_in_a_url(sim_world: tuple[GraphSimulator, DemoWorld]) -> None:
    """Mutant caller-token-in-the-url: the caller's token goes in the Authorization header only."""
    sim, world = sim_world
    urls: list[str] = []
    inner = sim.transport()

    def record(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return inner.handle_request(request)

    api = HttpxGraphApi(httpx.Client(transport=httpx.MockTransport(record)), sleep=lambda _s: None)
    admin = Secret(world.admin_token)
    api.list_system_users(world.business_id, _app(world), admin)
    minted = api.generate_token(world.old_admin_id, _app(world), admin, WA)
    api.check_whatsapp(minted, _app(world), world.phone_number_id)
    api.revoke_token(minted, _app(world), admin)
    assert len(urls) == 4
    assert not any(world.admin_token in url for url in urls)
    assert not any(minted.reveal() in url for url in urls[:3])  # the revoke's revoke_token is Meta's query param


def test_the_adapter_waits_its_turn_under_a_rate_limit(sim_world: tuple[GraphSimulator, DemoWorld],
                                                      api_of: Api) -> None:
    """Mutant pacing-off: with the app's limit of 2 calls in 10 s, a third call waits ~10 s for its turn.

    The wait is asked of the adapter's sleep (recorded, not slept); the bound (> 5 s) leaves 5 s for the
    real time the calls themselves take."""
    sim, world = sim_world
    waits: list[float] = []
    api = api_of(rate_limit=(2, 10.0), sleep=waits.append)
    for _ in range(3):
        api.debug_token(Secret(world.admin_token), _app(world))
    assert len(waits) == 1 and waits[0] > 5.0
    assert api.pacer is not None and api.pacer.waited == pytest.approx(waits[0])


@pytest.mark.parametrize("answer", [{"success": "false"}, {"success": False}, {"success": "0"}],
                         ids=["string-false", "false", "string-0"])
def test_a_revocation_meta_does_not_confirm_is_an_error(answer: dict[str, object]) -> None:
    """Mutant revoke-success-false-accepted."""
    api = HttpxGraphApi(httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200, json=answer))))
    with pytest.raises(InvalidRequest, match="did not confirm"):
        api.revoke_token(Secret("EAAold"), AppCredentials("1", Secret("s")), Secret("EAAnew"))


def test_a_confirmed_revocation_is_quiet() -> None:
    api = HttpxGraphApi(httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"success": "true"}))))
    api.revoke_token(Secret("EAAold"), AppCredentials("1", Secret("s")), Secret("EAAnew"))


def test_a_mint_whose_answer_was_lost_is_not_sent_again(sim_world: tuple[GraphSimulator, DemoWorld],
                                                        api_of: Api) -> None:
    """Mutant mint-retried-after-a-lost-answer: a second mint would leave the first token alive at Meta, unseen.
    (Over HTTP the simulator's timeout closes the connection without an answer.)"""
    sim, world = sim_world
    sim.fail_next(1, kind="timeout", path_contains="access_tokens")
    api = api_of()
    with pytest.raises(Transient, match="may have been minted"):
        api.generate_token(world.old_admin_id, _app(world), Secret(world.admin_token), WA)
    assert [r.route for r in sim.requests].count(f"/{world.old_admin_id}/access_tokens") == 1


def test_expires_at_zero_means_never(sim_world: tuple[GraphSimulator, DemoWorld], api_of: Api) -> None:
    """Mutant never-expiring-read-as-1970: debug_token's ``expires_at: 0`` is a never-expiring token."""
    sim, world = sim_world
    assert parse_meta_time(0) is None and parse_meta_time("0") is None
    assert parse_meta_time(1_800_000_000) == datetime.fromtimestamp(1_800_000_000, UTC)
    info = api_of().debug_token(Secret(world.admin_token), _app(world))
    assert info.is_valid and info.expires_at is None


def test_query_string_secrets_are_redacted_from_httpx_logs(sim_world: tuple[GraphSimulator, DemoWorld],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    """Mutant url-secrets-not-redacted-in-logs: httpx logs every request line, query string included."""
    sim, world = sim_world
    with caplog.at_level(logging.INFO, logger="httpx"):
        _api(sim).debug_token(Secret(world.admin_token), _app(world))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert any("input_token=<redacted>" in line for line in lines), lines
    assert world.admin_token not in caplog.text and world.app_secret not in caplog.text


# ----- the CLI ---------------------------------------------------------------------------------------------------

@pytest.fixture
def served(env_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GraphSimulator, DemoWorld]]:
    """The demo world over HTTP on a clock that follows real time (the pacing test reads its request times)."""
    sim, world = GraphSimulator.demo_world(clock=SimClock(datetime.now(UTC), realtime=True))
    with sim.serve() as server:
        monkeypatch.setenv("TOKENVAULT_GRAPH_URL", server.url)
        yield sim, world


def _generate(cli: CliRunner, world: DemoWorld) -> str:
    assert cli("init").code == 0
    assert cli("business", "add", "acme", "--business-id", world.business_id, "--app-id", world.app_id,
               stdin=f"{world.app_secret}\n{world.admin_token}\n").code == 0
    assert cli("system-users", "sync").code == 0
    res = cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES)
    assert res.code == 0, res.err
    return cli("token", "reveal", "prod").out.strip()


def test_verify_exits_6_when_meta_says_the_token_is_invalid(cli: CliRunner,
                                                            served: tuple[GraphSimulator, DemoWorld]) -> None:
    """Mutant verify-exits-0-on-an-invalid-token (contract: exit 6 if it is not valid)."""
    sim, world = served
    value = _generate(cli, world)
    assert cli("token", "verify", "prod").code == 0
    sim.revoke(value)  # in Business Settings, behind tokenvault's back
    res = cli("token", "verify", "prod")
    assert res.code == 6 and "not valid" in res.err
    as_json = cli("token", "verify", "prod", "--json")
    assert as_json.code == 6 and as_json.json()["valid"] is False
    assert_declared_by_meta(from_sim_log(sim.requests), sim)  # the CLI over HTTP: what Meta declares


def test_rotate_rate_limit_paces_the_calls_to_meta(cli: CliRunner, served: tuple[GraphSimulator, DemoWorld]) -> None:
    """Mutant rate-limit-flag-ignored: ``token rotate --rate-limit 2/2`` keeps at most 2 calls in any 2 s.

    Read on the simulator's real-time clock: any two calls two apart arrive at least 1 s apart (the pacer
    spaces them 2.04 s at sending; the other second is an honest margin for arrival jitter). Unpaced, the
    calls of one rotation arrive within milliseconds."""
    sim, world = served
    _generate(cli, world)
    first = len(sim.requests)
    res = cli("token", "rotate", "prod", "--rate-limit", "2/2")
    assert res.code == 0, res.err
    times = [r.at for r in sim.requests[first:]]
    assert len(times) >= 3
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(times, times[2:], strict=False)]
    assert min(gaps) >= 1.0, gaps
    assert_declared_by_meta(from_sim_log(sim.requests), sim)


def test_audit_verify_finds_an_edited_event(cli: CliRunner, env_home: Path) -> None:
    """Mutant audit-hash-not-checked: an event edited in place (its links untouched) is found by its own hash."""
    assert cli("init").code == 0
    assert cli("business", "add", "acme", "--business-id", "111", "--app-id", "222",
               stdin="app-secret-value\nEAAadmintokenvalue\n").code == 0
    assert cli("audit", "verify").code == 0
    with sqlite3.connect(env_home / "tokenvault.db") as db:
        (seq,) = db.execute("SELECT max(seq) FROM tv_audit_event").fetchone()
        changed = db.execute("UPDATE tv_audit_event SET subject = 'someone-else' WHERE seq = ?", (seq,)).rowcount
    assert changed == 1
    res = cli("audit", "verify")
    assert res.code == 4 and f"#{seq} was edited" in res.err


@pytest.mark.parametrize("data", [
    {"error": {"code": 190, "message": "Invalid OAuth access token", "subcode": 467}, "scopes": []},
    {"is_valid": "true", "scopes": []},
], ids=["no-is_valid", "string-true"])
def test_a_token_is_valid_only_when_debug_token_says_is_valid_true(data: dict[str, object]) -> None:
    """Mutant debug-token-valid-unless-false: an answer without ``is_valid: true`` is not a valid token."""
    api = HttpxGraphApi(httpx.Client(transport=httpx.MockTransport(
        lambda r: httpx.Response(200, json={"data": data}))))
    info = api.debug_token(Secret("EAAsome"), AppCredentials("1", Secret("s")))
    assert info.is_valid is False


def test_every_page_of_system_users_is_read(sim_world: tuple[GraphSimulator, DemoWorld], api_of: Api) -> None:
    """Mutant paging-not-followed: Meta pages the list (100 at most per page); the cursor is followed."""
    sim, world = sim_world
    for i in range(230):
        sim.add_system_user(world.business_id, name=f"su-{i}", role="EMPLOYEE")
    users = api_of().list_system_users(world.business_id, _app(world), Secret(world.admin_token))
    assert len(users) == 233 and len({u.id for u in users}) == 233
    assert [r.route for r in sim.requests].count(f"/{world.business_id}/system_users") == 3
