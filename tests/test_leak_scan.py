"""Leak scan: a realistic CLI session, every secret value known, every artefact searched.

The session runs `tokenvault` as subprocesses against the Graph API simulator's HTTP server, each with
logging at DEBUG on the root logger (every library's log too), ``TOKENVAULT_DEBUG=1`` and a private
``TMPDIR``: init, business add, system-users sync, token import, generate, rotate, compromised rotate,
verify, show, exec (plain and --mask), inject to a file, export to a file, reveal, audit list, a rotation
SIGKILLed between two steps and run-due finishing it, a failing command, and an unexpected error (a
library that fails with the request URL in its message) with its traceback.

The secrets (the simulator knows every token it minted or issued): every token, the app secret and the
master key. Each is searched raw, hex (lower and upper), base64 and urlsafe base64 (each at the three
alignments a value can take inside a longer base64 text, so a value embedded in an encoded blob is
found too) in:

* the database file and its journal (SQLite's rollback journal exists only inside a write transaction:
  whatever is there is scanned), and every other file under TOKENVAULT_HOME (the master key only outside
  its own key file), at the end and as a SIGKILLed rotation left them;
* everything left in the private TMPDIR and in the working folder after the outputs were deleted;
* stdout and stderr of every command, except the stdout of `token reveal`, whose job is to print the
  token; the DEBUG log lines are on stderr;
* ``/proc/<pid>/cmdline`` of the tokenvault process and of its child during `exec`, and the environment
  of the tokenvault process (the child's environment holds the token by design);
* the traceback printed for the unexpected error.

Positive controls make sure the scan can find what it looks for: the token is found in `reveal`'s stdout
and in the exec child's environment, in each of the forms.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from graph_world import SCOPES, World, make_world
from reliability import Recorder, figures_fixture

from meta_tokenvault.testing.graph_sim import SimServer

ROOT = Path(__file__).resolve().parent.parent

# Runs the CLI with every logger at DEBUG on stderr. LEAKSCAN_LIBRARY_BUG makes the HTTP client fail on
# debug_token with the request URL (which carries input_token and appsecret_proof) in the exception's message:
# the worst case of an unexpected error, reported by the CLI's one error boundary. Both senders are broken
# (httpx, and http.client, which tokenvault's own Graph client uses when no proxy is set).
WRAPPER = """
import logging, os, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="LOG %(levelname)s %(name)s: %(message)s")
if os.environ.get("LEAKSCAN_LIBRARY_BUG"):
    import http.client, httpx
    _send = httpx.Client.send
    def send(self, request, **kwargs):
        if "debug_token" in request.url.path:
            raise RuntimeError(f"library bug while sending {request.url}")
        return _send(self, request, **kwargs)
    httpx.Client.send = send
    _putrequest = http.client.HTTPConnection.putrequest
    def putrequest(self, method, url, *args, **kwargs):
        if "debug_token" in url:
            raise RuntimeError(f"library bug while sending http://{self.host}:{self.port}{url}")
        return _putrequest(self, method, url, *args, **kwargs)
    http.client.HTTPConnection.putrequest = putrequest
from meta_tokenvault.cli.main import run
run()
"""

CHILD = """
import os, sys, time
marker, release = sys.argv[1], sys.argv[2]
with open(marker, "w") as f:
    f.write(str(os.getpid()))
while not os.path.exists(release):
    time.sleep(0.02)
