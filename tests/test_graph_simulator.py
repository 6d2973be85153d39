"""The Graph API simulator, asserted with raw httpx against both the in-process transport and the local server."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from meta_tokenvault.testing.graph_sim import (
    FAULT_KINDS,
    SEVEN_DAY_MESSAGE,
    DemoWorld,
    GraphSimulator,
    SimClock,
    appsecret_proof,
)

REPO = Path(__file__).resolve().parents[1]
WA = "whatsapp_business_management,whatsapp_business_messaging"


@dataclass
class Graph:
    """Raw HTTP to the simulator: ``get``/``post`` add the admin token and its proof unless told otherwise."""

    sim: GraphSimulator
    world: DemoWorld
    client: httpx.Client
    mode: str
    root: str  # scheme://host, no version

    def _auth(self, params: dict[str, Any], token: str | None, proof: bool | str) -> dict[str, Any]:
        token = self.world.admin_token if token is None else token
        out = {k: v for k, v in params.items() if v is not None}
        if token:
            out["access_token"] = token
        if proof is True and token:
            out["appsecret_proof"] = appsecret_proof(self.world.app_secret, token)
        elif isinstance(proof, str):
            out["appsecret_proof"] = proof
        return out

    def get(self, path: str, *, token: str | None = None, proof: bool | str = True, **params: Any) -> httpx.Response:
        return self.client.get(path, params=self._auth(params, token, proof))

    def post(self, path: str, *, token: str | None = None, proof: bool | str = True, **form: Any) -> httpx.Response:
        return self.client.post(path, data=self._auth(form, token, proof))

    def mint(self, su_id: str, *, token: str | None = None, scope: str = WA, expiring: bool = False) -> httpx.Response:
        extra = {"set_token_expires_in_60_days": "true"} if expiring else {}
        return self.post(f"/{su_id}/access_tokens", token=token, business_app=self.world.app_id, scope=scope, **extra)

    def minted(self, su_id: str | None = None, *, expiring: bool = False) -> str:
        response = self.mint(su_id or self.world.old_admin_id, expiring=expiring)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def debug(self, token: str) -> dict[str, Any]:
        response = self.client.get("/debug_token", params={
            "input_token": token, "access_token": f"{self.world.app_id}|{self.world.app_secret}"})
        assert response.status_code == 200, response.text
        return dict(response.json()["data"])


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "error" in body, body
    return dict(body["error"])


@pytest.fixture(params=["transport", "server"])
def graph(request: pytest.FixtureRequest, graph_sim: GraphSimulator, graph_world: DemoWorld) -> Iterator[Graph]:
    if request.param == "transport":
        with httpx.Client(transport=graph_sim.transport(), base_url="https://graph.facebook.com/v24.0") as client:
            yield Graph(graph_sim, graph_world, client, "transport", "https://graph.facebook.com")
    else:
        with graph_sim.serve() as server, \
                httpx.Client(base_url=f"{server.url}/v24.0", timeout=5, verify=False) as client:
            yield Graph(graph_sim, graph_world, client, "server", server.url)


# ----- the clock --------------------------------------------------------------------------------------------------

def test_sim_clock_defaults_advances_and_sets() -> None:
    clock = SimClock()
    assert clock.now() == datetime(2026, 1, 1, tzinfo=UTC)
    assert clock.advance(days=7, seconds=1) == datetime(2026, 1, 8, 0, 0, 1, tzinfo=UTC)
    clock.set(datetime(2026, 3, 1, 12))  # naive is UTC
    assert clock.now() == datetime(2026, 3, 1, 12, tzinfo=UTC) and clock.now().tzinfo is not None


# ----- tokens, proof, paths -----------------------------------------------------------------------------------------

def test_appsecret_proof_missing_wrong_and_right(graph: Graph) -> None:
    path = f"/{graph.world.old_admin_id}"
    missing = graph.get(path, proof=False, fields="id")
    assert missing.status_code == 400
    assert error(missing) | {"fbtrace_id": "x"} == {
        "message": "API calls from the server require an appsecret_proof argument", "type": "GraphMethodException",
        "code": 100, "fbtrace_id": "x"}
    wrong = graph.get(path, proof="0" * 64, fields="id")
    assert wrong.status_code == 400
    assert error(wrong)["message"] == "Invalid appsecret_proof provided in the API argument"
    assert graph.get(path, fields="id").json() == {"id": graph.world.old_admin_id}


def test_proof_optional_when_the_app_does_not_require_it_but_always_on_access_tokens(graph: Graph) -> None:
    graph.sim.world.apps[graph.world.app_id].require_appsecret_proof = False
    assert graph.get(f"/{graph.world.old_admin_id}", proof=False).status_code == 200
    assert graph.get(f"/{graph.world.old_admin_id}", proof="bad").status_code == 400  # a proof given is checked
    refused = graph.post(f"/{graph.world.old_admin_id}/access_tokens", proof=False, business_app=graph.world.app_id,
                         scope=WA)
    assert error(refused)["message"] == "API calls from the server require an appsecret_proof argument"


@pytest.mark.parametrize("place", ["query", "form", "bearer", "oauth"])
def test_token_accepted_in_query_form_or_authorization_header(graph: Graph, place: str) -> None:
    token, world = graph.world.admin_token, graph.world
    proof = appsecret_proof(world.app_secret, token)
    path = f"/{world.employee_id}/applications"
    form = {"business_app": world.app_id, "appsecret_proof": proof}
    if place == "query":
        response = graph.client.post(path, params={"access_token": token}, data=form)
    elif place == "form":
        response = graph.client.post(path, data={**form, "access_token": token})
    else:
        scheme = "Bearer" if place == "bearer" else "OAuth"
        response = graph.client.post(path, data=form, headers={"Authorization": f"{scheme} {token}"})
    assert response.status_code == 200 and response.json() == {"success": True}
    assert graph.sim.requests[-1].access_token == token


@pytest.mark.parametrize("prefix", ["/v24.0", "/v19.0", ""], ids=["v24", "v19", "none"])
def test_any_version_prefix_or_none(graph: Graph, prefix: str) -> None:
    token = graph.world.admin_token
    proof = appsecret_proof(graph.world.app_secret, token)
    response = graph.client.get(f"{graph.root}{prefix}/me", params={"access_token": token, "appsecret_proof": proof})
    assert response.json() == {"id": graph.world.old_admin_id, "name": "tokenvault-admin"}
    assert graph.sim.requests[-1].route == "/me"


def test_json_body_is_accepted(graph: Graph) -> None:
    token = graph.world.admin_token
    response = graph.client.post(f"/{graph.world.old_admin_id}/access_tokens", json={
        "business_app": graph.world.app_id, "scope": WA, "access_token": token,
        "appsecret_proof": appsecret_proof(graph.world.app_secret, token), "set_token_expires_in_60_days": True})
    assert response.status_code == 200
    assert graph.sim.minted[-1].expiring is True


def test_missing_unknown_and_foreign_tokens(graph: Graph) -> None:
    none = graph.get("/me", token="")
    assert error(none)["code"] == 104
    unknown = graph.get("/me", token="EAAnotatoken", proof=False)
    assert unknown.status_code == 400 and (error(unknown)["code"], error(unknown)["error_subcode"]) == (190, 467)
    assert unknown.headers["www-authenticate"].startswith('OAuth "Facebook Platform" "invalid_token"')
    bad_app = graph.client.get("/debug_token", params={"input_token": "x", "access_token": f"{graph.world.app_id}|no"})
    assert error(bad_app)["code"] == 190


def test_unknown_node_field_and_edge(graph: Graph) -> None:
    unknown = graph.get("/999999", fields="id")
    err = error(unknown)
    assert (err["code"], err["error_subcode"], err["type"]) == (100, 33, "GraphMethodException")
    assert err["message"].startswith("Unsupported get request. Object with ID '999999' does not exist")
    field = graph.get(f"/{graph.world.old_admin_id}", fields="id,role")
    assert error(field)["message"] == "(#100) Tried accessing nonexisting field (role) on node type (SystemUser)"
    assert error(graph.get(f"/{graph.world.old_admin_id}/nothing"))["code"] == 100
    assert error(graph.get(f"/{graph.world.old_admin_id}/a/b"))["code"] == 2500


def test_a_token_of_another_business_sees_nothing(graph: Graph) -> None:
    sim = graph.sim
    sim.add_business("1999", "Other")
    sim.add_app("2999", "othersecret", "1999", require_appsecret_proof=False)
    other_su = sim.add_system_user("1999", name="other", created_time=sim.clock.now() - timedelta(days=30))
    other = sim.issue_token("2999", other_su)
    assert error(graph.get(f"/{graph.world.old_admin_id}", token=other, proof=False))["error_subcode"] == 33
    assert error(graph.get(f"/{graph.world.business_id}/system_users", token=other, proof=False))["code"] == 200
    assert error(graph.mint(graph.world.old_admin_id, token=other))["code"] == 100  # proof: other app's secret
    with pytest.raises(ValueError, match="belongs to business"):
        sim.install_app(other_su, graph.world.app_id)


# ----- system users ------------------------------------------------------------------------------------------------

def test_list_system_users_with_cursor_paging_and_summary(graph: Graph) -> None:
    for i in range(6):
        graph.sim.add_system_user(graph.world.business_id, name=f"extra-{i}", role="EMPLOYEE")
    seen: list[dict[str, Any]] = []
    page = graph.get(f"/{graph.world.business_id}/system_users", fields="id,name,role,created_time", limit=4,
                     summary="total_count").json()
    assert page["summary"] == {"total_count": 9}
    pages = 1
    seen += page["data"]
    while "next" in page["paging"]:
        page = graph.client.get(page["paging"]["next"]).json()  # the link carries token, proof and cursor
        seen += page["data"]
        pages += 1
    assert pages == 3 and len(seen) == 9 and len({u["id"] for u in seen}) == 9
    old = next(u for u in seen if u["id"] == graph.world.old_admin_id)
    assert old == {"id": graph.world.old_admin_id, "name": "tokenvault-admin", "role": "ADMIN",
                   "created_time": "2025-12-02T00:00:00+0000"}
    assert {u["role"] for u in seen} == {"ADMIN", "EMPLOYEE"}
    back = graph.client.get(page["paging"]["previous"]).json()
    assert [u["id"] for u in back["data"]] == [u["id"] for u in seen[4:8]]


@pytest.mark.parametrize("in_list,in_list_error,on_node", [(True, False, True), (False, False, True),
                                                           (False, True, True), (False, False, False)],
                         ids=["both", "node-only", "list-errors", "neither"])
def test_created_time_knobs(graph: Graph, in_list: bool, in_list_error: bool, on_node: bool) -> None:
    sim = graph.sim
    sim.created_time_in_list, sim.created_time_in_list_error, sim.created_time_on_node = in_list, in_list_error, on_node
    listed = graph.get(f"/{graph.world.business_id}/system_users", fields="id,name,role,created_time")
    if in_list_error:
        assert error(listed)["message"] == ("(#100) Tried accessing nonexisting field (created_time) on node type "
                                            "(SystemUser)")
    else:
        assert all(("created_time" in u) == in_list for u in listed.json()["data"])
    node = graph.get(f"/{graph.world.new_admin_id}", fields="id,name,created_time").json()
    assert ("created_time" in node) == on_node
    if on_node:
        assert node["created_time"] == "2025-12-31T23:00:00+0000"


def test_create_system_user_young_admin_caller_refused(graph: Graph) -> None:
    young = graph.sim.issue_token(graph.world.app_id, graph.world.new_admin_id, ("business_management",))
    refused = graph.post(f"/{graph.world.business_id}/system_users", token=young, name="x", role="ADMIN")
    assert error(refused)["message"] == SEVEN_DAY_MESSAGE
    created = graph.post(f"/{graph.world.business_id}/system_users", name="new-one", role="EMPLOYEE")
    su = graph.sim.system_user(created.json()["id"])
    assert (su.name, su.role, su.created_time) == ("new-one", "EMPLOYEE", graph.sim.clock.now())


# ----- minting -----------------------------------------------------------------------------------------------------

def test_seven_day_boundary_to_the_second(graph: Graph) -> None:
    sim = graph.sim
    su = sim.add_system_user(graph.world.business_id, name="fresh-admin", role="ADMIN",
                             installed_apps=[graph.world.app_id])
    sim.clock.advance(days=6, hours=23, minutes=59, seconds=59)
    refused = graph.mint(su)
    assert refused.status_code == 400
    assert error(refused)["message"] == SEVEN_DAY_MESSAGE and error(refused)["code"] == 100
    assert sim.minted == []
    sim.clock.advance(seconds=1)  # exactly 7 days
    allowed = graph.mint(su)
    assert allowed.status_code == 200
    assert sim.minted[-1].system_user_id == su and sim.minted[-1].value == allowed.json()["access_token"]


@pytest.mark.parametrize("variant,code,status", [("code100", 100, 400), ("code200", 200, 400), ("code1", 1, 500)])
def test_seven_day_error_variants_keep_metas_text(graph: Graph, variant: str, code: int, status: int) -> None:
    graph.sim.seven_day_error = variant
    refused = graph.mint(graph.world.new_admin_id)
    assert refused.status_code == status
    assert (error(refused)["code"], error(refused)["message"]) == (code, SEVEN_DAY_MESSAGE)


def test_seven_day_rule_can_be_switched_off(graph: Graph) -> None:
    graph.sim.seven_day_rule_on_mint = False
    assert graph.mint(graph.world.new_admin_id).status_code == 200


def test_minted_token_shape_and_record(graph: Graph) -> None:
    token = graph.minted()
    assert token.startswith("EAA") and token.isalnum() and 170 <= len(token) <= 200
    record = graph.sim.minted[-1]
    assert (record.value, record.app_id, record.system_user_id, record.expiring, record.revoked_at) == (
        token, graph.world.app_id, graph.world.old_admin_id, False, None)
    assert record.scopes == ("whatsapp_business_management", "whatsapp_business_messaging")
    assert record.issued_at == graph.sim.clock.now() and "…" in repr(record) and token not in repr(record)
    assert graph.sim.token_state(token) == "valid"
    sent = graph.sim.requests[-1]
    assert (sent.method, sent.form["business_app"], sent.status) == ("POST", graph.world.app_id, 200)


def test_minting_is_deterministic_per_seed() -> None:
    def first(seed: int) -> str:
        sim, world = GraphSimulator.demo_world(seed=seed)
        return sim.issue_token(world.app_id, world.old_admin_id)
    assert first(1) == first(1) != first(2)


@pytest.mark.parametrize("case", ["not-installed", "unknown-scope", "no-scope", "no-app", "foreign-app",
                                  "employee-for-other"])
def test_mint_refusals(graph: Graph, case: str) -> None:
    sim, world = graph.sim, graph.world
    su, token, scope, app = world.old_admin_id, None, WA, world.app_id
    if case == "not-installed":
        su = sim.add_system_user(world.business_id, name="bare", role="EMPLOYEE")
    elif case == "unknown-scope":
        scope = "whatsapp_business_management,whatsap_business_messaging"
    elif case == "no-scope":
        scope = ""
    elif case == "no-app":
        app = "42"
    elif case == "foreign-app":
        sim.add_business("1999")
        sim.add_app("2999", "s", "1999")
        app = "2999"
    else:
        token = sim.issue_token(world.app_id, world.employee_id)
    response = graph.post(f"/{su}/access_tokens", token=token, business_app=app, scope=scope)
    err = error(response)
    assert response.status_code == 400
    expected = {"not-installed": (100, "is not installed for system user"),
                "unknown-scope": (100, "Provided permission is not valid. Check your spelling and syntax."),
                "no-scope": (100, "The parameter scope is required"), "no-app": (100, "valid app id"),
                "foreign-app": (100, "is not owned by business"), "employee-for-other": (200, "Only an admin")}[case]
    assert err["code"] == expected[0] and expected[1] in err["message"]
    assert sim.minted == []


def test_employee_mints_for_itself_after_install(graph: Graph) -> None:
    sim, world = graph.sim, graph.world
    su = sim.add_system_user(world.business_id, name="worker", role="EMPLOYEE")
    sim.assign_waba(su, world.waba_id)
    own = sim.issue_token(world.app_id, su)  # issuing by hand installs the app
    assert graph.post(f"/{su}/applications", token=own, business_app=world.app_id).json() == {"success": True}
    minted = graph.mint(su, token=own)
    assert minted.status_code == 200
    assert graph.debug(minted.json()["access_token"])["granular_scopes"][0]["target_ids"] == [world.waba_id]


def test_business_requiring_expiring_tokens(graph: Graph) -> None:
    graph.sim.world.businesses[graph.world.business_id].requires_expiring_tokens = True
    assert "requires expiring tokens" in error(graph.mint(graph.world.old_admin_id))["message"]
    assert graph.mint(graph.world.old_admin_id, expiring=True).status_code == 200


# ----- debug_token, revoke, refresh --------------------------------------------------------------------------------

def test_debug_token_is_truthful_for_never_and_60_day_tokens(graph: Graph) -> None:
    now = graph.sim.clock.now()
    never = graph.debug(graph.minted())
    assert never == {
        "app_id": graph.world.app_id, "type": "SYSTEM_USER", "application": "tokenvault-demo",
        "data_access_expires_at": 0, "expires_at": 0, "is_valid": True, "issued_at": int(now.timestamp()),
        "scopes": ["whatsapp_business_management", "whatsapp_business_messaging"],
        "granular_scopes": [{"scope": "whatsapp_business_management", "target_ids": [graph.world.waba_id]},
                            {"scope": "whatsapp_business_messaging", "target_ids": [graph.world.waba_id]}],
        "user_id": graph.world.old_admin_id}
    expiring = graph.minted(expiring=True)
    data = graph.debug(expiring)
    assert data["expires_at"] == int((now + timedelta(days=60)).timestamp()) and data["is_valid"] is True
    graph.sim.clock.advance(days=60)
    data = graph.debug(expiring)
    assert data["is_valid"] is False and (data["error"]["code"], data["error"]["subcode"]) == (190, 463)
    used = graph.get("/me", token=expiring)
    assert (error(used)["code"], error(used)["error_subcode"]) == (190, 463)
    assert graph.sim.token_state(expiring) == "expired"


def test_debug_token_variants_and_refusals(graph: Graph) -> None:
    sim = graph.sim
    sim.debug_token_type, sim.never_expires_as, sim.target_ids_when_unrestricted = None, "absent", False
    data = graph.debug(graph.minted())
    assert "type" not in data and "expires_at" not in data and "target_ids" not in data["granular_scopes"][0]
    unknown = graph.debug("EAAbogus")
    assert unknown["is_valid"] is False and unknown["error"]["code"] == 190 and unknown["scopes"] == []
    sim.add_business("1999")
    sim.add_app("2999", "s", "1999")
    foreign = graph.client.get("/debug_token", params={"input_token": graph.world.admin_token,
                                                       "access_token": "2999|s"})
    assert error(foreign)["message"] == "(#100) The App_id in the input_token did not match the Viewing App"


def test_revoke_then_every_use_gives_190(graph: Graph) -> None:
    world = graph.world
    doomed = graph.minted()
    params = {"client_id": world.app_id, "client_secret": world.app_secret, "revoke_token": doomed}
    assert graph.get("/oauth/revoke", **params).json() == {"success": "true"}
    assert graph.sim.token_state(doomed) == "revoked" and graph.sim.minted[-1].revoked_at == graph.sim.clock.now()
    used = graph.get("/me", token=doomed)
    assert used.status_code == 400 and error(used)["code"] == 190
    assert graph.debug(doomed)["is_valid"] is False
    again = graph.get("/oauth/revoke", **params)
    assert error(again)["code"] == 190
    wrong = graph.get("/oauth/revoke", **{**params, "revoke_token": graph.minted(), "client_secret": "nope"})
    assert error(wrong) | {"fbtrace_id": ""} == {"message": "Error validating client secret.", "type": "OAuthException",
                                                 "code": 1, "fbtrace_id": ""}
    assert graph.client.post("/oauth/revoke", data=params).status_code == 400  # GET is the documented method
    graph.sim.revoke_via_post, graph.sim.revoke_success_value = True, True
    fresh = graph.minted()
    posted = graph.post("/oauth/revoke", **{**params, "revoke_token": fresh})
    assert posted.json() == {"success": True}


def test_out_of_band_revocation(graph: Graph) -> None:
    graph.sim.revoke(graph.world.admin_token)
    assert error(graph.get("/me"))["code"] == 190
    with pytest.raises(KeyError):
        graph.sim.revoke("EAAunknown")


def test_refresh_gives_a_new_token_and_the_old_lives_until_its_expiry(graph: Graph) -> None:
    world, sim = graph.world, graph.sim
    old = graph.minted(expiring=True)
    sim.clock.advance(days=10)
    params = {"grant_type": "fb_exchange_token", "client_id": world.app_id, "client_secret": world.app_secret,
              "set_token_expires_in_60_days": "true", "fb_exchange_token": old}
    response = graph.client.get("/oauth/access_token", params=params)
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("bearer", 5184000) and body["access_token"] != old
    new = body["access_token"]
    assert sim.minted[-1].value == new and sim.minted[-1].via == "fb_exchange_token"
    sim.clock.advance(days=50)  # old: 60 days since issue
    assert sim.token_state(old) == "expired" and sim.token_state(new) == "valid"
    assert graph.debug(new)["expires_at"] == int((sim.clock.now() + timedelta(days=10)).timestamp())
    never = graph.minted()
    refused = graph.client.get("/oauth/access_token", params={**params, "fb_exchange_token": never})
    assert error(refused)["code"] == 100
    client_credentials = graph.client.get("/oauth/access_token", params={
        "grant_type": "client_credentials", "client_id": world.app_id, "client_secret": world.app_secret})
    assert client_credentials.json()["access_token"] == f"{world.app_id}|{world.app_secret}"


# ----- WhatsApp -----------------------------------------------------------------------------------------------------

def test_phone_number_check(graph: Graph) -> None:
    sim, world = graph.sim, graph.world
    fields = "id,display_phone_number,verified_name,quality_rating"
    ok = graph.get(f"/{world.phone_number_id}", token=graph.minted(), fields=fields)
    assert ok.json() == {"id": world.phone_number_id, "display_phone_number": "+1 555-0004",
                         "verified_name": "Demo Business", "quality_rating": "GREEN"}
    sim.add_waba(world.business_id, "3999", ["4999"])
    elsewhere = sim.issue_token(world.app_id, world.old_admin_id, waba_ids=["3999"])
    assert error(graph.get(f"/{world.phone_number_id}", token=elsewhere, fields=fields))["code"] == 200
    messaging_only = sim.issue_token(world.app_id, world.old_admin_id, ["whatsapp_business_messaging"])
    assert error(graph.get(f"/{world.phone_number_id}", token=messaging_only))["code"] == 200
    listed = graph.get(f"/{world.waba_id}/phone_numbers")
    assert [p["id"] for p in listed.json()["data"]] == [world.phone_number_id]


# ----- faults, rate limits, latency ---------------------------------------------------------------------------------

FAULTS = {  # kind: (HTTP status, Graph code or None, is_transient)
    "http500": (500, None, None), "http503": (503, None, None), "code1": (500, 1, True), "code2": (400, 2, True),
    "code4": (400, 4, True), "code17": (400, 17, True), "code80008": (400, 80008, True), "code190": (400, 190, None),
    "code200": (400, 200, None), "code10": (400, 10, None), "code3": (400, 3, None), "code613": (400, 613, True),
    "code100": (400, 100, None),
}


@pytest.mark.parametrize("kind", sorted(FAULT_KINDS))
def test_fail_next_kinds(graph: Graph, kind: str) -> None:
    graph.sim.fail_next(2, kind=kind, path_contains="/me")
    assert graph.get(f"/{graph.world.old_admin_id}").status_code == 200  # another path: untouched
    for _ in range(2):
        if kind == "timeout":
            expected = httpx.ReadTimeout if graph.mode == "transport" else httpx.RemoteProtocolError
            with pytest.raises(expected):
                graph.get("/me")
            assert graph.sim.requests[-1].status == 0
            continue
        response = graph.get("/me")
        status, code, transient = FAULTS[kind]
        assert response.status_code == status
        if code is None:
            assert response.headers["content-type"].startswith("text/html")
        else:
            assert error(response)["code"] == code and error(response).get("is_transient") == transient
    if kind == "code4":
        assert json.loads(response.headers["x-app-usage"])["call_count"] == 100
    if kind == "code80008":
        assert "x-business-use-case-usage" in response.headers
    assert graph.get("/me").status_code == 200
    assert graph.sim.token_state(graph.world.admin_token) == "valid"  # a fault changes nothing


def test_unknown_fault_kind_is_refused(graph_sim: GraphSimulator) -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        graph_sim.fail_next(kind="http418")


def test_random_faults_are_reproducible_per_seed(graph_client: httpx.Client, graph_sim: GraphSimulator,
                                                 graph_world: DemoWorld) -> None:
    def pattern(sim: GraphSimulator, world: DemoWorld) -> list[int]:
        sim.fault_rate, sim.fault_kind = 0.5, "code2"
        with httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com") as client:
            token = world.admin_token
            proof = appsecret_proof(world.app_secret, token)
            return [client.get("/me", params={"access_token": token, "appsecret_proof": proof}).status_code
                    for _ in range(20)]
    first = pattern(graph_sim, graph_world)
    assert set(first) == {200, 400}
    assert pattern(*GraphSimulator.demo_world()) == first


def test_rate_limit_usage_headers_code_4_and_regain(graph: Graph) -> None:
    sim, world = graph.sim, graph.world
    sim.rate_limit = (4, 600.0)
    counts = [json.loads(graph.get("/me").headers["x-app-usage"])["call_count"] for _ in range(3)]
    assert counts == [25, 50, 75]
    phone = graph.get(f"/{world.phone_number_id}")
    assert json.loads(phone.headers["x-business-use-case-usage"])[world.waba_id][0]["call_count"] == 100
    sim.clock.advance(seconds=100)
    limited = graph.get(f"/{world.phone_number_id}")
    err = error(limited)
    assert limited.status_code == 400 and (err["code"], err["is_transient"]) == (4, True)
    assert err["message"] == "(#4) Application request limit reached"
    assert json.loads(limited.headers["x-app-usage"])["call_count"] == 100
    buc = json.loads(limited.headers["x-business-use-case-usage"])[world.waba_id][0]
    assert buc["estimated_time_to_regain_access"] == 8  # 500 s left: minutes, rounded down
    sim.clock.advance(seconds=460)
    again = graph.get(f"/{world.phone_number_id}")
    assert json.loads(again.headers["x-business-use-case-usage"])[world.waba_id][0][
        "estimated_time_to_regain_access"] == 0  # 40 s left: under a minute
    sim.clock.advance(seconds=40)
    assert graph.get("/me").status_code == 200
    sim.rate_limit = None
    assert json.loads(graph.get("/me").headers["x-app-usage"]) == {"call_count": 0, "total_cputime": 0,
                                                                   "total_time": 0}


def test_latency_is_slept_outside_the_lock(graph: Graph) -> None:
    graph.sim.latency = 0.2
    results: list[int] = []

    def one() -> None:
        results.append(graph.get("/me").status_code)

    threads = [threading.Thread(target=one) for _ in range(5)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [200] * 5 and 0.2 <= elapsed < 0.8


def test_async_transport(graph_sim: GraphSimulator, graph_world: DemoWorld) -> None:
    async def main() -> int:
        async with httpx.AsyncClient(transport=graph_sim.async_transport(),
                                     base_url="https://graph.facebook.com/v24.0") as client:
            token = graph_world.admin_token
            response = await client.get("/me", params={"access_token": token,
                                                       "appsecret_proof": appsecret_proof(graph_world.app_secret,
                                                                                          token)})
            return response.status_code
    assert asyncio.run(main()) == 200


# ----- persistence and control ---------------------------------------------------------------------------------------

def test_save_load_round_trip_0600(tmp_path: Path, graph: Graph) -> None:
    sim = graph.sim
    keep, gone = graph.minted(expiring=True), graph.minted()
    sim.revoke(gone)
    sim.clock.advance(days=3)
    sim.seven_day_error, sim.rate_limit = "code200", (10, 60.0)
    sim.fail_next(kind="code2", path_contains="debug")
    path = tmp_path / "state.json"
    sim.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = GraphSimulator.load(path)
    assert loaded.clock.now() == sim.clock.now() and loaded.demo == sim.demo
    assert (loaded.token_state(keep), loaded.token_state(gone)) == ("valid", "revoked")
    assert (loaded.seven_day_error, loaded.rate_limit) == ("code200", (10, 60.0))
    assert [(t.value, t.scopes, t.expiring, t.issued_at) for t in loaded.minted] == [
        (t.value, t.scopes, t.expiring, t.issued_at) for t in sim.minted]
    assert loaded.system_user(graph.world.employee_id).waba_ids == {graph.world.waba_id}
    assert loaded.pending_faults[0].kind == "code2"
    # the RNG continues where it was: both mint the same next value
    assert loaded.issue_token(graph.world.app_id, graph.world.old_admin_id) == sim.issue_token(
        graph.world.app_id, graph.world.old_admin_id)
    sim.save(path)  # atomic replace keeps 0600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_control_endpoints(graph: Graph) -> None:
    base, c = graph.root, graph.client
    token = graph.minted()
    assert c.post(f"{base}/_sim/advance", json={"seconds": 3600}).json() == {"now": "2026-01-01T01:00:00+00:00"}
    assert c.post(f"{base}/_sim/fail", json={"n": 1, "kind": "code17", "path_contains": "/me"}).status_code == 200
    assert error(graph.get("/me"))["code"] == 17
    assert c.post(f"{base}/_sim/latency", json={"seconds": 0.01}).json() == {"latency": 0.01}
    assert c.post(f"{base}/_sim/revoke", json={"token": token}).json() == {"revoked": True, "state": "revoked"}
    assert c.post(f"{base}/_sim/knobs", json={"seven_day_error": "code1"}).json()["seven_day_error"] == "code1"
    made = c.post(f"{base}/_sim/world", json={"op": "add_system_user", "business_id": graph.world.business_id,
                                              "name": "remote", "role": "ADMIN", "age_seconds": 86400})
    su = made.json()["result"]
    state = c.get(f"{base}/_sim/state").json()
    assert state["now"] == "2026-01-01T01:00:00+00:00" and state["knobs"]["latency"] == 0.01
    assert [(t["value"], t["state"]) for t in state["minted"]] == [(token, "revoked")]
    remote = next(u for u in state["system_users"] if u["id"] == su)
    assert (remote["role"], remote["age_seconds"]) == ("ADMIN", 86400)
    assert {u["id"] for u in state["system_users"]} >= {graph.world.old_admin_id, graph.world.new_admin_id}
    logged = c.get(f"{base}/_sim/requests", params={"since": 0}).json()
    assert logged["count"] == len(graph.sim.requests) and logged["requests"][-1]["route"] == "/me"
    assert c.post(f"{base}/_sim/fail", json={"kind": "nope"}).status_code == 400
    assert c.post(f"{base}/_sim/knobs", json={"latency": "slow"}).status_code == 400
    assert c.get(f"{base}/_sim/nothing").status_code == 404
    assert graph.sim.requests[-1].route == "/me"  # control calls are not recorded


def test_fixtures_serve_the_demo_world(graph_server: Any, graph_world: DemoWorld, sim_clock: SimClock) -> None:
    token = graph_world.admin_token
    with httpx.Client(base_url=graph_server.url, verify=False) as client:
        me = client.get("/v24.0/me", headers={"Authorization": f"OAuth {token}"},
                        params={"appsecret_proof": appsecret_proof(graph_world.app_secret, token)})
        assert me.json()["id"] == graph_world.old_admin_id
        moved = client.post("/_sim/advance", json={"to": "2026-02-01T00:00:00+00:00"})
    assert moved.json() == {"now": "2026-02-01T00:00:00+00:00"} and sim_clock.now() == datetime(2026, 2, 1, tzinfo=UTC)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_cli_simulator_serve_subprocess(tmp_path: Path) -> None:
    port, state_file = _free_port(), tmp_path / "sim-state.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENVAULT_")}
    argv = ["simulator", "serve", "--port", str(port), "--state", str(state_file), "--seed-demo", "--json",
            "--start", "2026-01-01T00:00:00Z"]
    proc = subprocess.Popen([sys.executable, "-m", "meta_tokenvault.cli.main", *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(timeout=5, verify=False)  # plain HTTP: no TLS context to build
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                state = client.get(f"{url}/_sim/state", timeout=0.5).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the simulator did not come up"
                time.sleep(0.05)
        demo = state["demo"]
        token = demo["admin_token"]
        minted = client.post(f"{url}/v24.0/{demo['old_admin_id']}/access_tokens", data={
            "business_app": demo["app_id"], "scope": WA, "access_token": token,
            "appsecret_proof": appsecret_proof(demo["app_secret"], token)}).json()["access_token"]
        assert client.post(f"{url}/_sim/advance", json={"seconds": 60}).status_code == 200
    finally:
        client.close()
        proc.terminate()  # its own PID only
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[0])["url"] == url
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    loaded = GraphSimulator.load(state_file)
    assert loaded.token_state(minted) == "valid" and loaded.clock.now() == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
