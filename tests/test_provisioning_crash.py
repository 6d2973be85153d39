"""Crash safety of provisioning: a `tokenvault provision` process is SIGKILLed after each step (talking HTTP to the
simulator's server); the next run — `run-due`, or the same command again — finishes with exactly one system user
created, one app install, one assignment per WABA and one mint, and the token stored once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from graph_world import World, served_world, valid_minted

from meta_tokenvault.types import TokenSource, TokenStatus

ROOT = Path(__file__).resolve().parent.parent
STEPS = ["provision.create_sent", "provision.created", "provision.installed", "provision.assigned",
         "provision.stored"]
NAME = "whatsapp_prod_sender"


def tokenvault(world: World, url: str, *args: str, extra: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
    env = world.env(url)
    env.update(TOKENVAULT_TEST_MODE="1", TOKENVAULT_TEST_NOW=world.sim.clock.now().isoformat(), **(extra or {}))
    return subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[World, str]]:
    yield from served_world(tmp_path, start=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.mark.slow
@pytest.mark.parametrize(("step", "resume"), [(s, "run-due") for s in STEPS] + [(s, "rerun") for s in STEPS[:2]],
                         ids=[f"after-{s.split('.')[1]}-then-run-due" for s in STEPS]
                         + [f"after-{s.split('.')[1]}-then-rerun" for s in STEPS[:2]])
def test_sigkill_after_each_step_then_the_next_run_finishes_exactly_once(served: tuple[World, str], step: str,
                                                                         resume: str) -> None:
    world, url = served
    sim, ids = world.sim, world.ids
    args = ["provision", "prod-wa", "--business", "acme", "--system-user", NAME,
            "--waba", ids.waba_id, "--waba", ids.second_waba_id]
    crashed = tokenvault(world, url, *args, extra={"TOKENVAULT_TEST_CRASH_AFTER": step})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    if resume == "run-due":
        resumed = tokenvault(world, url, "run-due", "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["resumed"] == ["prod-wa"]
    else:
        again = tokenvault(world, url, *args)
        assert again.returncode == 0, again.stderr

    created = [su for su in sim.world.system_users.values() if su.name == NAME]
    assert len(created) == 1
    su = created[0]
    ok = [r for r in sim.requests if r.method == "POST" and r.status == 200]
    assert len([r for r in ok if r.route.endswith("/system_users")]) == 1
    assert len([r for r in ok if r.route == f"/{su.id}/applications"]) == 1
    for waba in (ids.waba_id, ids.second_waba_id):
        assert len([r for r in ok if r.route == f"/{waba}/assigned_users"]) == 1, waba
    assert su.waba_tasks == {ids.waba_id: ["MANAGE"], ids.second_waba_id: ["MANAGE"]}
    assert [t.system_user_id for t in sim.minted] == [su.id]  # one mint

    m = world.manager()
    try:
        record = m.show_token("prod-wa")
        assert record.status is TokenStatus.ACTIVE and record.source is TokenSource.PROVISIONED
        assert record.provenance.system_user_id == su.id and len(record.history) == 1
        current = m.reveal("prod-wa").reveal()
        assert valid_minted(sim) == [current]  # nothing minted is lost
        (entry,) = m.provisionings()
        assert (entry.state, entry.system_user_id, entry.created_by_us) == ("done", su.id, True)
        assert m.verify_audit() > 0
    finally:
        m.close()
    # a further pass has nothing left to do
    assert json.loads(tokenvault(world, url, "run-due", "--json").stdout)["resumed"] == []
    assert len([r for r in sim.requests if r.route.endswith("/system_users") and r.method == "POST"]) == 1
