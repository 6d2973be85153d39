"""The router: one request in, one response out. ``/_sim/*`` goes to the control endpoints; a Graph request
passes queued faults, rate limits and usage headers, is dispatched on its path to a handler, and is recorded.
A new Graph edge goes in :func:`route` (the dispatch) and :mod:`.handlers` (its handler)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from . import faults, handlers, wire
from .auth import authenticate
from .control import handle_control
from .faults import app_usage, buc_usage, check_kind
from .handlers import Payload
from .state import SimState
from .wire import Call, GraphFailure, WireRequest, WireResponse, parse_call
from .world import SimRequest

DEFAULT_VERSION = "v24.0"


def handle(sim: SimState, request: WireRequest) -> WireResponse:
    """The one request-handling core used by the transport and the server."""
    if request.path == "/_sim" or request.path.startswith("/_sim/"):
        return handle_control(sim, request)
    delay = sim.latency
    if delay > 0:
        time.sleep(delay)  # outside the lock: slow requests overlap
    with sim._lock:
        return handle_graph(sim, request)


def route(sim: SimState, call: Call) -> Payload:
    """Dispatch on the path (version prefix already removed) to a handler of :mod:`.handlers`."""
    segs = call.segments
    if segs == ["debug_token"]:
        return _only(call, "GET", "debug_token", lambda: handlers.debug_token(sim, call))
    if segs[:1] == ["oauth"] and len(segs) == 2:
        if segs[1] == "access_token":
            return handlers.oauth_access_token(sim, call)
        if segs[1] == "revoke":
            methods = ("GET", "POST") if sim.revoke_via_post else ("GET",)
            if call.method not in methods:
                raise wire.unsupported(call.method, "revoke")
            return handlers.oauth_revoke(sim, call)
    if not segs:
        raise wire.unsupported(call.method, "")
    caller = authenticate(sim.world, call, sim.clock.now())
    node_id = handlers.resolve_me(segs[0], caller)
    if len(segs) == 1:
        return handlers.node(sim, call, caller, node_id)
    if len(segs) == 2:
        return handlers.edge(sim, call, caller, node_id, segs[1])
    raise wire.unknown_path("/" + "/".join(segs[2:]))


def _only(call: Call, method: str, name: str, handler: Callable[[], Payload]) -> Payload:
    if call.method != method:
        raise wire.unsupported(call.method, name)
    return handler()


def handle_graph(sim: SimState, request: WireRequest) -> WireResponse:
    now = sim.clock.now()
    trace = sim._trace_id()
    body_error: GraphFailure | None = None
    try:
        call = parse_call(request)
    except GraphFailure as exc:
        call, body_error = parse_call(replace(request, body=b"")), exc
    buc = _buc_object(sim, call)
    kind = _take_fault(sim, call)
    usage: dict[str, str] = {}
    if kind is not None:
        outcome = faults.fault(kind, buc_object=buc, regain_minutes=sim.fault_regain_minutes)
        response = outcome if isinstance(outcome, WireResponse) else _error(outcome, trace, call, {})
    else:
        try:
            if body_error is not None:
                raise body_error
            usage = _count_usage(sim, call, now, buc)
            payload = route(sim, call)
            response = WireResponse.of_json(200, payload, {**_headers(trace, call), **usage})
        except GraphFailure as exc:
            response = _error(exc, trace, call, usage)
    sim.requests.append(SimRequest(call.method, call.path, call.route, call.query, call.form, call.headers, now,
                                    response.status, call.token))
    return response


def _headers(trace: str, call: Call) -> dict[str, str]:
    version = call.version_prefix.strip("/") or DEFAULT_VERSION
    return {"x-fb-trace-id": trace, "x-fb-request-id": trace[::-1], "facebook-api-version": version}


def _error(exc: GraphFailure, trace: str, call: Call, usage: dict[str, str]) -> WireResponse:
    headers = {**_headers(trace, call), **(usage or {"x-app-usage": app_usage(0)}), **exc.headers}
    if exc.type == "OAuthException":
        reason = "invalid_token" if exc.code == 190 else "invalid_request"
        headers["www-authenticate"] = f'OAuth "Facebook Platform" "{reason}" "{exc.message}"'
    return WireResponse.of_json(exc.status, exc.payload(trace), headers)


def _take_fault(sim: SimState, call: Call) -> str | None:
    for pending in sim._faults:
        if pending.matches(call.path, call.route):
            pending.remaining -= 1
            if pending.remaining <= 0:
                sim._faults.remove(pending)
            sim.touch()
            return pending.kind
    if sim.fault_rate > 0 and sim._fault_rng.random() < sim.fault_rate:
        return check_kind(sim.fault_kind)
    return None


def _buc_object(sim: SimState, call: Call) -> str | None:
    """The WABA a WhatsApp-ish path concerns (BUC rate limits are keyed by it)."""
    if not call.segments:
        return None
    first = call.segments[0]
    phone = sim.world.phones.get(first)
    if phone is not None:
        return phone.waba_id
    return first if first in sim.world.wabas else None


def _app_of(sim: SimState, call: Call) -> str | None:
    value = call.token
    if value:
        app_id = value.partition("|")[0] if "|" in value else None
        record = sim.world.tokens.get(value)
        if record is not None:
            app_id = record.app_id
        if app_id in sim.world.apps:
            return app_id
    client_id = call.params.get("client_id")
    return client_id if client_id in sim.world.apps else None


def _count_usage(sim: SimState, call: Call, now: datetime, buc: str | None) -> dict[str, str]:
    """Usage headers for this call; raises code 4 when the app is over ``rate_limit`` (sim time window)."""
    app_id = _app_of(sim, call)
    if app_id is None or sim.rate_limit is None:
        headers = {"x-app-usage": app_usage(0)}
        if buc:
            headers["x-business-use-case-usage"] = buc_usage(buc, 0, 0)
        return headers
    calls, per_seconds = sim.rate_limit
    window = sim._usage.setdefault(app_id, deque())
    horizon = now - timedelta(seconds=per_seconds)
    while window and window[0] <= horizon:
        window.popleft()
    if len(window) >= calls:
        wait = (window[0] + timedelta(seconds=per_seconds) - now).total_seconds()
        headers = {"x-app-usage": app_usage(100)}
        if buc:
            headers["x-business-use-case-usage"] = buc_usage(buc, 100, int(wait // 60))
        sim.rate_limited += 1
        raise GraphFailure(4, "(#4) Application request limit reached", transient=True, headers=headers)
    window.append(now)
    pct = len(window) * 100 // calls
    headers = {"x-app-usage": app_usage(pct)}
    if buc:
        headers["x-business-use-case-usage"] = buc_usage(buc, pct, 0)
    return headers
