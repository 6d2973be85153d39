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
    proc = subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=Path(__file__).resolve().parent.parent)
    return Result(proc.returncode, proc.stdout, proc.stderr)
