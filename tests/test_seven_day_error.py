"""Meta's seven-day admin rule, recognised wherever Meta puts its text (issue 11 item 5; §13 of the reference).

No code or subcode is published for it. The text may be in ``message``, or in ``error_user_title`` /
``error_user_msg`` (localised) with ``message`` a generic "Invalid parameter". The simulator plays each
placement under each code it knows (knobs ``seven_day_placement`` x ``seven_day_error``); the real client
must raise :class:`SevenDayWindow` (exit 7) every time, and nothing else for a look-alike.
"""

from __future__ import annotations

import httpx
import pytest

from meta_tokenvault.adapters.graph_httpx import HttpxGraphApi
from meta_tokenvault.errors import InvalidRequest, SevenDayWindow
from meta_tokenvault.graph_errors import classify, parse_error
from meta_tokenvault.ports.graph import AppCredentials
from meta_tokenvault.testing.graph_sim import SEVEN_DAY_MESSAGE, WHATSAPP_SCOPES, DemoWorld, GraphSimulator
from meta_tokenvault.types import Secret

PLACEMENTS = ("message", "error_user_title", "error_user_msg")
CODES = ("code100", "code200", "code1")


def client_for(sim: GraphSimulator) -> HttpxGraphApi:
    return HttpxGraphApi(httpx.Client(transport=sim.transport()), max_attempts=3, sleep=lambda _s: None)


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_placement_through_the_real_client(graph_sim: GraphSimulator, graph_world: DemoWorld,
                                                 placement: str, code: str) -> None:
    graph_sim.seven_day_placement, graph_sim.seven_day_error = placement, code
    graph_sim.mint_requires_old_admin = True  # the seed's reading: minting through a young admin refused too
    app = AppCredentials(graph_world.app_id, Secret(graph_world.app_secret))
    graph = client_for(graph_sim)
    with pytest.raises(SevenDayWindow) as caught:
        graph.generate_token(graph_world.new_admin_id, app, Secret(graph_world.admin_token), WHATSAPP_SCOPES)
    assert caught.value.exit_code == 7
    assert SEVEN_DAY_MESSAGE in str(caught.value)  # the text that says it, even when `message` is generic
    assert caught.value.system_user_id == graph_world.new_admin_id
    assert caught.value.code == {"code100": 100, "code200": 200, "code1": 1}[code]
    assert graph_sim.requests[-1].status == (500 if code == "code1" else 400)
    assert graph.attempts == 1  # refused once, not retried (code 1 with is_transient false included)
    assert graph_sim.minted == []


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_the_simulator_puts_the_text_only_where_the_knob_says(graph_sim: GraphSimulator, graph_world: DemoWorld,
                                                              placement: str) -> None:
    graph_sim.seven_day_placement = placement
    failure = graph_sim.seven_day_failure().payload("AbC")["error"]
    holders = {k for k in PLACEMENTS if failure.get(k) == SEVEN_DAY_MESSAGE}
    assert holders == {placement}
    if placement != "message":
        assert failure["message"] == "Invalid parameter"


@pytest.mark.parametrize("field", PLACEMENTS)
@pytest.mark.parametrize("code", [100, 200, 1, 2859003, None], ids=["100", "200", "1", "unknown", "none"])
def test_classify_finds_the_text_in_any_field_under_any_code(field: str, code: int | None) -> None:
    err: dict[str, object] = {"message": "Invalid parameter", "type": "OAuthException", "fbtrace_id": "AbC"}
    if code is not None:
        err["code"] = code
    err[field] = SEVEN_DAY_MESSAGE
    parsed = parse_error(400, {"error": err})
    assert parsed is not None
    assert isinstance(classify(parsed), SevenDayWindow)


def test_a_generic_invalid_parameter_stays_an_invalid_request() -> None:
    parsed = parse_error(400, {"error": {"message": "Invalid parameter", "type": "OAuthException", "code": 100,
                                         "error_user_title": "Cannot create system user",
                                         "error_user_msg": "Try again later.", "fbtrace_id": "AbC"}})
    assert parsed is not None and isinstance(classify(parsed), InvalidRequest)
