"""The Graph API side end to end through the CLI, over real HTTP to the simulator's server
(TOKENVAULT_GRAPH_URL), and the same client code over the in-process transport."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cli_support import CliRunner

from meta_tokenvault.adapters.graph_httpx import HttpxGraphApi, appsecret_proof
from meta_tokenvault.policy import eligibility
from meta_tokenvault.ports.graph import AppCredentials
from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
from meta_tokenvault.types import AgeSource, Secret, SystemUserRecord

SCOPES = "whatsapp_business_management,whatsapp_business_messaging"


@pytest.fixture
def served(env_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GraphSimulator, object]]:
    sim, world = GraphSimulator.demo_world(clock=SimClock(datetime.now(UTC)))
    server = sim.serve()
    monkeypatch.setenv("TOKENVAULT_GRAPH_URL", server.url)
    try:
        yield sim, world
    finally:
        server.close()


def setup_business(cli: CliRunner, world: object) -> None:
    assert cli("init").code == 0
    res = cli("business", "add", "acme", "--business-id", world.business_id, "--app-id", world.app_id,  # type: ignore[attr-defined]
              stdin=f"{world.app_secret}\n{world.admin_token}\n")  # type: ignore[attr-defined]
    assert res.code == 0, res.err


def test_sync_and_list_show_eligibility_and_window(cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    setup_business(cli, world)
    assert cli("system-users", "sync").code == 0
    users = {u["id"]: u for u in cli("system-users", "list", "--json").json()}
    old, new = users[world.old_admin_id], users[world.new_admin_id]  # type: ignore[attr-defined]
    assert old["eligible"] is True and old["role"] == "ADMIN" and old["age_source"] == "graph"
    assert new["eligible"] is False
    opens = datetime.fromisoformat(new["eligible_from"])
    assert opens == datetime.fromisoformat(new["created_at"]) + timedelta(days=7)
    assert set(old) >= {"id", "name", "role", "business", "created_at", "age_source", "eligible", "eligible_from"}


def test_created_time_falls_back_to_the_node_then_first_seen(cli: CliRunner,
                                                             served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    sim.created_time_in_list = False
    setup_business(cli, world)
    assert cli("system-users", "sync").code == 0
    sources = {u["id"]: u["age_source"] for u in cli("system-users", "list", "--json").json()}
    assert sources[world.old_admin_id] == "graph"  # type: ignore[attr-defined]
    sim.created_time_on_node = False
    cli("system-users", "sync")
    listed = {u["id"]: u for u in cli("system-users", "list", "--json").json()}
    # the creation time learnt earlier is kept; a never-seen user would be dated "first seen"
    assert listed[world.old_admin_id]["age_source"] == "graph"  # type: ignore[attr-defined]


def test_generate_blocked_by_seven_days_exits_7_with_date_and_reminder(
        cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    setup_business(cli, world)
    cli("system-users", "sync")
    res = cli("token", "generate", "staging", "--business", "acme", "--scopes", SCOPES,
              "--system-user", world.new_admin_id)  # type: ignore[attr-defined]
    assert res.code == 7
    assert res.err.startswith("error: ") and "seven-day" in res.err and "UTC" in res.err
    assert "Traceback" not in res.err
    reminders = cli("reminders", "list", "--json").json()
    assert [(r["label"], r["action"], r["status"]) for r in reminders] == [("staging", "generate", "waiting")]
    assert sim.minted == []


def test_generate_verify_revoke_through_the_cli(cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    setup_business(cli, world)
    cli("system-users", "sync")
    res = cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES)
    assert res.code == 0, res.err
    shown = cli("token", "show", "prod", "--json").json()
    assert shown["source"] == "generated" and shown["system_user_id"] == world.old_admin_id  # type: ignore[attr-defined]
    assert shown["expires_at"] is None and shown["waba_ids"] == [world.waba_id]  # type: ignore[attr-defined]
    value = cli("token", "reveal", "prod").out.strip()
    assert value not in json.dumps(shown)
    assert cli("token", "verify", "prod").code == 0
    assert cli("token", "revoke", "prod").code == 0
    assert sim.token_state(value) == "revoked"
    assert cli("token", "show", "prod", "--json").json()["status"] == "revoked"
    res = cli("token", "verify", "prod", "--json")
    assert res.code in (0, 6)  # recorded as invalid; the command reports it
    assert cli("token", "show", "prod", "--json").json()["status"] == "revoked"


def test_import_verifies_with_debug_token(cli: CliRunner, served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    setup_business(cli, world)
    hand_made = sim.issue_token(world.app_id, world.old_admin_id, waba_ids=[world.waba_id])  # type: ignore[attr-defined]
    res = cli("token", "import", "prod", "--business", "acme", stdin=hand_made + "\n")
    assert res.code == 0, res.err
    shown = cli("token", "show", "prod", "--json").json()
    assert shown["source"] == "imported" and shown["system_user_id"] == world.old_admin_id  # type: ignore[attr-defined]
    assert shown["verified_at"] and shown["waba_ids"] == [world.waba_id]  # type: ignore[attr-defined]

    revoked = sim.issue_token(world.app_id, world.old_admin_id)  # type: ignore[attr-defined]
    sim.revoke(revoked)
    res = cli("token", "import", "dead", "--business", "acme", stdin=revoked + "\n")
    assert res.code == 6 and "not valid" in res.err and revoked not in res.err

    sim.add_app("9999999", "other-secret", world.business_id)  # type: ignore[attr-defined]
    other = sim.issue_token("9999999", world.old_admin_id)  # type: ignore[attr-defined]
    res = cli("token", "import", "other", "--business", "acme", stdin=other + "\n")
    assert res.code == 2 and "belongs to another app" in res.err
    labels = [t["label"] for t in cli("token", "list", "--json").json()]
    assert labels == ["prod"]  # nothing stored for the refused ones


def test_same_client_code_against_transport_and_http_server() -> None:
    clock = SimClock(datetime(2026, 1, 1, tzinfo=UTC))
    sim, world = GraphSimulator.demo_world(clock=clock)
    app = AppCredentials(world.app_id, Secret(world.app_secret))
    admin = Secret(world.admin_token)
    server = sim.serve()
    try:
        results = []
        for client, url in ((httpx.Client(transport=sim.transport()), "https://graph.facebook.com"),
                            (httpx.Client(), server.url)):
            graph = HttpxGraphApi(client, base_url=url, version="v24.0")
            users = graph.list_system_users(world.business_id, app, admin)
            token = graph.generate_token(world.old_admin_id, app, admin, tuple(SCOPES.split(",")))
            info = graph.debug_token(token, app)
            results.append((sorted(u.id for u in users), info.is_valid, info.user_id, info.scopes))
            graph.revoke_token(token, app, admin)
            assert graph.debug_token(token, app).is_valid is False
            client.close()
        assert results[0] == results[1]
        mint_requests = [r for r in sim.requests if r.path.endswith("/access_tokens")]
        assert len(mint_requests) == 2
        for r in mint_requests:  # Meta's proof of the caller's token, and no token in the URL
            assert r.form["appsecret_proof"] == appsecret_proof(app.app_secret, admin)
    finally:
        server.close()


@pytest.mark.parametrize(("age", "eligible"), [
    (timedelta(days=6, hours=23, minutes=59, seconds=59), False),
    (timedelta(days=7), True),
    (timedelta(days=7, seconds=1), True),
], ids=["6d23h59m59s", "7d", "7d+1s"])
def test_seven_day_boundary_to_the_second(age: timedelta, eligible: bool) -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    user = SystemUserRecord(id="1", name="a", role="ADMIN", business_name="acme", created_at=created,
                            age_source=AgeSource.GRAPH, app_installed=True)
    assert eligibility(user, now=created + age).eligible is eligible
    # and Meta (the simulator) agrees, to the second
    clock = SimClock(created)
    sim, world = GraphSimulator.demo_world(clock=clock)
    young = sim.add_system_user(world.business_id, name="young", role="ADMIN", created_time=created,
                                installed_apps=[world.app_id])
    clock.set(created + age)
    graph = HttpxGraphApi(httpx.Client(transport=sim.transport()), version="v24.0")
    app = AppCredentials(world.app_id, Secret(world.app_secret))
    from meta_tokenvault.errors import SevenDayWindow

    if eligible:
        assert graph.generate_token(young, app, Secret(world.admin_token), ("whatsapp_business_messaging",))
    else:
        with pytest.raises(SevenDayWindow):
            graph.generate_token(young, app, Secret(world.admin_token), ("whatsapp_business_messaging",))


def test_verify_with_a_phone_number_makes_a_live_whatsapp_call(cli: CliRunner,
                                                              served: tuple[GraphSimulator, object]) -> None:
    sim, world = served
    setup_business(cli, world)
    cli("system-users", "sync")
    assert cli("token", "generate", "prod", "--business", "acme", "--scopes", SCOPES).code == 0
    res = cli("token", "verify", "prod", "--phone-number", world.phone_number_id, "--json")  # type: ignore[attr-defined]
    assert res.code == 0, res.err
    data = res.json()
    assert data["valid"] is True and data["whatsapp"]["id"] == world.phone_number_id  # type: ignore[attr-defined]
    res = cli("token", "verify", "prod", "--phone-number", world.phone_number_id)  # type: ignore[attr-defined]
    assert res.code == 0 and "reads WhatsApp number" in res.err
    res = cli("token", "verify", "prod", "--phone-number", "999999")  # a number this token cannot reach
    assert res.code == 6 and res.err.startswith("error: ")
