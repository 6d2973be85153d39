"""What every benchmark section shares: the Figure type, hyperfine-like timing of commands, and homes to run them in.

A figure is always reported with a *ratio* to something measured in the same run (the bare interpreter, the
same command on a small store, the OpenBao CLI...), because absolute milliseconds depend on the machine;
the ratio is what the goals in issue 7 are written against.

Timing: every command is run as a fresh process (``subprocess``), ``warmup`` times unmeasured, then ``runs``
times; commands that are compared with each other are interleaved round-robin so that a busy moment on the
machine hits all of them alike. The figure is the median wall time; min, the median absolute deviation and
the median CPU time (user + system of the child, from ``getrusage``: what the command costs, whatever else
the machine is doing) are kept in results.json.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TOKEN = "EAAGbenchmarkToken" + "Zq9Xw8Vu7" * 20 + "WXYZ"


@dataclass
class Figure:
    """One measured figure. ``ratio`` is ``value`` relative to ``baseline`` (named), measured in the same run;
    ``ok`` says whether ``goal`` is met (None when the figure has no goal)."""

    section: str
    what: str
    value: float
    unit: str
    ratio: float | None = None
    baseline: str | None = None
    goal: str = ""
    ok: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Timing:
    """Wall times (and CPU times) of repeated runs of one command, in seconds."""

    samples: tuple[float, ...]
    cpu: tuple[float, ...] = ()

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def minimum(self) -> float:
        return min(self.samples)

    @property
    def mad(self) -> float:
        med = self.median
        return statistics.median(abs(s - med) for s in self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    def summary(self) -> dict[str, Any]:
        return {"runs": len(self.samples), "median_ms": round(self.median * 1000, 2),
                "min_ms": round(self.minimum * 1000, 2), "mad_ms": round(self.mad * 1000, 2),
                "cpu_median_ms": round(self.cpu_median * 1000, 2)}


def tool(name: str) -> str:
    """An executable of this virtualenv (tokenvault, bao), else of the virtualenv that built this one
    (``run.py --install wheel``: bao), else PATH."""
    for folder in (BIN, os.environ.get(TOOLS_ENV)):
        beside = Path(folder, name) if folder else None
        if beside is not None and beside.exists():
            return str(beside)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed next to {sys.executable} nor on PATH")
    return found


def run_once(argv: Sequence[str], env: Mapping[str, str], *, stdin: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), env=dict(env), input=stdin, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc


#: A command to time: ``(argv, env)``, or ``(argv, env, columns)`` to run it at a pseudo-terminal that wide
#: (stdin, stdout and stderr), as a person at a terminal runs it.
Command = tuple[Sequence[str], Mapping[str, str]] | tuple[Sequence[str], Mapping[str, str], int]


def _run_in_terminal(argv: Sequence[str], env: Mapping[str, str], columns: int) -> tuple[int, float, bytes]:
    """Run ``argv`` with a pseudo-terminal ``columns`` wide as stdin, stdout and stderr, reading (and
    discarding) what it prints as a terminal would: exit code, wall time, the last of its output."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), env=dict(env), stdin=slave, stdout=slave, stderr=slave)
        os.close(slave)
        slave = -1
        tail = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            tail = (tail + chunk)[-2000:]
        code = proc.wait(timeout=600)
        return code, time.perf_counter() - start, tail
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def compare(commands: Mapping[str, Command], *, runs: int, warmup: int = 2) -> dict[str, Timing]:
    """Time each ``name: (argv, env[, columns])`` ``runs`` times (after ``warmup``), interleaved; output
    discarded (read from the pseudo-terminal when ``columns`` is given)."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    cpu: dict[str, list[float]] = {name: [] for name in commands}
    for round_ in range(warmup + runs):
        for name, command in commands.items():
            argv, env = command[0], command[1]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            if len(command) == 3:
                code, elapsed, output = _run_in_terminal(argv, env, command[2])
            else:
                start = time.perf_counter()
                proc = subprocess.run(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
                elapsed = time.perf_counter() - start
                code, output = proc.returncode, proc.stderr
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if code != 0:
                raise RuntimeError(f"{name}: {' '.join(argv)} exited {code}: "
                                   f"{output.decode(errors='replace').strip()[-2000:]}")
            if round_ >= warmup:
                samples[name].append(elapsed)
                cpu[name].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return {name: Timing(tuple(samples[name]), tuple(cpu[name])) for name in commands}


def base_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """A minimal, explicit environment: no TOKENVAULT_*/VAULT_* of the person running the benchmark."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT", "PYTHONPATH")  # PYTHONPATH: benchmark another tree
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = str(home.parent if home else tempfile.gettempdir())
    env["PYTHONDONTWRITEBYTECODE"] = "0"
    if home is not None:
        env["TOKENVAULT_HOME"] = str(home)
        env["TOKENVAULT_KEY_PROVIDER"] = "file"
        env["TOKENVAULT_ACTOR"] = "benchmark@localhost"
    env.update(extra)
    return env


