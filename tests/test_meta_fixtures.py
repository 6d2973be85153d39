"""Meta's documented answer shapes (tests/fixtures/meta/, sources in its README) against both sides.

* The client parses each fixture through the real adapter (an httpx MockTransport answers with it).
* The simulator answers the same situation with the same keys and the same JSON types, so a client that
  works against the simulator reads Meta's shapes, not shapes the simulator invented.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from meta_tokenvault.adapters.graph_httpx import HttpxGraphApi
from meta_tokenvault.errors import InvalidRequest, RateLimited, SevenDayWindow, TokenInvalid, VaultError
from meta_tokenvault.ports.graph import AppCredentials
from meta_tokenvault.testing.graph_sim import WHATSAPP_SCOPES, DemoWorld, GraphSimulator, appsecret_proof
from meta_tokenvault.types import Secret

FIXTURES = Path(__file__).parent / "fixtures" / "meta"
APP = AppCredentials("2000000000002", Secret("app-secret-value-0123"))
CALLER = Secret("EAAcallertoken" + "x" * 40)


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def answering(body: Any, status: int = 200) -> HttpxGraphApi:
    """The real adapter, over a transport that answers every request with ``body``."""
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    return HttpxGraphApi(httpx.Client(transport=transport), base_url="https://graph.test", version="v24.0",
                         max_attempts=1, sleep=lambda _s: None)


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (a list by its first element)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_every_fixture_is_covered() -> None:
    # endpoints.json is not an answer but the oracle's pin of the OAuth endpoints (tests/meta_oracle.py)
    names = {p.name for p in FIXTURES.glob("*.json")} - {"endpoints.json"}
    assert names == set(CLIENT_CASES) | set(DEBUG_CASES) | {"refresh.json", "revoke.json", "system_users_page.json",
                                                            "mint.json", "install_app.json"}
    assert names == set(SIM_CASES)


# ----- the client reads each shape ----------------------------------------------------------------------------

DEBUG_CASES: dict[str, Callable[[Any], None]] = {}


def _never(info: Any) -> None:
    assert info.is_valid and info.expires_at is None and info.user_id == "5000000000005"
    assert info.issued_at == datetime(2025, 12, 1, tzinfo=UTC)
    assert info.waba_ids == ("3000000000003",) and "business_management" in info.scopes


def _sixty(info: Any) -> None:
    assert info.is_valid and info.expires_at == datetime(2026, 1, 30, tzinfo=UTC)
    assert (info.expires_at - info.issued_at).days == 60


def _invalid(info: Any) -> None:
    assert not info.is_valid and info.expires_at is None
    assert info.error_message is not None and "invalidated" in info.error_message


DEBUG_CASES.update({"debug_token_never_expiring.json": _never, "debug_token_60_day.json": _sixty,
                    "debug_token_invalid.json": _invalid})


@pytest.mark.parametrize("name", sorted(DEBUG_CASES))
def test_client_reads_debug_token(name: str) -> None:
    DEBUG_CASES[name](answering(fixture(name)).debug_token(CALLER, APP))


def test_client_reads_refresh() -> None:
    refreshed = answering(fixture("refresh.json")).refresh_token(CALLER, APP)
    assert refreshed.token.reveal() == fixture("refresh.json")["access_token"] and refreshed.expires_in == 5183999


def test_client_reads_revoke_success_as_a_string() -> None:
    assert fixture("revoke.json") == {"success": "true"}
    answering(fixture("revoke.json")).revoke_token(CALLER, APP, Secret("EAAcaller" + "z" * 40))  # no error
    with pytest.raises(InvalidRequest, match="did not confirm"):
        answering({"success": "false"}).revoke_token(CALLER, APP, Secret("EAAcaller" + "z" * 40))


def test_client_reads_the_system_users_page() -> None:
    users = answering(fixture("system_users_page.json")).list_system_users("1000000000001", APP, CALLER)
    assert [(u.id, u.name, u.role, u.created_time) for u in users] == [
        ("5000000000005", "tokenvault-admin", "ADMIN", None),
        ("5000000000007", "tokenvault-employee", "EMPLOYEE", None)]


def test_client_reads_mint_and_install() -> None:
    token = answering(fixture("mint.json")).generate_token("5000000000005", APP, CALLER, WHATSAPP_SCOPES)
    assert token.reveal() == fixture("mint.json")["access_token"]
    answering(fixture("install_app.json")).install_app("5000000000005", APP, CALLER)  # no error
    with pytest.raises(InvalidRequest, match="did not install"):
        answering({"success": False}).install_app("5000000000005", APP, CALLER)


CLIENT_CASES: dict[str, tuple[type[VaultError], tuple[str, ...]]] = {
    # fixture: (exception, texts its message must carry)
    "error_token_invalidated.json": (TokenInvalid, ("the password was changed", "code 190/460",
                                                     "fbtrace AzXq1m2N3o4P5q6R7s8T9u0")),
    "error_rate_limit.json": (RateLimited, ("Application request limit reached", "code 4")),
    "error_invalid_scope.json": (InvalidRequest, ("Unknown permission: whatsapp_business_manage", "code 100")),
    "error_nonexisting_field.json": (InvalidRequest, ("nonexisting field (secret_field)",)),
    "error_seven_day_message.json": (SevenDayWindow, ("at least seven days old",)),
    "error_seven_day_user_title.json": (SevenDayWindow, ("at least seven days old",)),
    "error_seven_day_user_msg.json": (SevenDayWindow, ("at least seven days old",)),
}


@pytest.mark.parametrize("name", sorted(CLIENT_CASES))
def test_client_classifies_error_body(name: str) -> None:
    expected, texts = CLIENT_CASES[name]
    with pytest.raises(expected) as caught:
        answering(fixture(name), status=400).generate_token("5000000000006", APP, CALLER, WHATSAPP_SCOPES)
    for text in texts:
        assert text in str(caught.value)


# ----- the simulator answers with the same shapes -------------------------------------------------------------

def _get(sim: GraphSimulator, path: str, token: str | None, params: dict[str, str] | None = None,
         *, proof_secret: str | None = None) -> httpx.Response:
    params = dict(params or {})
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
        if proof_secret is not None:
            params["appsecret_proof"] = appsecret_proof(proof_secret, token)
    with httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com/v24.0") as client:
        return client.get(path, params=params, headers=headers)


def _post(sim: GraphSimulator, path: str, token: str, form: dict[str, str], secret: str) -> httpx.Response:
    data = {**form, "appsecret_proof": appsecret_proof(secret, token)}
    with httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com/v24.0") as client:
        return client.post(path, data=data, headers={"Authorization": f"Bearer {token}"})


def _debug(sim: GraphSimulator, w: DemoWorld, token: str) -> httpx.Response:
    return _get(sim, "/debug_token", f"{w.app_id}|{w.app_secret}", {"input_token": token})


def _sixty_day(sim: GraphSimulator, w: DemoWorld) -> str:
    return sim.issue_token(w.app_id, w.employee_id, WHATSAPP_SCOPES, expiring=True)


def _sim_revoked(sim: GraphSimulator, w: DemoWorld) -> httpx.Response:
    sim.revoke(w.admin_token)
    return _debug(sim, w, w.admin_token)


def _sim_refresh(sim: GraphSimulator, w: DemoWorld) -> httpx.Response:
    return _get(sim, "/oauth/access_token", None, {
        "grant_type": "fb_exchange_token", "client_id": w.app_id, "client_secret": w.app_secret,
        "set_token_expires_in_60_days": "true", "fb_exchange_token": _sixty_day(sim, w)})


def _sim_revoke(sim: GraphSimulator, w: DemoWorld) -> httpx.Response:
    return _get(sim, "/oauth/revoke", w.admin_token, {
        "client_id": w.app_id, "client_secret": w.app_secret, "revoke_token": _sixty_day(sim, w)},
        proof_secret=w.app_secret)


def _sim_token_invalidated(sim: GraphSimulator, w: DemoWorld) -> httpx.Response:
    sim.revoke(w.admin_token)
    return _get(sim, f"/{w.old_admin_id}", w.admin_token, {"fields": "id"}, proof_secret=w.app_secret)


def _sim_rate_limit(sim: GraphSimulator, w: DemoWorld) -> httpx.Response:
    sim.rate_limit = (1, 60.0)
    _get(sim, f"/{w.old_admin_id}", w.admin_token, {"fields": "id"}, proof_secret=w.app_secret)
    return _get(sim, f"/{w.old_admin_id}", w.admin_token, {"fields": "id"}, proof_secret=w.app_secret)


def _sim_mint(sim: GraphSimulator, w: DemoWorld, su_id: str, scope: str) -> httpx.Response:
    return _post(sim, f"/{su_id}/access_tokens", w.admin_token, {"business_app": w.app_id, "scope": scope},
                 w.app_secret)


def _sim_seven_day(placement: str) -> Callable[[GraphSimulator, DemoWorld], httpx.Response]:
    def play(sim: GraphSimulator, w: DemoWorld) -> httpx.Response:
        sim.seven_day_placement = placement
        sim.mint_requires_old_admin = True  # the seed's reading, so that a mint meets the rule
        return _sim_mint(sim, w, w.new_admin_id, ",".join(WHATSAPP_SCOPES))
    return play


SIM_CASES: dict[str, Callable[[GraphSimulator, DemoWorld], httpx.Response]] = {
    "debug_token_never_expiring.json": lambda sim, w: _debug(sim, w, w.admin_token),
    "debug_token_60_day.json": lambda sim, w: _debug(sim, w, _sixty_day(sim, w)),
    "debug_token_invalid.json": _sim_revoked,
    "refresh.json": _sim_refresh,
    "system_users_page.json": lambda sim, w: _get(sim, f"/{w.business_id}/system_users", w.admin_token,
                                                   {"fields": "id,name,role"}, proof_secret=w.app_secret),
    "mint.json": lambda sim, w: _sim_mint(sim, w, w.old_admin_id, ",".join(WHATSAPP_SCOPES)),
    "install_app.json": lambda sim, w: _post(sim, f"/{w.employee_id}/applications", w.admin_token,
                                             {"business_app": w.app_id}, w.app_secret),
    "revoke.json": _sim_revoke,
    "error_token_invalidated.json": _sim_token_invalidated,
    "error_rate_limit.json": _sim_rate_limit,
    "error_invalid_scope.json": lambda sim, w: _sim_mint(sim, w, w.old_admin_id, "whatsapp_business_manage"),
    "error_nonexisting_field.json": lambda sim, w: _get(sim, f"/{w.old_admin_id}", w.admin_token,
                                                         {"fields": "id,secret_field"}, proof_secret=w.app_secret),
    "error_seven_day_message.json": _sim_seven_day("message"),
    "error_seven_day_user_title.json": _sim_seven_day("error_user_title"),
    "error_seven_day_user_msg.json": _sim_seven_day("error_user_msg"),
}


@pytest.mark.parametrize("name", sorted(SIM_CASES))
def test_simulator_answers_in_the_fixture_shape(name: str, graph_sim: GraphSimulator, graph_world: DemoWorld) -> None:
    expected = fixture(name)
    response = SIM_CASES[name](graph_sim, graph_world)
    assert response.status_code == (400 if "error" in expected else 200), response.text
    assert shape(response.json()) == shape(expected)
