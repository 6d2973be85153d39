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