def make_home(base: Path, tokens: int, *, label_prefix: str = "bench") -> tuple[Path, list[str]]:
    """A tokenvault home with ``tokens`` tokens on the local backend and the file key provider.

    The first token goes through the real CLI (init, business add, token import) so the store is exactly what
    a user has; the rest are added in bulk by :func:`bulk_tokens`. Returns the home and the labels.
    """
    home = base / f"home-{tokens}"
    env = base_env(home)
    tv = tool("tokenvault")
    run_once([tv, "init"], env)
    run_once([tv, "business", "add", "acme", "--business-id", "1001", "--app-id", "2002"], env,
             stdin="app-secret-for-benchmarks\nEAAadminTokenForBenchmarks9876\n")
    first = f"{label_prefix}-{0:06d}"
    run_once([tv, "token", "import", first, "--business", "acme", "--system-user", "3003",
              "--scopes", "whatsapp_business_messaging,whatsapp_business_management", "--waba", "4004",
              "--no-verify"], env, stdin=TOKEN + "\n")
    labels = [first] + [f"{label_prefix}-{i:06d}" for i in range(1, tokens)]
    if tokens > 1:
        bulk_tokens(home, labels[1:])
    return home, labels


def bulk_tokens(home: Path, labels: Sequence[str]) -> None:
    """Add tokens the way ``token import`` stores them (token, version, sealed blob, audit event), in bulk.

    Uses tokenvault's own sealing (:func:`meta_tokenvault.crypto.seal_secret` with the home's key provider) and the
    audit chain's hash, and SQLAlchemy Core inserts on the model tables; one transaction.
    """
    sys.path.insert(0, str(ROOT))
    import json
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from meta_tokenvault import audit, crypto, models
    from meta_tokenvault.adapters import store_sql
    from meta_tokenvault.adapters.keys_file import FileKeyProvider
    from meta_tokenvault.context import FINGERPRINT_PURPOSE, FP_AAD
    from meta_tokenvault.types import Secret, SecretKind, SecretRef

    keys = FileKeyProvider(home / "keys")
    key_id = keys.current_key_id()
    master = keys._key(key_id)  # one read of the key file instead of one per token (bulk only)

    class _Cached:
        def wrap(self, dek: bytes, aad: bytes, *, key_id: str | None = None) -> tuple[str, bytes]:
            return key_id_, crypto.seal(master, dek, aad)

    key_id_ = key_id
    engine = sa.create_engine(f"sqlite:///{home / 'tokenvault.db'}")
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    try:
        with engine.begin() as conn:
            next_id = conn.execute(sa.select(sa.func.max(models.TokenRow.id))).scalar_one() + 1
            head_row = conn.execute(sa.select(models.SettingRow.value).where(
                models.SettingRow.key == "audit_head")).scalar_one()
            fp_key_id, fp_wrapped = conn.execute(sa.select(models.WrappedKeyRow.key_id, models.WrappedKeyRow.wrapped)
                                                 .where(models.WrappedKeyRow.purpose == FINGERPRINT_PURPOSE)).one()
            # the head is MAC'ed with a key derived from the fingerprint key (SECURITY.md, audit trail)
            mac_key = audit.head_key(keys.unwrap(fp_key_id, fp_wrapped, FP_AAD))
            seq, prev = audit.read_head(head_row, mac_key)
            tokens, versions, blobs, events = [], [], [], []
            for offset, label in enumerate(labels):
                token_id = next_id + offset
                value = f"EAAGbulk{token_id:08d}" + "Kp4Lm5" * 20 + f"{token_id % 10000:04d}"
                created = t0 + timedelta(seconds=offset)
                tokens.append({"id": token_id, "label": label, "business_pk": 1, "current_version": 1,
                               "max_age_days": None, "created_at": created})
                versions.append({"token_id": token_id, "version": 1, "status": "active", "source": "imported",
                                 "system_user_id": "3003", "app_id": "2002",
                                 "scopes": json.dumps(["whatsapp_business_messaging"]),
                                 "waba_ids": json.dumps(["4004"]), "fingerprint": f"{token_id:032x}",
                                 "last4": value[-4:], "created_at": created, "expires_at": None,
                                 "verified_at": None, "debug_summary": "{}", "revoked_at": None,
                                 "backend": "local"})
                sealed = crypto.seal_secret(_Cached(), Secret(value),  # type: ignore[arg-type]
                                            SecretRef(SecretKind.TOKEN, token_id, 1, label))
                blobs.append({"kind": "token", "owner_id": token_id, "version": 1, "key_id": sealed.key_id,
                              "wrapped_key": sealed.wrapped_key, "ciphertext": sealed.ciphertext})
                body = json.dumps({"fingerprint": f"{token_id:032x}", "system_user_id": "3003", "verified": False,
                                   "version": 1}, sort_keys=True, separators=(",", ":"))
                seq += 1
                digest = store_sql.audit_hash(seq, prev, created, "benchmark@localhost", "token.import", label, body)
                events.append({"seq": seq, "at": created, "actor": "benchmark@localhost", "action": "token.import",
                               "subject": label, "details": body, "prev_hash": prev, "hash": digest})
                prev = digest
            conn.execute(sa.insert(models.TokenRow.__table__), tokens)  # type: ignore[attr-defined]
            conn.execute(sa.insert(models.TokenVersionRow.__table__), versions)  # type: ignore[attr-defined]
            conn.execute(sa.insert(models.SecretBlobRow.__table__), blobs)  # type: ignore[attr-defined]
            conn.execute(sa.insert(models.AuditEventRow.__table__), events)  # type: ignore[attr-defined]
            conn.execute(sa.update(models.SettingRow.__table__)  # type: ignore[attr-defined]
                         .where(models.SettingRow.key == "audit_head")
                         .values(value=audit.encode_head(seq, prev, mac_key)))
    finally:
        engine.dispose()


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def make_configured_home(base: Path, env: Mapping[str, str], label: str = "bench-000000") -> str:
    """One token in a home configured by ``env`` (store URL, backend, key provider...), made through the CLI
    exactly as a user makes it: init, business add, token import. Returns the label."""
    tv = tool("tokenvault")
    run_once([tv, "init"], env)
    run_once([tv, "business", "add", "acme", "--business-id", "1001", "--app-id", "2002"], env,
             stdin="app-secret-for-benchmarks\nEAAadminTokenForBenchmarks9876\n")
    run_once([tv, "token", "import", label, "--business", "acme", "--system-user", "3003",
              "--scopes", "whatsapp_business_messaging", "--no-verify"], env, stdin=TOKEN + "\n")
    if run_once([tv, "token", "reveal", label], env).stdout != TOKEN + "\n":
        raise RuntimeError("token reveal did not print the stored token")
    return label


