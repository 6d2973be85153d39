"""Bulk rotation: 1,000 tokens rotated against the Graph API simulator with 50 ms of latency per call and a
rate limit, reported as a ratio to the floor no client can beat.

    floor = max(calls x latency / concurrency,  calls / (rate-limit calls per second))

``calls`` is what the rotations needed, read from the simulator's request log (mint, debug_token, revoke,
and an install if one was needed; calls the simulator refused for the rate limit are not needed, so they
are left out). Goal: wall time <= 1.3 x the floor (latency-bound: 1.15 x), and <= 5 ms of tokenvault's own
CPU per rotation (over the transport, the in-process simulator's CPU is measured and taken out), every outcome
``done`` (a rate limit never surfaces as a failure), one new version per token, every old token revoked at the
simulator.

Scenarios, each in a fresh worker process (so its peak RSS is its own):

* ``latency-bound``: 8 rotations at a time under a limit of 300 calls/s (the latency floor binds);
* ``rate-bound``: 16 at a time under 150 calls/s (the rate-limit floor binds);
* ``transport``: the simulator in-process behind ``httpx`` (its latency is a real sleep), tokenvault told the
  app's limit (``TOKENVAULT_GRAPH_RATE_LIMIT``), so it paces itself;
* ``unpaced``: the same without the limit configured: tokenvault only reacts (``X-App-Usage`` at 100%, code 4
  answers retried) - for reference, no goal;
* ``http``: the simulator as ``tokenvault simulator serve --realtime`` in its own process, over HTTP;
* ``postgres``: the transport's latency-bound scenario on the PostgreSQL store (an embedded server, started as
  ``benchmarks/bench_postgres.py`` and the tests start it, over its unix socket; its own processes' CPU is not
  tokenvault's and is not counted).

The simulator's clock follows real time (``SimClock(realtime=True)``), so its rate-limit window reopens by
itself. Tokens are seeded through the service API (``generate_token`` through the simulator, latency 0) before
the timing starts. The store is a SQLite file in a temporary directory (``TMPDIR``) unless the scenario says
``postgres``, the key provider ``file``.
``--quick``: 50 tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# TOKENVAULT_BENCH_TREE=/path/to/another/checkout measures that tree's vault/ (before/after comparisons); it
# needs the simulator's real-time clock, the rest (pacing, group commit) is reported when present.
TREE = Path(os.environ.get("TOKENVAULT_BENCH_TREE") or ROOT)
SECTION = "bulk_rotation"
LATENCY = 0.05
SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
GOAL = 1.3
LATENCY_GOAL = 1.15  # latency-bound: the margin is tokenvault's own CPU per rotation (issue 16)


def scenarios(quick: bool) -> list[dict[str, Any]]:
    """Latency-bound: 8 at a time under a generous limit; rate-bound: 16 at a time under a limit that binds."""
    if quick:
        base = {"tokens": 50, "concurrency": 8, "latency": LATENCY, "rate_limit": [40, 1.0]}
        return [{**base, "name": "transport, rate-bound", "via": "transport", "paced": True}]
    latency_bound = {"tokens": 1000, "concurrency": 8, "latency": LATENCY, "rate_limit": [300, 1.0],
                     "goal": LATENCY_GOAL}
    rate_bound = {"tokens": 1000, "concurrency": 16, "latency": LATENCY, "rate_limit": [150, 1.0]}
    return [
        {**latency_bound, "name": "transport, latency-bound", "via": "transport", "paced": True},
        {**rate_bound, "name": "transport, rate-bound", "via": "transport", "paced": True},
        {**rate_bound, "name": "transport, rate-bound, unpaced", "via": "transport", "paced": False},
        {**latency_bound, "name": "http, latency-bound", "via": "http", "paced": True},
        {**rate_bound, "name": "http, rate-bound", "via": "http", "paced": True},
        {**latency_bound, "name": "transport, latency-bound, postgres", "via": "transport", "paced": True,
         "store": "postgres"},
    ]


def run(quick: bool) -> list[Any]:
    from harness import Figure

    figures: list[Figure] = []
    for scenario in scenarios(quick):
        result = _in_worker(scenario)
        figures.extend(_figures(Figure, scenario, result))
    return figures


def _in_worker(scenario: dict[str, Any]) -> dict[str, Any]:
    from harness import in_worker

    return in_worker(Path(__file__).resolve(), scenario, cwd=TREE, timeout=1800, what="bulk rotation")


def _figures(figure: Any, scenario: dict[str, Any], r: dict[str, Any]) -> list[Any]:
    name, n = scenario["name"], scenario["tokens"]
    paced = scenario["paced"]
    calls_s, per = scenario["rate_limit"]
    label = f"{n:,} tokens, {scenario['concurrency']} at a time, {name}"
    ratio = r["wall_s"] / r["floor_s"]
    failures = n - r["outcomes"].get("done", 0)
    detail = {k: r.get(k) for k in ("calls", "calls_per_rotation", "latency_floor_s", "rate_floor_s", "binding",
                                    "refused_by_rate_limit", "rate_limited_answers", "retries", "paced_wait_s",
                                    "commits", "writes_per_commit", "outcomes", "seed_s", "cpu_s", "sim_cpu_s",
                                    "checks")}
    detail.update(latency_s=scenario["latency"], rate_limit=f"{calls_s} calls / {per:g} s", paced=paced)
    target = scenario.get("goal", GOAL)
    goal = f"<= {target}x" if paced else ""
    return [
        figure(SECTION, f"wall, {label}", round(r["wall_s"], 2), "s", round(ratio, 3), "floor", goal,
               (ratio <= target) if paced else None, detail=detail),
        figure(SECTION, f"failures (rate-limit hits {r['refused_by_rate_limit']}, retries {r['retries']}), {name}",
               failures, "rotations", goal="0", ok=failures == 0 and r["checks"]["ok"],
               detail={"checks": r["checks"], "outcomes": r["outcomes"]}),
        # tokenvault's own CPU (issue 16: <= 5 ms per rotation). Over HTTP the simulator runs in its own process:
        # this process's CPU time is tokenvault's. Over the transport the simulator runs in tokenvault's threads:
        # the CPU time of its requests (time.thread_time around each) is taken out and shown apart.
        figure(SECTION, f"CPU per rotation, {name}", round(r["cpu_s"] * 1000 / n, 2), "ms",
               goal="<= 5 ms" if paced else "", ok=(r["cpu_s"] * 1000 / n <= 5) if paced else None,
               detail={"cpu_s": r["cpu_s"], "rotations": n, "simulator_cpu_s": r.get("sim_cpu_s", 0.0),
                       "includes": "tokenvault only (process CPU time, user + system"
                                   + (")" if scenario["via"] == "http" else ", less the simulator's requests)")}),
        figure(SECTION, f"peak RSS, {name}", round(r["peak_rss_mb"], 1), "MB",
               detail={"rss_before_rotation_mb": round(r["rss_before_mb"], 1),
                       "growth_mb": round(r["peak_rss_mb"] - r["rss_before_mb"], 1)}),
    ]


# ---------------------------------------------------------------------------------------------------- worker
def worker(scenario: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(TREE))
    with tempfile.TemporaryDirectory(prefix="tv-bench-bulk-") as tmp:
        if scenario.get("store") == "postgres":
            return _postgres_worker(scenario, Path(tmp))
        if scenario["via"] == "http":
            return _http_worker(scenario, Path(tmp))
        return _transport_worker(scenario, Path(tmp))


def _postgres_worker(scenario: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """The transport scenario on a PostgreSQL store: the tests' embedded server (``tests/plugins/postgres.py``),
    a fresh database, stopped afterwards."""
    from harness import embedded_postgres

    with embedded_postgres(tmp, "bulk", tree=TREE) as (_, url):
        return _transport_worker(scenario, tmp, db_url=url)


def _settings(home: Path, scenario: dict[str, Any], graph_url: str | None = None, db_url: str | None = None) -> Any:
    from meta_tokenvault.config import Settings

    calls, per = scenario["rate_limit"]
    extra: dict[str, Any] = {"graph_url": graph_url} if graph_url else {}
    if db_url:
        extra["db_url"] = db_url
    if scenario["paced"] and "graph_rate_limit" in Settings.__dataclass_fields__:  # (an older tree cannot pace)
        extra["graph_rate_limit"] = f"{calls}/{per}"
    return Settings(home=home, key_provider="file", **extra)


def _transport_worker(scenario: dict[str, Any], tmp: Path, db_url: str | None = None) -> dict[str, Any]:
    import httpx

    from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
    from meta_tokenvault.types import Secret
    from meta_tokenvault.wiring import build_manager

    sim, demo = GraphSimulator.demo_world(clock=SimClock(realtime=True))
    transport = _TimedTransport(sim.transport())
    client = httpx.Client(transport=transport)
    m = build_manager(_settings(tmp / "home", scenario, db_url=db_url), create=True, graph_client=client,
                      clock=sim.clock, environ={})
    try:
        m.initialize("file")
        m.add_business("acme", demo.business_id, demo.app_id, Secret(demo.app_secret), Secret(demo.admin_token))
        m.sync_system_users("acme")
        seed_s = _seed(m, scenario["tokens"])
        sim.latency, sim.rate_limit = scenario["latency"], tuple(scenario["rate_limit"])
        start, refused0 = len(sim.requests), sim.rate_limited
        timed = _rotate(m, scenario, lambda: transport.cpu)
        requests = sim.requests[start:]
        refused = sim.rate_limited - refused0
        accepted = len(requests) - refused
        sim.latency, sim.rate_limit = 0.0, None
        checks = _check(m, timed["before"], lambda value: sim.token_state(value))
        return _result(scenario, timed, accepted, refused, seed_s, checks)
    finally:
        m.close()


def _http_worker(scenario: dict[str, Any], tmp: Path) -> dict[str, Any]:
    import httpx
    from harness import tool

    from meta_tokenvault.types import Secret
    from meta_tokenvault.wiring import build_manager

    server = subprocess.Popen([tool("tokenvault"), "simulator", "serve", "--port", "0", "--seed-demo", "--realtime",
                               "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        info = json.loads(server.stdout.readline())
        url, demo = info["url"], info["demo"]
        control = httpx.Client(base_url=url, timeout=60)

        def knobs(**values: Any) -> None:
            control.post("/_sim/knobs", json=values).raise_for_status()

        def sim_state() -> dict[str, Any]:
            state: dict[str, Any] = control.get("/_sim/state").json()
            return state

        m = build_manager(_settings(tmp / "home", scenario, graph_url=url), create=True, environ={})
        try:
            m.initialize("file")
            m.add_business("acme", demo["business_id"], demo["app_id"], Secret(demo["app_secret"]),
                           Secret(demo["admin_token"]))
            m.sync_system_users("acme")
            seed_s = _seed(m, scenario["tokens"])
            knobs(latency=scenario["latency"], rate_limit=scenario["rate_limit"])
            before = sim_state()
            timed = _rotate(m, scenario)
            knobs(latency=0, rate_limit=None)
            after = sim_state()
            refused = after["rate_limited"] - before["rate_limited"]
            accepted = after["request_count"] - before["request_count"] - refused
            states = {t["value"]: t["state"] for t in after["tokens"]}
            checks = _check(m, timed["before"], lambda value: states.get(value, "unknown"))
            return _result(scenario, timed, accepted, refused, seed_s, checks)
        finally:
            m.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


class _TimedTransport:
    """The simulator's transport, counting the CPU time its requests take (``time.thread_time`` in the calling
    thread, which runs the simulator): over the transport, the simulator shares tokenvault's process."""

    def __init__(self, inner: Any) -> None:
        import threading

        self.inner, self.cpu, self._lock = inner, 0.0, threading.Lock()

    def handle_request(self, request: Any) -> Any:
        started = time.thread_time()
        try:
            return self.inner.handle_request(request)
        finally:
            spent = time.thread_time() - started
            with self._lock:
                self.cpu += spent

    def close(self) -> None:
        self.inner.close()


