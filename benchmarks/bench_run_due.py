"""run-due at scale: 10,000 tokens, of which 1,000 expire within the refresh margin and 100 were invalidated at
Meta, against the Graph API simulator with 50 ms of latency per call and a rate limit; reported as a ratio to
the floor no client can beat. Two limits: 200 calls/s (rate-bound: 16 calls in flight could make 320/s), and
300 calls/s ("balanced": both floors within 7% of each other, so any time of tokenvault's own shows).

    floor = max(calls x latency / concurrency,  calls / (rate-limit calls per second))

The pass is the heaviest one a day brings: no token was checked within ``verify_interval`` (the last check was
two days ago; it recorded each expiry), so the 1,000 expiring tokens are refreshed (exchange + debug_token each)
while the 9,000 others are checked (debug_token), and the 100 found dead are reissued (mint + debug_token
each). ``calls`` is what the pass needed, read from the simulator's request
log (calls refused for the rate limit are left out). Goal: wall time <= 1.3 x the floor, no token failed (a
rate limit never surfaces as a failure), every expiring token refreshed (one exchange each, a new version Meta
accepts), every dead token reissued, the others untouched.

The simulator runs in-process behind ``httpx`` (its latency a real sleep, its clock real time so its rate
window reopens by itself), tokenvault told the app's limit (``TOKENVAULT_GRAPH_RATE_LIMIT``), so it paces
itself. Tokens are issued at the simulator and imported without a check (nothing verified yet) before the
timing starts; each scenario runs in a fresh worker process (its peak RSS is its own). ``--quick``: 200 tokens.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTION = "run_due"
SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
GOAL = 1.3


def scenarios(quick: bool) -> list[dict[str, Any]]:
    if quick:
        return [{"name": "quick", "tokens": 200, "expiring": 20, "dead": 5, "concurrency": 8, "latency": 0.01,
                 "rate_limit": [200, 1.0]}]
    base = {"tokens": 10_000, "expiring": 1_000, "dead": 100, "concurrency": 16, "latency": 0.05}
    return [{**base, "name": "rate-bound", "rate_limit": [200, 1.0]},  # 16 in flight could do 320 calls/s
            {**base, "name": "balanced", "rate_limit": [300, 1.0]}]  # both floors within 7%: the hardest case


def run(quick: bool) -> list[Any]:
    from harness import Figure

    figures: list[Figure] = []
    for scenario in scenarios(quick):
        figures.extend(_figures(Figure, scenario, _in_worker(scenario)))
    return figures


def _in_worker(scenario: dict[str, Any]) -> dict[str, Any]:
    from harness import in_worker

    return in_worker(Path(__file__).resolve(), scenario, cwd=ROOT, timeout=3600, what="run-due")


def _figures(figure: Any, scenario: dict[str, Any], r: dict[str, Any]) -> list[Any]:
    n, name = scenario["tokens"], scenario["name"]
    calls_s, per = scenario["rate_limit"]
    label = (f"{n:,} tokens ({scenario['expiring']:,} to refresh, {scenario['dead']:,} dead), "
             f"{scenario['concurrency']} at a time, {name}")
    ratio = r["wall_s"] / r["floor_s"]
    detail = {k: r[k] for k in ("calls", "calls_by_route", "latency_floor_s", "rate_floor_s", "binding",
                                "refused_by_rate_limit", "rate_limited_answers", "retries", "paced_wait_s",
                                "report", "seed_s", "cpu_s", "checks")}
    detail.update(latency_s=scenario["latency"], rate_limit=f"{calls_s} calls / {per:g} s")
    return [
        figure(SECTION, f"wall, {label}", round(r["wall_s"], 2), "s", round(ratio, 3), "floor", f"<= {GOAL}x",
               ratio <= GOAL, detail=detail),
        figure(SECTION, f"failures (rate-limit hits {r['refused_by_rate_limit']}, retries {r['retries']}), {name}",
               r["failures"], "tokens", goal="0", ok=r["failures"] == 0 and r["checks"]["ok"],
               detail={"checks": r["checks"], "report": r["report"]}),
        figure(SECTION, f"peak RSS, {name}", round(r["peak_rss_mb"], 1), "MB",
               detail={"rss_before_pass_mb": round(r["rss_before_mb"], 1),
                       "growth_mb": round(r["peak_rss_mb"] - r["rss_before_mb"], 1)}),
    ]


# ---------------------------------------------------------------------------------------------------- worker
def worker(scenario: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="tv-bench-run-due-") as tmp:
        return _transport_worker(scenario, Path(tmp))


def _transport_worker(scenario: dict[str, Any], tmp: Path) -> dict[str, Any]:
    import httpx

    from meta_tokenvault.config import Settings
    from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
    from meta_tokenvault.types import Secret
    from meta_tokenvault.wiring import build_manager

    now = datetime.now(UTC)
    sim, demo = GraphSimulator.demo_world(clock=SimClock(now - timedelta(days=55), realtime=True))
    calls, per = scenario["rate_limit"]
    settings = Settings(home=tmp / "home", key_provider="file", graph_rate_limit=f"{calls}/{per}")
    m = build_manager(settings, create=True, graph_client=httpx.Client(transport=sim.transport()), clock=sim.clock,
                      environ={})
    try:
        m.initialize("file")
        m.add_business("acme", demo.business_id, demo.app_id, Secret(demo.app_secret), Secret(demo.admin_token))
        m.sync_system_users("acme")
        seed_s, expiring, dead, others = _seed(m, sim, demo, scenario, now)
        sim.latency, sim.rate_limit = scenario["latency"], (calls, per)
        start, refused0 = len(sim.requests), sim.rate_limited
        timed = _pass(m, scenario)
        requests = sim.requests[start:]
        refused = sim.rate_limited - refused0
        by_route: dict[str, int] = {}
        for r in requests:  # the answered ones (a refusal for the rate limit is counted apart)
            if r.status == 200:
                key = "/{id}/access_tokens" if r.route.endswith("/access_tokens") else r.route
                by_route[key] = by_route.get(key, 0) + 1
        accepted = len(requests) - refused
        sim.latency, sim.rate_limit = 0.0, None
        checks = _check(m, sim, expiring, dead, others, requests)
        return _result(scenario, timed, accepted, refused, by_route, seed_s, checks)
    finally:
        m.close()


def _seed(m: Any, sim: Any, demo: Any, scenario: dict[str, Any],
          now: datetime) -> tuple[float, dict[str, str], dict[str, str], dict[str, str]]:
    """Issue the tokens at the simulator (the expiring ones 55 days ago, the rest now), invalidate the dead ones
    there, and import every one without a check (one transaction per 500), recorded as last checked two days
    ago (their expiry known then): every token is due for a check."""
    from meta_tokenvault.types import Secret

    started = time.perf_counter()
    n, n_exp, n_dead = scenario["tokens"], scenario["expiring"], scenario["dead"]
    values: dict[str, str] = {}
    for i in range(n_exp):
        values[f"exp-{i:05d}"] = sim.issue_token(demo.app_id, demo.old_admin_id, SCOPES, expiring=True)
    sim.clock.set(now)
    for i in range(n - n_exp):
        values[f"tok-{i:05d}"] = sim.issue_token(demo.app_id, demo.old_admin_id, SCOPES)
    expiring = {k: v for k, v in values.items() if k.startswith("exp-")}
    permanent = [k for k in values if k.startswith("tok-")]
    dead = {k: values[k] for k in permanent[:: max(1, len(permanent) // n_dead)][:n_dead]}
    for value in dead.values():
        sim.invalidate(value, 460)
    others = {k: v for k, v in values.items() if k not in expiring and k not in dead}
    labels = list(values)
    yesterday, expires = now - timedelta(days=2), now + timedelta(days=5)
    for at in range(0, len(labels), 500):
        with m.store.transaction():
            for label in labels[at:at + 500]:
                record = m.import_token(label, business="acme", secret=Secret(values[label]),
                                        system_user_id=demo.old_admin_id, scopes=SCOPES, verify=False)
                # as the check of two days ago recorded it: the expiry known, the check due again
                m.store.update_version(record.id, 1, verified_at=yesterday,
                                       expires_at=expires if label in expiring else None)
    return time.perf_counter() - started, expiring, dead, others


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _pass(m: Any, scenario: dict[str, Any]) -> dict[str, Any]:
    """The timed part: one `run-due` pass (what the CLI runs), ``concurrency`` Graph calls at a time."""
    import gc

    graph = m.graph
    pacer = getattr(graph, "pacer", None)
    retries0, limited0 = graph.retries, graph.rate_limited
    paced0 = pacer.waited if pacer else 0.0
    gc.collect()
    rss_before = _rss_mb()
    cpu0, t0 = time.process_time(), time.perf_counter()
    report = m.run_due(concurrency=scenario["concurrency"])
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {"wall_s": wall, "cpu_s": cpu, "report": report.counts(), "failed": report.failed[:5],
            "rss_before_mb": rss_before, "retries": graph.retries - retries0,
            "rate_limited_answers": graph.rate_limited - limited0,
            "paced_wait_s": round((pacer.waited if pacer else 0.0) - paced0, 1)}


def _check(m: Any, sim: Any, expiring: dict[str, str], dead: dict[str, str], others: dict[str, str],
           requests: list[Any]) -> dict[str, Any]:
    """Expiring: version 2 refreshed, valid, one exchange each, the old still valid; dead: version 2 reissued,
    valid; the rest: version 1, untouched and checked."""
    from meta_tokenvault.types import TokenSource, TokenStatus

    records = {r.label: r for r in m.list_tokens()}
    bad: list[str] = []
    for label in expiring:
        r = records[label]
        if r.version != 2 or r.source is not TokenSource.REFRESHED or r.status is not TokenStatus.ACTIVE \
                or sim.token_state(m.reveal(label, purpose="benchmark").reveal()) != "valid" \
                or sim.token_state(expiring[label]) != "valid":
            bad.append(label)
    for label in dead:
        r = records[label]
        if r.version != 2 or r.status is not TokenStatus.ACTIVE \
                or sim.token_state(m.reveal(label, purpose="benchmark").reveal()) != "valid":
            bad.append(label)
    for label in others:
        r = records[label]
        if r.version != 1 or r.status is not TokenStatus.ACTIVE or r.verified_at is None:
            bad.append(label)
    exchanges = sum(r.route == "/oauth/access_token" and r.status == 200 for r in requests)
    mints = sum(r.route.endswith("/access_tokens") and r.status == 200 for r in requests)
    ok = not bad and exchanges == len(expiring) and mints == len(dead)
    return {"ok": ok, "bad": bad[:5], "exchanges": exchanges, "mints": mints,
            "tokens_checked": len(expiring) + len(dead) + len(others)}


def _result(scenario: dict[str, Any], timed: dict[str, Any], accepted: int, refused: int, by_route: dict[str, int],
            seed_s: float, checks: dict[str, Any]) -> dict[str, Any]:
    import resource

    concurrency, latency = scenario["concurrency"], scenario["latency"]
    calls_s, per = scenario["rate_limit"]
    latency_floor = accepted * latency / concurrency
    rate_floor = accepted / (calls_s / per)
    floor = max(latency_floor, rate_floor)
    report = timed["report"]
    failures = report["failed"] + (scenario["expiring"] - report["refreshed"]) + (scenario["dead"] - report["reissued"])
    return {
        "wall_s": round(timed["wall_s"], 3), "cpu_s": round(timed["cpu_s"], 2), "floor_s": round(floor, 3),
        "latency_floor_s": round(latency_floor, 3), "rate_floor_s": round(rate_floor, 3),
        "binding": "rate limit" if rate_floor >= latency_floor else "latency", "calls": accepted,
        "calls_by_route": by_route, "refused_by_rate_limit": refused,
        "rate_limited_answers": timed["rate_limited_answers"], "retries": timed["retries"],
        "paced_wait_s": timed["paced_wait_s"], "report": report, "failed": timed["failed"], "failures": failures,
        "seed_s": round(seed_s, 1), "checks": checks, "rss_before_mb": timed["rss_before_mb"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


if __name__ == "__main__":  # alone: .venv/bin/python benchmarks/bench_run_due.py [--quick] [--only NAME]
    sys.path.insert(0, str(HERE))
    from harness import scenario_main

    scenario_main(sys.argv, scenarios=scenarios, worker=worker, run_in_worker=_in_worker, figures=_figures)
