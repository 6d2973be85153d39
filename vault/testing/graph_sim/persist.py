"""The simulator's state as JSON (``simulator serve --state FILE``): world, tokens, clock, knobs, RNG state."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

from .clock import SimClock
from .faults import PendingFault
from .knobs import knobs_json, set_knob
from .state import SimState
from .world import DemoWorld, MintedToken, SimApp, SimBusiness, SimPhoneNumber, SimSystemUser, SimWaba

S = TypeVar("S", bound=SimState)

FORMAT = "tokenvault-graph-sim/1"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _rng_state(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def dump(sim: SimState) -> dict[str, Any]:
    """A JSON-ready snapshot (call under the simulator's lock)."""
    w = sim.world
    knobs = knobs_json(sim)
    return {
        "format": FORMAT,
        "now": _iso(sim.clock.now()),
        "seed": sim.seed,
        "knobs": knobs,
        "businesses": [asdict(b) for b in w.businesses.values()],
        "apps": [asdict(a) for a in w.apps.values()],
        "system_users": [{**asdict(su), "created_time": _iso(su.created_time),
                          "installed_apps": sorted(su.installed_apps), "waba_ids": sorted(su.waba_ids)}
                         for su in w.system_users.values()],
        "wabas": [asdict(x) for x in w.wabas.values()],
        "phones": [asdict(p) for p in w.phones.values()],
        "tokens": [{**asdict(t), "issued_at": _iso(t.issued_at), "revoked_at": _iso(t.revoked_at),
                    "scopes": list(t.scopes), "waba_ids": list(t.waba_ids)} for t in w.tokens.values()],
        "faults": [asdict(f) for f in sim.pending_faults],
        "demo": sim.demo.as_dict() if sim.demo else None,
        "rng": {"ids": _rng_state(sim._rng.getstate()), "faults": _rng_state(sim._fault_rng.getstate()),
                "trace": _rng_state(sim._trace_rng.getstate())},
    }


def restore(cls: type[S], data: dict[str, Any]) -> S:
    """Rebuild a simulator from :func:`dump` output. Raises ValueError for another format."""
    if data.get("format") != FORMAT:
        raise ValueError(f"not a simulator state file (format {data.get('format')!r}, expected {FORMAT!r})")
    now = _when(data["now"])
    sim = cls(clock=SimClock(now), seed=int(data.get("seed", 0)))
    w = sim.world
    for b in data["businesses"]:
        w.businesses[b["id"]] = SimBusiness(**b)
    for a in data["apps"]:
        w.apps[a["id"]] = SimApp(**a)
    for su in data["system_users"]:
        created = _when(su["created_time"])
        assert created is not None
        w.system_users[su["id"]] = SimSystemUser(su["id"], su["business_id"], su["name"], su["role"], created,
                                                 set(su["installed_apps"]), set(su["waba_ids"]))
    for x in data["wabas"]:
        w.wabas[x["id"]] = SimWaba(**x)
    for p in data["phones"]:
        w.phones[p["id"]] = SimPhoneNumber(**p)
    for t in data["tokens"]:
        issued = _when(t["issued_at"])
        assert issued is not None
        w.tokens[t["value"]] = MintedToken(**{**t, "issued_at": issued, "revoked_at": _when(t["revoked_at"]),
                                              "scopes": tuple(t["scopes"]), "waba_ids": tuple(t["waba_ids"])})
    for name, value in data.get("knobs", {}).items():
        set_knob(sim, name, value)
    sim._faults = [PendingFault(**f) for f in data.get("faults", [])]
    if data.get("demo"):
        sim.demo = DemoWorld(**data["demo"])
    rng = data.get("rng", {})
    for key, generator in (("ids", sim._rng), ("faults", sim._fault_rng), ("trace", sim._trace_rng)):
        if key in rng:
            version, internal, gauss = rng[key]
            generator.setstate((version, tuple(internal), gauss))
    sim.generation = 0
    return sim
