"""benchmarks/run.py --quick as a smoke check: every section runs and reports its figures. No timing is
asserted here (figures depend on the machine; the goals are reported by the benchmark itself)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_quick_benchmark_runs_every_section(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--output", str(output)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["quick"] is True and result["errors"] == {}
    sections = {f["section"] for f in result["figures"]}
    expected = {p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert sections == expected
    for figure in result["figures"]:
        assert {"section", "what", "value", "unit", "ratio", "baseline", "goal", "ok"} <= set(figure)
    whats = {f["what"] for f in result["figures"]}
    assert {"tokenvault token reveal", "tokenvault exec -- true", "python -c pass (bare interpreter)"} <= whats
    assert any(w.startswith("token list --json throughput") for w in whats)
    assert "ratio" in proc.stdout.splitlines()[0]  # the table's header


@pytest.mark.slow
def test_the_run_due_benchmark_at_a_tiny_size_renews_what_it_should() -> None:
    """bench_run_due's worker on 40 tokens (5 expiring, 2 dead): the pass refreshes, reissues and checks exactly
    what it should, with one exchange per expiring token and one mint per dead one. No timing is asserted."""
    scenario = {"name": "tiny", "tokens": 40, "expiring": 5, "dead": 2, "concurrency": 4, "latency": 0.0,
                "rate_limit": [1000, 1.0]}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_run_due.py"), "--worker",
                           json.dumps(scenario)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["checks"] == {"ok": True, "bad": [], "exchanges": 5, "mints": 2, "tokens_checked": 40}
    assert result["failures"] == 0 and result["refused_by_rate_limit"] == 0
    report = result["report"]
    assert (report["refreshed"], report["reissued"], report["invalidated"], report["verified"]) == (5, 2, 2, 35)
    assert result["calls_by_route"]["/oauth/access_token"] == 5 and result["calls"] >= 35 + 5 * 2 + 2 * 2
    assert result["peak_rss_mb"] > 0 and result["floor_s"] >= 0
