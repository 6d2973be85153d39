"""Control endpoints under ``/_sim/`` so a test (or a subprocess's parent) can steer the simulator.

Not part of Meta's API: no token, no faults, no latency, not recorded in ``requests``. JSON in, JSON out.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .invalidation import DEFAULT_SUBCODE
from .knobs import knobs_json, set_knob
from .state import SimState
from .wire import WireRequest, WireResponse
from .world import SEVEN_DAYS, MintedToken, meta_time

Body = dict[str, Any]


def handle_control(sim: SimState, req: WireRequest) -> WireResponse:
    name = req.path[len("/_sim/"):].strip("/") if req.path.startswith("/_sim/") else ""
    handler = ROUTES.get((req.method.upper(), name))
    if handler is None:
        endpoints = [f"{m} /_sim/{n}" for m, n in ROUTES]
        return WireResponse.of_json(404, {"error": {"message": f"no control endpoint {req.method} {req.path}",
                                                    "endpoints": endpoints}})
    try:
        body = json.loads(req.body) if req.body.strip() else {}
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return WireResponse.of_json(200, handler(sim, body, req))
    except (ValueError, KeyError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return WireResponse.of_json(400, {"error": {"message": str(message)}})


def _token_json(sim: SimState, t: MintedToken) -> Body:
    return {"value": t.value, "state": t.state(sim.clock.now()), "system_user_id": t.system_user_id,
            "app_id": t.app_id, "business_id": t.business_id, "scopes": list(t.scopes), "expiring": t.expiring,
            "issued_at": t.issued_at.isoformat(), "expires_at": t.expires_at.isoformat() if t.expires_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None, "waba_ids": list(t.waba_ids),
            "via": t.via, "invalidated_subcode": t.invalidated_subcode}


def state(sim: SimState, body: Body, req: WireRequest) -> Body:
    """A summary: clock, knobs, the world, every token with its state (values included: it is a simulator)."""
    with sim._lock:
        now = sim.clock.now()
        w = sim.world
        return {
            "now": now.isoformat(),
            "knobs": knobs_json(sim),
            "businesses": [{"id": b.id, "name": b.name, "requires_expiring_tokens": b.requires_expiring_tokens}
                           for b in w.businesses.values()],
            "apps": [{"id": a.id, "name": a.name, "business_id": a.business_id, "secret": a.secret,
                      "require_appsecret_proof": a.require_appsecret_proof} for a in w.apps.values()],
            "system_users": [{"id": su.id, "name": su.name, "role": su.role, "business_id": su.business_id,
                              "created_time": meta_time(su.created_time),
                              "age_seconds": int(su.age(now).total_seconds()),
                              "seven_days_at": (su.created_time + SEVEN_DAYS).isoformat(),
                              "installed_apps": sorted(su.installed_apps), "waba_ids": sorted(su.waba_ids),
                              "waba_tasks": {k: list(v) for k, v in sorted(su.waba_tasks.items())}}
                             for su in w.system_users.values()],
            "wabas": [{"id": x.id, "business_id": x.business_id, "name": x.name,
                       "phone_number_ids": list(x.phone_number_ids)} for x in w.wabas.values()],
            "minted": [_token_json(sim, t) for t in w.tokens.values() if t.via != "business_settings"],
            "tokens": [_token_json(sim, t) for t in w.tokens.values()],
            "pending_faults": [{"kind": f.kind, "remaining": f.remaining, "path_contains": f.path_contains}
                               for f in sim._faults],
            "request_count": len(sim.requests),
            "rate_limited": sim.rate_limited,
            "demo": sim.demo.as_dict() if sim.demo else None,
        }


def requests(sim: SimState, body: Body, req: WireRequest) -> Body:
    """Recorded Graph requests; ``?since=N`` skips the first N."""
    since = int(req.query.get("since", "0") or 0)
    with sim._lock:
        items = sim.requests[since:]
        return {"count": len(sim.requests), "requests": [
            {"method": r.method, "path": r.path, "route": r.route, "query": r.query, "form": r.form,
             "headers": r.headers, "at": r.at.isoformat(), "status": r.status} for r in items]}


def advance(sim: SimState, body: Body, req: WireRequest) -> Body:
    """``{"seconds": N}`` (also days/hours/minutes) moves the clock; ``{"to": ISO}`` sets it."""
    with sim._lock:
        if "to" in body:
            sim.clock.set(datetime.fromisoformat(str(body["to"])))
        else:
            units = {k: float(body[k]) for k in ("days", "hours", "minutes", "seconds") if k in body}
            if not units:
                raise ValueError('give {"seconds": N} (or days/hours/minutes), or {"to": ISO-8601}')
            sim.clock.advance(**units)
        sim.touch()
        return {"now": sim.clock.now().isoformat()}


def fail(sim: SimState, body: Body, req: WireRequest) -> Body:
    n = int(body.get("n", 1))
    sim.fail_next(n, kind=str(body.get("kind", "http500")), path_contains=str(body.get("path_contains", "")))
    return {"queued": n, "pending": len(sim.pending_faults)}


def latency(sim: SimState, body: Body, req: WireRequest) -> Body:
    set_knob(sim, "latency", body["seconds"])
    return {"latency": sim.latency}


def revoke(sim: SimState, body: Body, req: WireRequest) -> Body:
    token = str(body["token"])
    sim.revoke(token)
    return {"revoked": True, "state": sim.token_state(token)}


def invalidate(sim: SimState, body: Body, req: WireRequest) -> Body:
    """``{"token": VALUE, "subcode": 460}``: Meta invalidates the token out of band (subcode optional)."""
    token = str(body["token"])
    sim.invalidate(token, int(body.get("subcode", DEFAULT_SUBCODE)))
    return {"invalidated": True, "state": sim.token_state(token)}


def knobs(sim: SimState, body: Body, req: WireRequest) -> Body:
    """``{"knob": value, ...}``: each is type-checked; returns every knob's value."""
    with sim._lock:
        for name, value in body.items():
            set_knob(sim, name, value)
        sim.touch()
        return knobs_json(sim)


def world(sim: SimState, body: Body, req: WireRequest) -> Body:
    """``{"op": OP, ...keyword arguments}``: build the world from outside the process.

    OPs: add_business, add_app, add_system_user (``created_time`` ISO or ``age_seconds``), install_app,
    add_waba, add_phone_number, assign_waba, issue_token. Returns ``{"result": ...}``.
    """
    args = dict(body)
    op = str(args.pop("op", ""))
    if op not in WORLD_OPS:
        raise ValueError(f"op must be one of {sorted(WORLD_OPS)}")
    if op == "add_system_user":
        if "created_time" in args:
            args["created_time"] = datetime.fromisoformat(str(args["created_time"]))
        elif "age_seconds" in args:
            args["created_time"] = sim.clock.now() - timedelta(seconds=float(args.pop("age_seconds")))
    method: Callable[..., Any] = getattr(sim, op)
    return {"result": method(**args)}


WORLD_OPS = frozenset({"add_business", "add_app", "add_system_user", "install_app", "add_waba", "add_phone_number",
                       "assign_waba", "issue_token"})

ROUTES: dict[tuple[str, str], Callable[[SimState, Body, WireRequest], Body]] = {
    ("GET", "state"): state,
    ("GET", "requests"): requests,
    ("POST", "advance"): advance,
    ("POST", "fail"): fail,
    ("POST", "latency"): latency,
    ("POST", "revoke"): revoke,
    ("POST", "invalidate"): invalidate,
    ("POST", "knobs"): knobs,
    ("POST", "world"): world,
}
