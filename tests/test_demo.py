"""`tokenvault demo`: the README's first command runs the whole story offline and proves its claims."""

from __future__ import annotations

import stat
from pathlib import Path

from cli_support import CliRunner


def test_demo_runs_the_whole_story(cli: CliRunner, tmp_path: Path) -> None:
    res = cli("demo", "--json", "--demo-home", str(tmp_path / "demo"))
    assert res.code == 0, res.err
    report = res.json()
    steps = {s["title"].split(".")[0]: s for s in report["steps"]}
    assert len(steps) == 12
    assert steps["4"]["exit_code"] == 7 and steps["4"]["reminder_id"] == 1  # the seven-day rule, recorded
    assert steps["4"]["minted_young"]["status"] == "active"  # a young admin mints: Meta was asked
    assert steps["6"]["valid"] is True
    assert steps["7"]["child_exit"] == 0 and "<redacted:prod-whatsapp>" in steps["7"]["child_output"]
    assert steps["7"]["child_output"].count("EAA") == 0
    assert steps["8"]["outcome"]["state"] == "done" and steps["8"]["outcome"]["to_version"] == 2
    assert steps["9"]["outcome"]["compromised"] is True
    assert steps["10"]["run_due"]["completed"] == ["newco-whatsapp"]
    assert any("whatsapp_newco_sender" in line and "created" in line for line in steps["10"]["lines"])
    assert steps["12"]["leaks"] == [] and steps["12"]["events"] > 20
    home = tmp_path / "demo" / "home"
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in home.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_demo_for_people_prints_steps_on_stderr_and_cleans_up(cli: CliRunner) -> None:
    res = cli("demo")
    assert res.code == 0, res.err
    assert res.out == ""  # stdout stays clean for data
    assert "== 4. Meta's seven-day rule, where Meta enforces it" in res.err
    assert "the throwaway home was removed" in res.err
    home = res.err.split("home ", 1)[1].split(" ", 1)[0]
    assert not Path(home).exists()