def _seed(m: Any, n: int) -> float:
    """``n`` tokens through the service API (mint + debug_token each), 8 at a time; returns the seconds."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: m.generate_token(f"bulk-{i:05d}", business="acme", scopes=SCOPES), range(n)))
    return time.perf_counter() - started


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _rotate(m: Any, scenario: dict[str, Any], sim_cpu: Any = lambda: 0.0) -> dict[str, Any]:
    """The timed part: every active token rotated, ``concurrency`` at a time. ``sim_cpu()``: the CPU seconds
    the in-process simulator has used so far (0 when it runs in its own process)."""
    import gc

    from meta_tokenvault.usecases.rotate import Rotator

    labels = m.labels_for()
    assert len(labels) == scenario["tokens"], (len(labels), scenario["tokens"])
    before = {label: m.reveal(label, purpose="benchmark").reveal() for label in labels}
    graph = m.graph
    pacer = getattr(graph, "pacer", None)
    retries0, limited0 = graph.retries, getattr(graph, "rate_limited", 0)
    paced0 = pacer.waited if pacer else 0.0
    rotator = Rotator(m.ctx)  # what TokenManager.rotate_many runs; kept to read its commit counts
    group = getattr(rotator, "group", None)
    gc.collect()
    rss_before = _rss_mb()
    cpu0, t0, sim0 = time.process_time(), time.perf_counter(), sim_cpu()
    outcomes = rotator.rotate_many(labels, concurrency=scenario["concurrency"])
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    sim = sim_cpu() - sim0
    states: dict[str, int] = {}
    for outcome in outcomes:
        states[outcome.state] = states.get(outcome.state, 0) + 1
    return {"wall_s": wall, "cpu_s": cpu - sim, "sim_cpu_s": sim, "outcomes": states, "before": before,
            "rss_before_mb": rss_before,
            "retries": graph.retries - retries0, "rate_limited_answers": getattr(graph, "rate_limited", 0) - limited0,
            "paced_wait_s": round((pacer.waited if pacer else 0.0) - paced0, 1),
            "commits": group.commits if group else None, "writes": group.writes if group else None,
            "failures": [o.message for o in outcomes if o.state != "done"][:5]}


def _check(m: Any, before: dict[str, str], state_of: Any) -> dict[str, Any]:
    """Every token: version 2 the one active version, holding a value Meta accepts; the old value revoked."""
    from meta_tokenvault.types import TokenStatus

    bad: list[str] = []
    for label, old in before.items():
        record = m.show_token(label)
        statuses = [v.status for v in record.history]
        new = m.reveal(label, purpose="benchmark").reveal()
        if record.version != 2 or statuses.count(TokenStatus.ACTIVE) != 1 or state_of(new) != "valid" \
                or state_of(old) != "revoked":
            bad.append(label)
    return {"ok": not bad, "tokens_checked": len(before), "bad": bad[:5]}


def _result(scenario: dict[str, Any], timed: dict[str, Any], accepted: int, refused: int, seed_s: float,
            checks: dict[str, Any]) -> dict[str, Any]:
    import resource

    n, concurrency, latency = scenario["tokens"], scenario["concurrency"], scenario["latency"]
    calls_s, per = scenario["rate_limit"]
    latency_floor = accepted * latency / concurrency
    rate_floor = accepted / (calls_s / per)
    floor = max(latency_floor, rate_floor)
    return {
        "wall_s": round(timed["wall_s"], 3), "cpu_s": round(timed["cpu_s"], 2),
        "sim_cpu_s": round(timed["sim_cpu_s"], 2), "floor_s": round(floor, 3),
        "latency_floor_s": round(latency_floor, 3), "rate_floor_s": round(rate_floor, 3),
        "binding": "rate limit" if rate_floor >= latency_floor else "latency",
        "calls": accepted, "calls_per_rotation": round(accepted / n, 3),
        "refused_by_rate_limit": refused, "rate_limited_answers": timed["rate_limited_answers"],
        "retries": timed["retries"], "paced_wait_s": timed["paced_wait_s"], "outcomes": timed["outcomes"],
        "failures": timed["failures"], "commits": timed["commits"],
        "writes_per_commit": round(timed["writes"] / max(1, timed["commits"]), 2) if timed["commits"] else None,
        "seed_s": round(seed_s, 1), "checks": checks, "rss_before_mb": timed["rss_before_mb"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":  # alone: .venv/bin/python benchmarks/bench_bulk_rotation.py [--quick] [--only NAME]
    sys.path.insert(0, str(HERE))
    from harness import scenario_main

    scenario_main(sys.argv, scenarios=scenarios, worker=worker, run_in_worker=_in_worker, figures=_figures)
