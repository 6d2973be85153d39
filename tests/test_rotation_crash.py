"""Crash safety: a `tokenvault token rotate` process is SIGKILLed after each journaled step, talking
HTTP to the simulator's server; `tokenvault run-due` must end every case with exactly one active,
working token, the old one revoked at the simulator, and no minted token lost."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_support import SupervisedChild, short_sha
from graph_world import SCOPES, World, make_world, served_world, valid_minted

from meta_tokenvault.types import TokenStatus

ROOT = Path(__file__).resolve().parent.parent

NORMAL = ["minting", "stored", "verified", "promoted", "old_revoked"]
COMPROMISED = ["compromised_revoked", "minting", "stored", "verified"]


def tokenvault(world: World, url: str, *args: str, extra: dict[str, str] | None = None,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = world.env(url)
    env.update(extra or {})
    return subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", *args], env=env, capture_output=True,
                          text=True,
                          timeout=timeout, cwd=ROOT, stdin=subprocess.DEVNULL)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[World, str]]:
    yield from served_world(tmp_path, start=datetime.now(UTC))  # the subprocess uses the real clock


@pytest.mark.slow
@pytest.mark.parametrize(("compromised", "step"),
                         [(False, s) for s in NORMAL] + [(True, s) for s in COMPROMISED],
                         ids=[f"normal-after-{s}" for s in NORMAL] + [f"compromised-after-{s}" for s in COMPROMISED])
def test_sigkill_after_each_step_then_run_due_finishes(served: tuple[World, str], compromised: bool,
                                                       step: str) -> None:
    world, url = served
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    old = m.reveal("prod").reveal()
    m.store.close()

    args = ["token", "rotate", "prod", *(["--compromised"] if compromised else [])]
    crashed = tokenvault(world, url, *args,
                         extra={"TOKENVAULT_TEST_MODE": "1", "TOKENVAULT_TEST_CRASH_AFTER": step})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    resumed = tokenvault(world, url, "run-due", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed"] == ["prod"]

    m = world.manager()
    record = m.show_token("prod")
    statuses = [v.status for v in record.history]
    assert statuses.count(TokenStatus.ACTIVE) == 1 and record.status is TokenStatus.ACTIVE
    assert record.version == 2
    current = m.reveal("prod").reveal()
    assert world.sim.token_state(current) == "valid"
    assert world.sim.token_state(old) == "revoked"
    # nothing minted is lost: every token Meta still accepts is the one tokenvault holds
    assert valid_minted(world.sim) == [current]
    assert len(world.sim.minted) == 2  # the first generate, and exactly one mint for the rotation
    assert m.verify_audit() > 0
    m.close()
    # a second pass has nothing left to do
    again = tokenvault(world, url, "run-due", "--json")
    assert json.loads(again.stdout)["resumed"] == []


@pytest.fixture(params=["sqlite", "postgres"])
def shared_db(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.mark.slow
def test_two_processes_rotating_one_token_mint_exactly_once(tmp_path: Path, shared_db: str | None) -> None:
    """Two `token rotate` processes (two hosts, when they share PostgreSQL): one rotates, the other exits 8."""
    world = make_world(tmp_path, start=datetime.now(UTC), db_url=shared_db)
    server = world.sim.serve()
    try:
        m = world.manager()
        m.generate_token("prod", business="acme", scopes=SCOPES)
        m.store.close()
        world.sim.latency = 0.3  # the first rotation is still minting when the second one starts
        minted_before = len(world.sim.minted)
        env = world.env(server.url)
        procs = [subprocess.Popen([sys.executable, "-m", "meta_tokenvault.cli.main", "token", "rotate", "prod"],
                                  env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL) for _ in range(2)]
        results = []
        for p in procs:
            _, err = p.communicate(timeout=120)
            results.append((p.returncode, err))
        codes = sorted(code for code, _ in results)
        assert codes == [0, 8], results
        loser = next(err for code, err in results if code == 8)
        assert loser.startswith("error: Another rotation of prod is under way") and "Traceback" not in loser
        assert len(world.sim.minted) - minted_before == 1
        m = world.manager()
        assert m.show_token("prod").version == 2
        m.close()
    finally:
        server.close()


@pytest.mark.slow
def test_exec_restart_on_rotate_follows_a_real_token_rotate(served: tuple[World, str]) -> None:
    """A deployment under `exec --restart-on-rotate` gets the new token after `token rotate` (another process)."""
    world, url = served
    m = world.manager()
    m.generate_token("prod", business="acme", scopes=SCOPES)
    first_token = m.reveal("prod").reveal()
    m.store.close()
    with SupervisedChild("prod", world.env(url), ROOT) as child:
        assert child.serving() == short_sha(first_token)
        rotated = tokenvault(world, url, "token", "rotate", "prod")
        assert rotated.returncode == 0, rotated.stderr
        m = world.manager()
        second_token = m.reveal("prod").reveal()
        m.close()
        assert child.serving() == short_sha(second_token)  # restarted, new token
        assert world.sim.token_state(first_token) == "revoked" and world.sim.token_state(second_token) == "valid"
        code, err = child.stop()
        assert code == 0, err
        assert "restarting the command" in err and first_token not in err and second_token not in err
