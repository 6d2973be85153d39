"""Run the real CLI in-process (fast) or as a subprocess (for process-level behaviour)."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


#: A deployment under ``exec``: prints ``serving <sha256(token)[:16]>`` at start, exits 0 on SIGTERM.
SERVING_CHILD = """
import hashlib, os, signal, sys, time
token = os.environ["WHATSAPP_TOKEN"]
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print("serving", hashlib.sha256(token.encode()).hexdigest()[:16], flush=True)
while True:
    time.sleep(0.05)
"""


def short_sha(value: str) -> str:
    """What :data:`SERVING_CHILD` prints of its token."""
    import hashlib

    return hashlib.sha256(value.encode()).hexdigest()[:16]


class SupervisedChild:
    """``tokenvault exec --token LABEL --restart-on-rotate -- python -c SERVING_CHILD`` as a subprocess, its stdout
    read line by line in a thread. Use as a context manager; :meth:`serving` waits for the next start and returns
    the short hash of the token it got; :meth:`stop` sends SIGTERM and returns (exit code, stderr)."""

    def __init__(self, label: str, env: dict[str, str], cwd: Path) -> None:
        import queue
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meta_tokenvault.cli.main", "exec", "--token", label, "--restart-on-rotate",
             "--poll", "0.2", "--grace", "5", "--", sys.executable, "-c", SERVING_CHILD],
            env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=lambda: [self._lines.put(x) for x in self.proc.stdout or []],
                                        daemon=True)
        self._reader.start()

    def serving(self, timeout: float = 30) -> str:
        words = self._lines.get(timeout=timeout).split()
        assert words[0] == "serving", words
        return words[1]

    def stop(self) -> tuple[int, str]:
        import signal

        self.proc.send_signal(signal.SIGTERM)  # forwarded by exec: the child exits 0, and so does exec
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err

    def __enter__(self) -> SupervisedChild:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self._reader.join(timeout=5)


@contextmanager
def served_business(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, *,
                    realtime: bool = False) -> Iterator[tuple[Any, Any]]:
    """The simulator's demo world served over HTTP on 127.0.0.1 (its clock at the real time now; following it
    with ``realtime``), ``TOKENVAULT_GRAPH_URL`` pointing there, and through the CLI: ``init``, the business
    ``acme`` added with its app secret and admin token, its system users synced. Yields ``(sim, world)``."""
    from datetime import UTC, datetime

    from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock

    sim, world = GraphSimulator.demo_world(clock=SimClock(datetime.now(UTC), realtime=realtime))
    server = sim.serve()
    monkeypatch.setenv("TOKENVAULT_GRAPH_URL", server.url)
    try:
        assert cli("init").code == 0
        added = cli("business", "add", "acme", "--business-id", world.business_id, "--app-id", world.app_id,
                    stdin=f"{world.app_secret}\n{world.admin_token}\n")
        assert added.code == 0, added.err
        assert cli("system-users", "sync").code == 0
        yield sim, world
    finally:
        server.close()


def import_two_tokens(monkeypatch: pytest.MonkeyPatch, prod: str, other: str) -> None:
    """Through the CLI in-process, without capsys (callers may capture file descriptors): ``init``, the business
    ``acme``, and ``prod`` / ``other`` imported unverified from these values."""
    from meta_tokenvault.cli.main import run

    def call(*args: str, stdin: str = "") -> None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        assert run(list(args)) == 0, args

    call("init")
    call("business", "add", "acme", "--business-id", "111", "--app-id", "222",
         stdin="app-secret-xyz-123\nEAAadminTokenForCli9876\n")
    for label, value in (("prod", prod), ("other", other)):
        call("token", "import", label, "--business", "acme", "--system-user", "333", "--scopes",
             "whatsapp_business_messaging", "--no-verify", stdin=value + "\n")
