"""Every request the client sends in the demo story is declared by Meta's own SDK (or pinned to a fixture for
the endpoints the SDK lacks) — tests/meta_oracle.py — and the oracle itself refuses what Meta does not declare."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from meta_oracle import (
    RecordingTransport,
    SentRequest,
    app_secrets,
    assert_declared_by_meta,
    call_every_port_method,
    check_request,
    from_sim_log,
    id_kinds,
    reference_proof,
    sdk_declarations,
)

from meta_tokenvault.testing.graph_sim import DemoWorld, GraphSimulator, SimClock
from meta_tokenvault.types import utcnow


@pytest.fixture(scope="module")
def demo_run() -> Iterator[tuple[GraphSimulator, RecordingTransport]]:
    from meta_tokenvault.demo import run_demo

    sim, _ = GraphSimulator.demo_world(clock=SimClock(utcnow()))
    recorder = RecordingTransport(sim.transport())
    with httpx.Client(transport=recorder) as client:
        report = run_demo(simulator=sim, graph_client=client)
    assert len(report.steps) == 12
    yield sim, recorder


def test_every_request_of_the_demo_story_is_declared_by_meta(
        demo_run: tuple[GraphSimulator, RecordingTransport]) -> None:
    sim, recorder = demo_run
    sources = assert_declared_by_meta(recorder.requests, sim)
    # the story reaches the edges that matter, each proven against its declaration
    assert {"Business.get_system_users", "User.create_access_token", "fixture /debug_token",
            "fixture /oauth/revoke"} <= set(sources)
    assert len(sources) == len(recorder.requests)


def test_the_simulators_log_of_the_same_run_passes_the_same_oracle(
        demo_run: tuple[GraphSimulator, RecordingTransport]) -> None:
    sim, recorder = demo_run
    logged = from_sim_log(sim.requests)
    assert [str(r) for r in logged] == [str(r) for r in recorder.requests]
    assert_declared_by_meta(logged, sim)


def test_the_sdk_declares_the_edges_tokenvault_speaks() -> None:
    business = sdk_declarations("business.Business")
    user = sdk_declarations("user.User")
    waba = sdk_declarations("whatsappbusinessaccount.WhatsAppBusinessAccount")
    assert set(business[("POST", "system_users")].params) >= {"name", "role"}
    assert "ADMIN" in business[("POST", "system_users")].enums["role_enum"]
    assert {"created_time", "role"} <= business[("GET", "system_users")].fields  # type: ignore[operator]
    assert set(user[("POST", "access_tokens")].params) >= {"business_app", "scope", "set_token_expires_in_60_days"}
    assert set(user[("POST", "applications")].params) == {"business_app"}
    assigned = waba[("POST", "assigned_users")]
    assert set(assigned.params) == {"user", "tasks"} and "MANAGE" in assigned.enums["tasks_enum"]
    assert "WhatsAppBusinessAccount.Tasks" not in assigned.enums["tasks_enum"]


# ----- the oracle can fail ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world() -> tuple[GraphSimulator, DemoWorld]:
    sim, demo = GraphSimulator.demo_world(clock=SimClock())
    return sim, demo


def _mint(demo: DemoWorld, **changes: object) -> SentRequest:
    token = demo.admin_token
    form = {"business_app": demo.app_id, "scope": "whatsapp_business_management,whatsapp_business_messaging",
            "appsecret_proof": reference_proof(demo.app_secret, token)}
    base: dict[str, object] = {"method": "POST", "path": f"/v24.0/{demo.old_admin_id}/access_tokens", "query": {},
                               "form": form, "content_type": "application/x-www-form-urlencoded", "bearer": token}
    base.update(changes)
    return SentRequest(**base)  # type: ignore[arg-type]


def _problems(sim: GraphSimulator, req: SentRequest) -> list[str]:
    return check_request(req, id_kinds(sim), app_secrets(sim))[1]


def test_a_well_formed_mint_passes(world: tuple[GraphSimulator, DemoWorld]) -> None:
    sim, demo = world
    assert check_request(_mint(demo), id_kinds(sim), app_secrets(sim)) == ("User.create_access_token", [])


def _bad_cases(demo: DemoWorld) -> dict[str, tuple[SentRequest, str]]:
    mint = _mint(demo)
    form = dict(mint.form)
    return {
        "no version": (_mint(demo, path=f"/{demo.old_admin_id}/access_tokens"), "no version segment"),
        "undeclared parameter": (_mint(demo, form={**form, "expires": "never"}), "'expires' is not declared"),
        "scopes joined with spaces": (_mint(demo, form={**form, "scope": "whatsapp_business_management "
                                                        "whatsapp_business_messaging"}), "without spaces"),
        "not a boolean": (_mint(demo, form={**form, "set_token_expires_in_60_days": "yes"}), "not a boolean"),
        "json body": (_mint(demo, content_type="application/json", body_is_json=True), "JSON body"),
        "no proof": (_mint(demo, form={k: v for k, v in form.items() if k != "appsecret_proof"}),
                     "without appsecret_proof"),
        "swapped proof": (_mint(demo, form={**form, "appsecret_proof": reference_proof(demo.admin_token,
                                                                                       demo.app_secret)}),
                          "is not HMAC-SHA256"),
        "wrong method": (_mint(demo, method="GET", query=form, form={}), "is not declared for a system_user"),
        "unknown edge": (_mint(demo, path=f"/v24.0/{demo.old_admin_id}/tokens"), "is not declared"),
        "unknown node": (_mint(demo, path="/v24.0/999/access_tokens"), "unknown node"),
        "revoke by POST": (SentRequest("POST", "/v24.0/oauth/revoke", {}, {"client_id": demo.app_id},
                                       "application/x-www-form-urlencoded", bearer=demo.admin_token),
                           "pinned to endpoints.json for another method"),
        "revoke without revoke_token": (
            SentRequest("GET", "/v24.0/oauth/revoke", {"client_id": demo.app_id, "client_secret": "s",
                                                        "appsecret_proof": reference_proof(demo.app_secret,
                                                                                           demo.admin_token)},
                        {}, "", bearer=demo.admin_token), "required parameter 'revoke_token' missing"),
        "field a node lacks": (
            SentRequest("GET", f"/v24.0/{demo.business_id}/system_users",
                        {"fields": "id,name,age", "appsecret_proof": reference_proof(demo.app_secret,
                                                                                     demo.admin_token)},
                        {}, "", bearer=demo.admin_token), "field 'age'"),
        "role outside the enum": (
            SentRequest("POST", f"/v24.0/{demo.business_id}/system_users", {},
                        {"name": "x", "role": "OWNER", "appsecret_proof": reference_proof(demo.app_secret,
                                                                                          demo.admin_token)},
                        "application/x-www-form-urlencoded", bearer=demo.admin_token), "'OWNER' is not one of"),
    }


@pytest.mark.parametrize("case", list(_bad_cases(GraphSimulator.demo_world(clock=SimClock())[1])))
def test_the_oracle_refuses(world: tuple[GraphSimulator, DemoWorld], case: str) -> None:
    sim, demo = world
    request, expected = _bad_cases(demo)[case]
    problems = _problems(sim, request)
    assert any(expected in p for p in problems), problems
    assert demo.admin_token not in "".join(problems)  # the oracle's messages never quote a token


def test_nothing_recorded_is_a_failure(world: tuple[GraphSimulator, DemoWorld]) -> None:
    with pytest.raises(AssertionError, match="no request"):
        assert_declared_by_meta([], world[0])


def test_every_call_of_the_graph_port_is_declared_by_meta() -> None:
    """Each method of the client once (the demo does not refresh, read a node or a phone number)."""
    from meta_tokenvault.adapters.graph_httpx import HttpxGraphApi

    sim, world = GraphSimulator.demo_world(clock=SimClock())
    recorder = RecordingTransport(sim.transport())
    with httpx.Client(transport=recorder) as client:
        call_every_port_method(HttpxGraphApi(client, sleep=lambda _s: None), world)
    sources = assert_declared_by_meta(recorder.requests, sim)
    assert sources == ["Business.get_system_users", "SystemUser.api_get", "User.create_application",
                       "User.create_access_token", "fixture /debug_token", "fixture /oauth/access_token",
                       "fixture phone_number", "fixture /oauth/revoke"]