def read_commands(env: Mapping[str, str], label: str) -> dict[str, tuple[Sequence[str], Mapping[str, str]]]:
    """The commands every configuration section times: the floor, reveal and exec, fast and full path."""
    tv, python = tool("tokenvault"), tool("python")
    full = dict(env, TOKENVAULT_FAST_PATH="0")
    return {
        "python -c pass": ([python, "-c", "pass"], env),
        "tokenvault token reveal": ([tv, "token", "reveal", label], env),
        "tokenvault exec -- true": ([tv, "exec", "--token", label, "--", "true"], env),
        "tokenvault token reveal (full path)": ([tv, "token", "reveal", label], full),
        "tokenvault exec -- true (full path)": ([tv, "exec", "--token", label, "--", "true"], full),
    }


def read_figures(section: str, timings: Mapping[str, Timing], *, goal_ratio: float | None = None,
                 baseline: str = "python -c pass", allowance: float = 0.0, goal: str = "") -> list[Figure]:
    """Figures of :func:`read_commands`' timings: each a ratio to ``baseline`` (its median, plus ``allowance``
    seconds: e.g. PostgreSQL's round trip) measured in the same run; the goal is ``ratio <= goal_ratio``."""
    bare = timings["python -c pass"].median
    base = timings[baseline].median + allowance
    figures = [Figure(section, "python -c pass (bare interpreter)", ms(bare), "ms", 1.0, "python -c pass",
                      detail=timings["python -c pass"].summary())]
    for name in ("tokenvault token reveal", "tokenvault exec -- true"):
        median = timings[name].median
        ratio = median / base
        figures.append(Figure(section, name, ms(median), "ms", round(ratio, 2), baseline + (
            f" + {ms(allowance)} ms" if allowance else ""), goal, None if goal_ratio is None else ratio <= goal_ratio,
            detail={**timings[name].summary(), "vs_python": round(median / bare, 2),
                    "cpu_vs_baseline": round(timings[name].cpu_median / timings[baseline].cpu_median, 2)}))
        slow = timings[f"{name} (full path)"]
        figures.append(Figure(section, f"{name} (full path)", ms(slow.median), "ms", round(slow.median / base, 2),
                              baseline, detail={**slow.summary(), "env": "TOKENVAULT_FAST_PATH=0",
                                                "vs_python": round(slow.median / bare, 2),
                                                "fast_path_speedup": round(slow.median / median, 2)}))
    return figures