print("child saw a token of", len(os.environ["WHATSAPP_TOKEN"]), "characters")
"""


def forms(value: str) -> dict[str, list[bytes]]:
    """The byte strings to search for ``value``: raw, hex, and base64 / urlsafe base64 at 3 alignments."""
    raw = value.encode()
    out: dict[str, list[bytes]] = {"raw": [raw], "hex": [raw.hex().encode(), raw.hex().upper().encode()]}
    for name, encode in (("base64", base64.b64encode), ("urlsafe", base64.urlsafe_b64encode)):
        variants = []
        for shift in range(3):
            # the value after `shift` bytes of something else: only the characters that depend on the
            # value alone are stable (skip the first and the last 4-character groups' edges)
            encoded = encode(b"\0" * shift + raw)
            start = 4 if shift else 0
            stop = len(encoded) - 4
            variants.append(encoded[start:stop])
        out[name] = variants
    return out


FORM_NAMES = ("raw", "hex", "base64", "urlsafe")
figures = figures_fixture()


@dataclass
class Scan:
    """Secrets, artefacts and what was found."""

    secrets: dict[str, str] = field(default_factory=dict)  # name -> value
    artefacts: dict[str, bytes] = field(default_factory=dict)
    not_for: dict[str, set[str]] = field(default_factory=dict)  # artefact -> secret names it may hold
    searches: int = 0

    def add(self, name: str, data: bytes | str, *, may_hold: set[str] | None = None) -> None:
        self.artefacts[name] = data.encode() if isinstance(data, str) else data
        if may_hold:
            self.not_for[name] = may_hold

    def add_tree(self, prefix: str, root: Path, *, may_hold: dict[str, set[str]] | None = None) -> int:
        files = 0
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.is_symlink():
                rel = path.relative_to(root).as_posix()
                self.add(f"{prefix}/{rel}", path.read_bytes(), may_hold=(may_hold or {}).get(rel))
                files += 1
        return files

    def hits(self, artefact: str, data: bytes | None = None) -> list[tuple[str, str]]:
        data = self.artefacts[artefact] if data is None else data
        found = []
        for name, value in self.secrets.items():
            if name in self.not_for.get(artefact, set()):
                continue
            for form, needles in forms(value).items():
                self.searches += 1
                if any(needle in data for needle in needles):
                    found.append((name, form))
        return found

    def all_hits(self) -> dict[str, list[tuple[str, str]]]:
        return {a: h for a in self.artefacts if (h := self.hits(a))}


@dataclass
class Session:
    world: World
    server: SimServer
    tmp: Path
    work: Path
    log: list[tuple[str, subprocess.CompletedProcess[str]]] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = self.world.env(self.server.url)
        env.update(TMPDIR=str(self.tmp), TOKENVAULT_DEBUG="1", **extra)
        return env

    def run(self, *args: str, stdin: str = "", code: int = 0, **extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-c", WRAPPER, *args], input=stdin, env=self.env(**extra),
                                cwd=self.work, capture_output=True, text=True, timeout=60)
        assert result.returncode == code, (args, result.returncode, result.stderr[-3000:])
        self.log.append((" ".join(args), result))
        return result


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    world = make_world(tmp_path / "setup", start=datetime.now(UTC))  # only for the simulator and its ids
    world.home = tmp_path / "home"  # the session builds its own store with the CLI
    tmp, work = tmp_path / "tmp", tmp_path / "work"
    tmp.mkdir(mode=0o700)
    work.mkdir()
    with world.sim.serve() as server:
        yield Session(world, server, tmp, work)


@pytest.mark.slow
def test_no_secret_in_any_artefact_of_a_cli_session(session: Session, figures: Recorder) -> None:
    s, sim, ids = session, session.world.sim, session.world.ids
    scan = Scan()
    by_hand = sim.issue_token(ids.app_id, ids.old_admin_id, SCOPES)  # generated in Business Settings, imported

    s.run("init")
    s.run("business", "add", "acme", "--business-id", ids.business_id, "--app-id", ids.app_id,
          stdin=f"{ids.app_secret}\n{ids.admin_token}\n")
    s.run("system-users", "sync")
    s.run("token", "import", "imported", "--business", "acme", stdin=by_hand + "\n")
    s.run("token", "generate", "prod", "--business", "acme")
    s.run("token", "rotate", "prod")
    s.run("token", "rotate", "prod", "--compromised", "--reason", "pasted in a ticket")
    s.run("token", "verify", "prod")
    s.run("token", "show", "prod", "--json")

    # exec: the child holds the token in its environment only; look at every process's argv meanwhile
    marker, release = s.work / "child.pid", s.work / "release"
    proc = subprocess.Popen([sys.executable, "-c", WRAPPER, "exec", "--token", "prod", "--", sys.executable, "-c",
                             CHILD, str(marker), str(release)], env=s.env(), cwd=s.work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    child = int(marker.read_text())
    scan.add("/proc/tokenvault/cmdline", Path(f"/proc/{proc.pid}/cmdline").read_bytes())
    scan.add("/proc/tokenvault/environ", Path(f"/proc/{proc.pid}/environ").read_bytes())
    scan.add("/proc/child/cmdline", Path(f"/proc/{child}/cmdline").read_bytes())
    child_environ = Path(f"/proc/{child}/environ").read_bytes()
    release.touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    s.log.append(("exec --token prod", subprocess.CompletedProcess(proc.args, 0, out, err)))
    assert "child saw a token of" in out

    masked = s.run("exec", "--mask", "--token", "prod", "--", sys.executable, "-c",
                   "import os; print('token:', os.environ['WHATSAPP_TOKEN'])")
    assert "<redacted:prod>" in masked.stdout

    (s.work / "app.env.tpl").write_text("TOKEN={{ tokenvault://prod }}\nWABA={{ tokenvault://prod/waba_id }}\n")
    s.run("inject", "-i", "app.env.tpl", "-o", "app.env")
    s.run("export", "prod", "--format", "dotenv", "-o", "prod.env")
    for output in ("app.env", "prod.env"):
        assert by_hand not in (s.work / output).read_text()
        (s.work / output).unlink()  # delivered; the scan looks for anything left behind
    revealed = s.run("token", "reveal", "prod")
    s.run("audit", "list", "--json")
    # a rotation SIGKILLed between two steps (the new token minted and stored), then finished by run-due:
    # what a killed process leaves in the home is scanned as it was at that moment
    s.run("token", "rotate", "prod", code=-9, TOKENVAULT_TEST_MODE="1", TOKENVAULT_TEST_CRASH_AFTER="stored")
    killed_home = scan.add_tree("home-after-kill", s.world.home)
    s.run("run-due", "--json")
    s.run("token", "reveal", "no-such-label", code=3)
    crashed = s.run("token", "verify", "prod", code=1, LEAKSCAN_LIBRARY_BUG="1")
    assert "RuntimeError: library bug while sending" in crashed.stderr  # the traceback is there, redacted

    # the secrets: every token the simulator knows, the app secret, the master key(s)
    for n, token in enumerate(sorted(t.value for t in sim.tokens)):
        scan.secrets[f"token{n}"] = token
    scan.secrets["app_secret"] = ids.app_secret
    keys_dir = s.world.home / "keys"
    key_files = {p.name: p.read_text().strip() for p in keys_dir.iterdir() if p.name != "current"}
    for key_id, text in key_files.items():
        scan.secrets[f"master-key:{key_id}"] = text
    assert len(sim.tokens) == 6  # admin, imported, generated, rotated, rotated (compromised), rotated (killed)

    # artefacts
    key_holders = {f"keys/{k}": {f"master-key:{k}"} for k in key_files}
    for rel, holds in key_holders.items():
        scan.not_for[f"home-after-kill/{rel}"] = holds
    home_files = scan.add_tree("home", s.world.home, may_hold=key_holders)
    tmp_files = scan.add_tree("tmp", s.tmp)
    work_files = scan.add_tree("work", s.work)
    for n, (args, result) in enumerate(s.log):
        if args != "token reveal prod":
            scan.add(f"stdout[{n}] {args}", result.stdout)
        scan.add(f"stderr[{n}] {args}", result.stderr)
    assert any(name.startswith("home/tokenvault.db") for name in scan.artefacts)

    # positive controls: the scan finds the current token where it must be, in every form
    current = revealed.stdout.strip()
    assert current in scan.secrets.values()
    control = Scan(secrets={"current": current})
    for form, needles in forms(current).items():
        encoded = {"raw": current.encode(), "hex": current.encode().hex().encode(),
                   "base64": base64.b64encode(b"xy" + current.encode()),
                   "urlsafe": base64.urlsafe_b64encode(b"x" + current.encode())}[form]
        assert ("current", form) in control.hits("c", b"[" + encoded + b"]"), form
        assert needles
    assert ("current", "raw") in control.hits("c", child_environ)

    hits = scan.all_hits()
    assert hits == {}, json.dumps(hits, indent=1)
    total_bytes = sum(len(b) for b in scan.artefacts.values())
    log_lines = sum(line.startswith("LOG ") for _, r in s.log for line in r.stderr.splitlines())
    figures("leak-scan", commands=len(s.log), artefacts=len(scan.artefacts), home_files=home_files + killed_home,
            tmp_files=tmp_files, work_files_left=work_files, bytes_scanned=total_bytes, debug_log_lines=log_lines,
            secrets=len(scan.secrets), forms_per_secret=sum(len(v) for v in forms("x" * 40).values()),
            form_kinds=len(FORM_NAMES), searches=scan.searches, hits=0)


def test_the_suite_wide_net_finds_a_token_in_every_form_and_skips_simulator_state(tmp_path: Path) -> None:
    """tests/plugins/leakscan.py scans every test's temp files at the end of the session; here, that it can."""
    from plugins.leakscan import scan_tree

    from meta_tokenvault.testing.graph_sim import GraphSimulator

    value = "EAA" + "Zq81" * 45  # made up: not one the net is looking for in the real temp folders
    raw = value.encode()
    (tmp_path / "raw.log").write_bytes(b"INFO sent " + raw + b" to the API\n")
    (tmp_path / "hex.bin").write_bytes(b"\x00\x01" + raw.hex().encode() + b"\n")
    (tmp_path / "HEX.bin").write_bytes(raw.hex().upper().encode())
    for shift in range(3):
        (tmp_path / f"b64-{shift}.yaml").write_bytes(b"data:\n  t: " + base64.b64encode(b"ab"[:shift] + raw))
        (tmp_path / f"url-{shift}.txt").write_bytes(base64.urlsafe_b64encode(b"xy"[:shift] + raw + b"?"))
    (tmp_path / "clean.txt").write_bytes(b"EAA" + b"Zq81" * 10 + b" a shorter, different token\n")
    sim, _ = GraphSimulator.demo_world()
    state = tmp_path / "sim-state.json"
    sim.save(state)
    (tmp_path / "also-raw.json").write_bytes(state.read_bytes().replace(b'"format"', b'"formats"'))
    values = {value, *(t.value for t in sim.tokens)}
    hits = scan_tree(tmp_path, values)
    expected = {"raw.log", "hex.bin", "HEX.bin", "also-raw.json", *(f"b64-{n}.yaml" for n in range(3)),
                *(f"url-{n}.txt" for n in range(3))}
    assert set(hits) == expected, hits  # the simulator's own state file holds its tokens by design: skipped
    assert hits["hex.bin"] == [f"hex …{value[-4:]}"] and f"base64 …{value[-4:]}" in hits["b64-1.yaml"]
    state.unlink()
    (tmp_path / "also-raw.json").unlink()  # it holds the simulator's tokens, which the real net looks for
