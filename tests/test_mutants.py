"""tests/mutants.py's list stays true to the code (every edit matches exactly once) and its harness proves what
it imports. The mutants themselves run from .ci/run (`python tests/mutants.py`, ~2-3 minutes)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import mutants
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_every_mutant_still_matches_the_code_exactly_once() -> None:
    assert mutants.check(mutants.MUTANTS) == []


def test_the_mutants_cover_what_issue_11_asks() -> None:
    names = {m.name for m in mutants.MUTANTS}
    assert {"client-proof-key-message-swapped", "sim-proof-key-message-swapped", "both-proofs-key-message-swapped",
            "scopes-joined-with-spaces", "proof-not-sent", "version-segment-dropped",
            "verify-exits-0-on-an-invalid-token", "pacing-off", "rate-limit-flag-ignored",
            "revoke-as-post-without-revoke-token"} <= names
    assert [m.name for m in mutants.MUTANTS if m.breaks_import] == ["graph-adapter-does-not-import"]


def test_a_file_is_mapped_to_its_module_by_its_package_folders() -> None:
    site = REPO / mutants.SITE
    assert mutants.module_of(REPO, "vault/adapters/graph_httpx.py") == ("meta_tokenvault.adapters.graph_httpx", site)
    assert mutants.module_of(REPO, "vault/__init__.py") == ("meta_tokenvault", site)
    assert mutants.module_of(REPO, "cli/commands/tokens.py") == ("meta_tokenvault.cli.commands.tokens", site)
    assert mutants.module_of(REPO, "tests/test_mutants.py") is None


def test_a_stale_edit_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("x = 1\nx = 1\n")
    with pytest.raises(mutants.StaleMutant, match="2 times"):
        mutants.apply(tmp_path, (mutants.Edit("m.py", "x = 1", "x = 2"),))
    with pytest.raises(mutants.StaleMutant, match="0 times"):
        mutants.apply(tmp_path, (mutants.Edit("m.py", "y = 1", "y = 2"),))


@pytest.mark.slow
def test_the_guard_stops_a_run_that_imports_the_module_from_elsewhere(tmp_path: Path) -> None:
    """Told the mutated module lives in a copy while the real tree is what imports, the run stops (exit 99)."""
    copy = mutants.make_copy(tmp_path)
    env = mutants.environment(copy, ["vault/adapters/graph_httpx.py"])
    assert env["MUTANT_MODULES"] == f"meta_tokenvault.adapters.graph_httpx={copy / 'vault/adapters/graph_httpx.py'}"
    test = "tests/test_mutants.py::test_a_file_is_mapped_to_its_module_by_its_package_folders"
    inside = subprocess.run(mutants.pytest_cmd([test], tmp_path / "inside"), cwd=copy, env=env,
                            capture_output=True, text=True, timeout=300)
    assert inside.returncode == 0, inside.stdout[-2000:]
    # the same run with the real tree first on sys.path (cwd): the module comes from there, not from the copy
    elsewhere = {**env, "PYTHONPATH": str(copy)}
    outside = subprocess.run(mutants.pytest_cmd([test], tmp_path / "outside"), cwd=REPO, env=elsewhere,
                             capture_output=True, text=True, timeout=300)
    assert outside.returncode == mutants.GUARD_EXIT, outside.stdout[-2000:] + outside.stderr[-2000:]
    assert "mutant guard" in outside.stdout + outside.stderr