#: Set (by ``run.py --install wheel``) in the interpreter that runs the sections when tokenvault is installed
#: from its wheel, as users get it, rather than editable from this checkout.
INSTALL_ENV = "TOKENVAULT_BENCH_INSTALL"
#: ... and the folder of the executables of the virtualenv that built it (bao, the PostgreSQL helpers).
TOOLS_ENV = "TOKENVAULT_BENCH_TOOLS"


def installed_as() -> str:
    """``"wheel"`` or ``"editable"``: how the tokenvault under test is installed (see :func:`wheel_venv`)."""
    return os.environ.get(INSTALL_ENV) or "editable"


def wheel_venv(dest: Path, tree: Path | None = None) -> Path:
    """A virtualenv at ``dest`` holding tokenvault as users install it: the wheel of ``tree`` (default: this
    checkout, or TOKENVAULT_BENCH_TREE) installed by pip, which byte-compiles it and writes the ``tokenvault``
    script. Its dependencies are this virtualenv's, reached through one path line in a ``.pth`` file (no
    download; a plain path line costs the interpreter a ``stat``, unlike the editable install's import hook,
    which ``python -c pass`` pays too). Returns the virtualenv's python."""
    import sysconfig

    tree = tree or Path(os.environ.get("TOKENVAULT_BENCH_TREE") or ROOT)
    source, wheels = dest / "src", dest / "wheels"
    shutil.copytree(tree, source, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "__pycache__",
                                                                 "*.egg-info", "results.json"))
    quiet = {"check": True, "stdout": subprocess.DEVNULL}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), str(source)], **quiet)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(dest / "venv")], **quiet)
    python = dest / "venv" / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index",
                    *map(str, wheels.glob("meta_tokenvault-*.whl"))], **quiet)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "tokenvault-bench-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def precompile() -> None:
    """Byte-compile the tree under test (as ``pip install`` does): the commands run with
    PYTHONDONTWRITEBYTECODE set, and a missing .pyc would be compiled again in every measured run."""
    import compileall

    if installed_as() == "wheel":
        return  # pip compiled the installed copy
    tree = Path(os.environ.get("TOKENVAULT_BENCH_TREE") or ROOT)
    for package in ("vault", "cli"):
        compileall.compile_dir(str(tree / package), quiet=1)


# ----- sections whose scenarios each run in a worker process (bulk rotation, run-due) -------------------------------
Scenario = dict[str, Any]


def in_worker(script: Path, scenario: Scenario, *, cwd: Path, timeout: float, what: str) -> dict[str, Any]:
    """Run ``script --worker SCENARIO_JSON`` in a fresh interpreter (so its peak RSS is its own); its last
    stdout line is the result, as JSON."""
    proc = subprocess.run([sys.executable, str(script), "--worker", json.dumps(scenario)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} worker ({scenario['name']}) exited {proc.returncode}: "
                           f"{proc.stderr.strip()[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def scenario_main(argv: Sequence[str], *, scenarios: Callable[[bool], list[Scenario]],
                  worker: Callable[[Scenario], dict[str, Any]], run_in_worker: Callable[[Scenario], dict[str, Any]],
                  figures: Callable[[Any, Scenario, dict[str, Any]], list[Any]]) -> None:
    """A scenario section's ``__main__``: ``--worker JSON`` runs one scenario here and prints its result;
    otherwise every scenario (``--quick``: the small ones; ``--only NAME``: one) runs in a worker and its
    figures are printed as JSON lines."""
    if len(argv) == 3 and argv[1] == "--worker":
        print(json.dumps(worker(json.loads(argv[2]))))
        return
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    for chosen in scenarios("--quick" in argv):
        if only is None or chosen["name"] == only:
            for f in figures(Figure, chosen, run_in_worker(chosen)):
                print(json.dumps(f.as_json()), flush=True)


@contextmanager
def embedded_postgres(base: Path, database: str, *, tree: Path = ROOT) -> Iterator[tuple[Any, str]]:
    """The tests' embedded PostgreSQL (``tests/plugins/postgres.py``, the one way to run it) in ``base/pg`` with a
    fresh database ``database``; yields (the server, the database's URL) and stops the server afterwards."""
    sys.path.insert(0, str(tree / "tests"))
    from plugins.postgres import _start

    (base / "pg").mkdir()
    server, postmaster = _start(base / "pg")
    try:
        conn = server.connect()
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        conn.close()
        yield server, server.url(database)
    finally:
        postmaster.stop()
