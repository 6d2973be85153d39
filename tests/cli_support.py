"""Run the real CLI in-process (fast) or as a subprocess (for process-level behaviour)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


class CliRunner:
    """Invokes ``meta_tokenvault.cli.main.run`` with a fresh stdin and the env of the test (monkeypatched)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def __call__(self, *args: str, stdin: str = "") -> Result:
        from meta_tokenvault.cli.main import run

        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = run(list(args))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)


def master_key_b64() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def subprocess_cli(args: list[str], env: dict[str, str], stdin: str = "", timeout: float = 60) -> Result:
    proc = subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", *args], input=stdin,
                          capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=Path(__file__).resolve().parent.parent)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def both_paths(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str],
               stdin: str = "") -> tuple[Result, Result, bool]:
    """Run ``args`` in-process through the fast path (meta_tokenvault.cli.fast) and through typer
    (TOKENVAULT_FAST_PATH off): both results, and whether the fast path really ran (typer's app was not called)."""
    import meta_tokenvault.cli.main
    from meta_tokenvault.cli.main import run

    ran_app: list[bool] = []
    real = meta_tokenvault.cli.main._run_app

    def spy(argv: list[str] | None) -> int:
        ran_app.append(True)
        return real(argv)

    monkeypatch.setattr(meta_tokenvault.cli.main, "_run_app", spy)
    results = []
    fast_ran = False
    for fast in (True, False):
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capfd.readouterr()
        code = run(list(args), fast=fast)
        captured = capfd.readouterr()
        results.append(Result(code, captured.out, captured.err))
        if fast:
            fast_ran = not ran_app
    return results[0], results[1], fast_ran


_PROBE = """
import json, sys
from meta_tokenvault.cli.main import run
code = run(json.loads(sys.argv[1]))
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[2])))
sys.stderr.write("\\nLOADED " + json.dumps({"code": code, "loaded": loaded}) + "\\n")
"""


def imports_of(args: list[str], env: dict[str, str], watch: tuple[str, ...]) -> tuple[int, list[str], str]:
    """Run ``tokenvault ARGS`` in a fresh interpreter; its exit code and which of ``watch`` it imported."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args), json.dumps(list(watch))], env=env,
                          capture_output=True, text=True, timeout=120, cwd=root,
                          stdin=subprocess.DEVNULL)  # no terminal at all: rich's width is then 80 everywhere
    marker = proc.stderr.rsplit("LOADED ", 1)
    assert len(marker) == 2, proc.stderr
    data = json.loads(marker[1])
    return data["code"], data["loaded"], proc.stdout
