"""The Graph error table, row by row, through the real adapter over an httpx MockTransport.

Each row sends Meta's documented error shape and checks the exception class, the exit code,
whether the call was retried, and that the retries stop at their bound.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from meta_tokenvault.adapters.graph_httpx import HttpxGraphApi, appsecret_proof, parse_meta_time, redact_url
from meta_tokenvault.errors import (
    GraphError,
    InvalidRequest,
    PermissionMissing,
    RateLimited,
    SevenDayWindow,
    TokenInvalid,
    Transient,
    VaultError,
)
from meta_tokenvault.graph_errors import classify, parse_error, retry_after_from_headers
from meta_tokenvault.ports.graph import AppCredentials
from meta_tokenvault.types import Secret

APP = AppCredentials("2000000000002", Secret("app-secret-value-0123"))
CALLER = Secret("EAAcallertoken" + "x" * 40)
SEVEN_DAY_TEXT = "The admin system user must be at least seven days old before creating other admin system users."


def meta_error(code: int | None, *, subcode: int | None = None, message: str = "boom", status: int = 400,
               transient: bool | None = None, headers: dict[str, str] | None = None) -> httpx.Response:
    err: dict[str, Any] = {"message": message, "type": "OAuthException", "fbtrace_id": "AbCdEf"}
    if code is not None:
        err["code"] = code
    if subcode is not None:
        err["error_subcode"] = subcode
    if transient is not None:
        err["is_transient"] = transient
    return httpx.Response(status, json={"error": err}, headers=headers or {})


class Recorder:
    """An httpx transport answering from a script of responses (the last one repeats)."""

    def __init__(self, *responses: httpx.Response | Callable[[httpx.Request], httpx.Response]) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.responses[min(len(self.requests), len(self.responses)) - 1]
        return answer(request) if callable(answer) else answer


def api(recorder: Recorder, **kw: Any) -> tuple[HttpxGraphApi, list[float]]:
    sleeps: list[float] = []
    client = httpx.Client(transport=httpx.MockTransport(recorder))
    graph = HttpxGraphApi(client, base_url="https://graph.test", version="v24.0", sleep=sleeps.append,
                          rng=lambda: 0.5, **kw)
    return graph, sleeps


ROWS = [
    # id, response, expected class, retried?
    ("190-invalid", meta_error(190, subcode=467), TokenInvalid, False),
    ("190-expired", meta_error(190, subcode=463), TokenInvalid, False),
    ("102-session", meta_error(102), TokenInvalid, False),
    ("10-permission", meta_error(10), PermissionMissing, False),
    ("200-no-asset", meta_error(200), PermissionMissing, False),
    ("299-permission", meta_error(299), PermissionMissing, False),
    ("3-capability", meta_error(3), PermissionMissing, False),
    ("4-app-limit", meta_error(4), RateLimited, True),
    ("17-user-limit", meta_error(17, subcode=2446079), RateLimited, True),
    ("32-pages-limit", meta_error(32), RateLimited, True),
    ("613-custom", meta_error(613, subcode=1487742), RateLimited, True),
    ("80004-buc", meta_error(80004), RateLimited, True),
    ("80008-whatsapp-buc", meta_error(80008), RateLimited, True),
    ("341-app-limit", meta_error(341), RateLimited, True),
    ("368-blocked", meta_error(368), RateLimited, True),
    ("1-unknown", meta_error(1, status=500), Transient, True),
    ("2-service", meta_error(2, status=500), Transient, True),
    ("is-transient-flag", meta_error(9999, transient=True), Transient, True),
    ("http-503-no-body", httpx.Response(503, text="Service Unavailable"), Transient, True),
    ("http-502-json-no-error", httpx.Response(502, json={"oops": 1}), Transient, True),
    ("http-429-no-body", httpx.Response(429, text="slow down"), RateLimited, True),
    ("100-invalid-param", meta_error(100, subcode=33), InvalidRequest, False),
    ("unknown-code", meta_error(12345), InvalidRequest, False),
    ("html-404", httpx.Response(404, text="<html>not found</html>"), InvalidRequest, False),
    ("seven-day-code100", meta_error(100, message=SEVEN_DAY_TEXT), SevenDayWindow, False),
    ("seven-day-code200", meta_error(200, message=SEVEN_DAY_TEXT), SevenDayWindow, False),
    ("seven-day-no-code", meta_error(None, message=SEVEN_DAY_TEXT), SevenDayWindow, False),
]


@pytest.mark.parametrize(("response", "expected", "retried"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_error_table_row(response: httpx.Response, expected: type[VaultError], retried: bool) -> None:
    rec = Recorder(response)
    graph, sleeps = api(rec, max_attempts=3)
    with pytest.raises(expected) as info:
        graph.generate_token("555", APP, CALLER, ("whatsapp_business_messaging",))
    exc = info.value
    assert type(exc) is expected
    assert len(rec.requests) == (3 if retried else 1)
    assert exc.exit_code == (7 if expected is SevenDayWindow else 6)
    assert "\n" not in exc.message and CALLER.reveal() not in exc.message
    if expected is SevenDayWindow:
        assert exc.system_user_id == "555"  # type: ignore[attr-defined]


def test_retry_then_success_counts_attempts() -> None:
    rec = Recorder(meta_error(2, status=500), httpx.Response(503), httpx.Response(200, json={"access_token": "EAAnew"}))
    graph, sleeps = api(rec, max_attempts=5, base_delay=0.5)
    token = graph.generate_token("555", APP, CALLER, ("a",))
    assert token.reveal() == "EAAnew"
    assert len(rec.requests) == 3 and graph.retries == 2
    assert sleeps == [0.5, 1.0]  # exponential: base 0.5 then 1.0 (jitter factor fixed at 1.0 here)


def test_retries_stop_at_max_wait() -> None:
    rec = Recorder(httpx.Response(503))
    graph, sleeps = api(rec, max_attempts=50, base_delay=1.0, max_wait=10.0)
    with pytest.raises(Transient):
        graph.debug_token(CALLER, APP)
    assert sum(sleeps) <= 10.0
    assert len(rec.requests) == 4  # waits 1+2+4 = 7; the next (8) would pass 10 s


def test_rate_limit_waits_what_meta_says() -> None:
    usage = json.dumps({"123": [{"type": "whatsapp_business_management", "call_count": 100,
                                 "total_cputime": 10, "total_time": 10, "estimated_time_to_regain_access": 2}]})
    rec = Recorder(meta_error(80008, headers={"X-Business-Use-Case-Usage": usage}),
                   httpx.Response(200, json={"data": {"is_valid": True}}))
    graph, sleeps = api(rec, max_wait=600)
    assert graph.debug_token(CALLER, APP).is_valid
    assert len(sleeps) == 1 and sleeps[0] == pytest.approx(120.0, abs=0.1)  # 2 minutes


def test_rate_limit_longer_than_max_wait_is_raised_with_retry_after() -> None:
    usage = json.dumps({"1": [{"estimated_time_to_regain_access": 60}]})
    rec = Recorder(meta_error(4, headers={"X-Business-Use-Case-Usage": usage}))
    graph, sleeps = api(rec, max_wait=30)
    with pytest.raises(RateLimited) as info:
        graph.debug_token(CALLER, APP)
    assert info.value.retry_after == 3600.0 and sleeps == [] and len(rec.requests) == 1


def test_lost_mint_answer_is_not_retried() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    rec = Recorder(timeout)
    graph, _ = api(rec)
    with pytest.raises(Transient, match="may have been minted"):
        graph.generate_token("555", APP, CALLER, ("a",))
    assert len(rec.requests) == 1
    # an idempotent read is retried after the same timeout
    rec2 = Recorder(timeout, httpx.Response(200, json={"data": {"is_valid": False}}))
    graph2, _ = api(rec2)
    assert graph2.debug_token(CALLER, APP).is_valid is False and len(rec2.requests) == 2


def test_unreachable_graph_is_transient_with_hint() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    graph, _ = api(Recorder(refuse), max_attempts=2)
    with pytest.raises(Transient) as info:
        graph.list_system_users("1", APP, CALLER)
    assert "TOKENVAULT_GRAPH_URL" in info.value.hint


def test_proof_and_token_placement() -> None:
    rec = Recorder(httpx.Response(200, json={"access_token": "EAAminted"}))
    graph, _ = api(rec)
    graph.generate_token("555", APP, CALLER, ("whatsapp_business_management", "whatsapp_business_messaging"),
                         expiring=True)
    request = rec.requests[0]
    assert request.method == "POST" and request.url.path == "/v24.0/555/access_tokens"
    assert CALLER.reveal() not in str(request.url)
    assert request.headers["Authorization"] == f"Bearer {CALLER.reveal()}"
    form = dict(httpx.QueryParams(request.content.decode()))
    assert form["appsecret_proof"] == appsecret_proof(APP.app_secret, CALLER)
    assert form["scope"] == "whatsapp_business_management,whatsapp_business_messaging"
    assert form["business_app"] == APP.app_id and form["set_token_expires_in_60_days"] == "true"


def test_no_secret_in_any_logged_url(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder(httpx.Response(200, json={"success": "true"}),
                   httpx.Response(200, json={"data": {"is_valid": True}}))
    graph, _ = api(rec)
    victim = Secret("EAAvictim" + "y" * 40)
    with caplog.at_level(logging.DEBUG):
        graph.revoke_token(victim, APP, CALLER)
        graph.debug_token(victim, APP)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request" in text  # httpx logged the URLs ...
    for secret in (victim.reveal(), CALLER.reveal(), APP.app_secret.reveal()):
        assert secret not in text  # ... with every secret redacted
    assert "revoke_token=<redacted>" in text


def test_paging_follows_cursors_and_parses_meta_times() -> None:
    page1 = {"data": [{"id": "1", "name": "a", "role": "ADMIN", "created_time": "2026-01-01T00:00:00+0000"}],
             "paging": {"cursors": {"after": "CUR1"}, "next": "https://graph.test/v24.0/9/system_users?after=CUR1"}}
    page2 = {"data": [{"id": "2", "name": "b", "role": "Employee"}], "paging": {"cursors": {"before": "CUR1"}}}
    rec = Recorder(httpx.Response(200, json=page1), httpx.Response(200, json=page2))
    graph, _ = api(rec)
    users = graph.list_system_users("9", APP, CALLER)
    assert [(u.id, u.role) for u in users] == [("1", "ADMIN"), ("2", "EMPLOYEE")]
    assert users[0].created_time is not None and users[0].created_time.isoformat() == "2026-01-01T00:00:00+00:00"
    assert users[1].created_time is None
    assert rec.requests[1].url.params["after"] == "CUR1"


@pytest.mark.parametrize(("raw", "iso"), [
    ("2026-03-04T05:06:07+0000", "2026-03-04T05:06:07+00:00"),
    ("2026-03-04T05:06:07Z", "2026-03-04T05:06:07+00:00"),
    (1767225600, "2026-01-01T00:00:00+00:00"),
    ("1767225600", "2026-01-01T00:00:00+00:00"),
    (0, None), (None, None), ("", None), ("garbage", None),
], ids=["graph", "zulu", "epoch", "epoch-str", "zero-never", "none", "empty", "garbage"])
def test_parse_meta_time(raw: object, iso: str | None) -> None:
    parsed = parse_meta_time(raw)
    assert (parsed.isoformat() if parsed else None) == iso


def test_debug_token_reads_granular_wabas_and_never() -> None:
    data = {"data": {"app_id": "2", "user_id": "555", "is_valid": True, "expires_at": 0, "type": "SYSTEM_USER",
                     "scopes": ["whatsapp_business_messaging"],
                     "granular_scopes": [{"scope": "whatsapp_business_messaging", "target_ids": ["77", "78"]},
                                         {"scope": "business_management"}]}}
    graph, _ = api(Recorder(httpx.Response(200, json=data)))
    info = graph.debug_token(CALLER, APP)
    assert info.expires_at is None and info.waba_ids == ("77", "78") and info.user_id == "555"


# ------------------------------------------------------------------ properties of the parser
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)


@given(status=st.integers(100, 599), body=json_values)
def test_parse_error_never_crashes_on_any_json(status: int, body: object) -> None:
    err = parse_error(status, body)
    if err is not None:
        exc = classify(err)
        assert isinstance(exc, GraphError | SevenDayWindow)
        assert exc.exit_code in (6, 7)


@given(code=st.integers(-10, 100_000) | st.none(), subcode=st.integers(0, 10_000) | st.none(),
       message=st.text(max_size=200), status=st.sampled_from([400, 403, 500, 503]))
def test_every_error_object_maps_to_exactly_one_class(code: int | None, subcode: int | None, message: str,
                                                     status: int) -> None:
    body = {"error": {"code": code, "error_subcode": subcode, "message": message}}
    err = parse_error(status, body)
    assert err is not None
    exc = classify(err)
    assert type(exc) in (TokenInvalid, PermissionMissing, RateLimited, Transient, InvalidRequest, SevenDayWindow)
    if code in (190, 102) and "seven" not in message.lower() and "7" not in message:
        assert isinstance(exc, TokenInvalid)


@given(token=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=8))
def test_redact_url_hides_every_secret_parameter(token: str) -> None:
    url = f"https://g/v1/debug_token?input_token={token}&fields=x&revoke_token={token}&client_secret={token}"
    out = redact_url(url)
    assert f"={token}" not in out and "fields=x" in out


@given(minutes=st.integers(0, 10_000))
def test_retry_after_is_minutes(minutes: int) -> None:
    header = json.dumps({"9": [{"estimated_time_to_regain_access": minutes}]})
    got = retry_after_from_headers({"X-Business-Use-Case-Usage": header})
    assert got == (minutes * 60.0 if minutes > 0 else None)
