"""`tokenvault exec` with real processes: where the token is (the child's environment) and is not (any
argv in /proc, our environment), signals and exit codes through, --mask on live streams, and
--restart-on-rotate across a new token version. Nothing of ours is mocked.

Process tests run `python -m meta_tokenvault.cli.main exec ...` in its own session (so cleanup can kill exactly what
it started) with pipes for stdio; every wait has a timeout. Quick checks run the CLI in-process.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_inject import OTHER, REPO, TOKEN, TOKEN_V2, assert_clean_error, import_token, new_version, set_status
from test_inject import ready as ready  # noqa: F401 - the fixture, shared

from meta_tokenvault.types import TokenStatus

PY = sys.executable
WAIT = 15.0  # upper bound for anything to happen; normally well under a second


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


# Children -------------------------------------------------------------------------------------------
# Each traps a few signals and exits with a code of its own, so a test sees that the signal reached it.
PROBE = """
import hashlib, os, signal, sys
CODES = {"SIGTERM": 42, "SIGINT": 43, "SIGHUP": 44, "SIGQUIT": 45}
def stop(signum, frame):
    name = signal.Signals(signum).name
    print("got " + name, flush=True)
    os._exit(CODES[name])
for name in CODES:
    signal.signal(getattr(signal, name), stop)
signal.signal(signal.SIGUSR1, lambda s, f: print("got SIGUSR1", flush=True))
token = os.environ.get("WHATSAPP_TOKEN", "")
print("ready pid=%d sha=%s" % (os.getpid(), hashlib.sha256(token.encode()).hexdigest()[:16]), flush=True)
for line in sys.stdin:  # until the test closes our stdin
    pass
print("stdin closed", flush=True)
"""

SERVER = """
import hashlib, os, signal, sys
mode = sys.argv[1]
if mode == "ignores-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, lambda s, f: (print("bye %d" % os.getpid(), flush=True), os._exit(0)))
signal.signal(signal.SIGINT, lambda s, f: (print("interrupted", flush=True), os._exit(43)))
token = os.environ["WHATSAPP_TOKEN"]
print(token, file=sys.stderr, flush=True)  # what a careless log line does; --mask must catch it
print("serving pid=%d sha=%s" % (os.getpid(), hashlib.sha256(token.encode()).hexdigest()[:16]), flush=True)
while True:
    signal.pause()
"""

SPLITTER = """
import os, sys, time
token = os.environ["WHATSAPP_TOKEN"]
half = len(token) // 2
print("hello", flush=True)
sys.stdin.readline()  # the test answers only after it has seen "hello": output streams, it is not held
sys.stdout.write("token=" + token[:half]); sys.stdout.flush(); time.sleep(0.2)
sys.stdout.write(token[half:] + " end\\n"); sys.stdout.flush()
sys.stderr.write(token[:half]); sys.stderr.flush(); time.sleep(0.2)
sys.stderr.write(token[half:] + " on stderr\\n"); sys.stderr.flush()
os.write(1, ("whole " + token + "\\n").encode())
sys.exit(5)
"""


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    folder = tmp_path / "scripts"
    folder.mkdir()
    for name, text in (("probe.py", PROBE), ("server.py", SERVER), ("splitter.py", SPLITTER)):
        (folder / name).write_text(text)
    return folder


class Running:
    """`tokenvault ARGS` as a subprocess in its own session; stdout lines in a queue, stderr collected."""

    def __init__(self, args: list[str]) -> None:
        self.proc = subprocess.Popen([PY, "-m", "meta_tokenvault.cli.main", *args], cwd=REPO, env=dict(os.environ),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.err_chunks: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=self._read_lines, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_all, args=(self.proc.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_lines(self, stream: Any) -> None:
        for raw in stream:
            self.lines.put(raw.decode(errors="replace"))

    def _read_all(self, stream: Any) -> None:
        for raw in iter(lambda: stream.read1(65536), b""):
            self.err_chunks.append(raw.decode(errors="replace"))

    @property
    def err(self) -> str:
        return "".join(self.err_chunks)

    def expect(self, prefix: str, timeout: float = WAIT) -> str:
        """The next stdout line starting with ``prefix`` (earlier lines are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise AssertionError(f"no line starting {prefix!r} within {timeout}s; stdout so far "
                                     f"{self.seen!r}; stderr {self.err!r}") from None
            self.seen.append(line)
            if line.startswith(prefix):
                return line.rstrip("\n")

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def finish(self, timeout: float = WAIT) -> int:
        """Close stdin, wait for the exit, collect the rest of the output."""
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=timeout)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return code

    @property
    def out(self) -> str:
        return "".join(self.seen)

    def kill(self) -> None:
        """Cleanup: SIGKILL the session we started (tokenvault and its child), if anything is left."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def run() -> Iterator[Any]:
    started: list[Running] = []

    def start(*args: str) -> Running:
        running = Running(list(args))
        started.append(running)
        return running

    yield start
    for running in started:
        running.kill()


def _field(line: str, name: str) -> str:
    return dict(part.split("=", 1) for part in line.split() if "=" in part)[name]


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def _every_cmdline() -> dict[int, bytes]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes()
            except OSError:  # gone meanwhile, or not ours to read
                continue
    return found


# ---------------------------------------------------------------------------------------------- where it is
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_the_token_is_in_the_childs_environment_only(ready: Path, scripts: Path, run: Any) -> None:
    tv = run("exec", "--token", "prod", "--", PY, str(scripts / "probe.py"))
    line = tv.expect("ready ")
    assert _field(line, "sha") == sha(TOKEN)  # the child sees the token as WHATSAPP_TOKEN
    child = int(_field(line, "pid"))
    chain = [child, tv.proc.pid, os.getpid()]
    assert _ppid(child) == tv.proc.pid and _ppid(tv.proc.pid) == os.getpid()
    token = TOKEN.encode()
    cmdlines = _every_cmdline()
    assert set(chain) <= set(cmdlines)
    assert b"meta_tokenvault.cli.main\x00exec\x00--token\x00prod\x00--\x00" in cmdlines[tv.proc.pid]
    leaking = {pid: cmd for pid, cmd in cmdlines.items() if token in cmd or token[:24] in cmd}
    assert leaking == {}  # no process on this machine has it in argv (what `ps` shows)
    assert token not in Path(f"/proc/{tv.proc.pid}/environ").read_bytes()  # nor tokenvault's environment
    assert token not in Path(f"/proc/{os.getpid()}/environ").read_bytes()
    # The documented exposure: the child's own environment, readable by the same user (and root).
    assert b"WHATSAPP_TOKEN=" + token + b"\x00" in Path(f"/proc/{child}/environ").read_bytes()
    assert tv.finish() == 0
    assert tv.out.endswith("stdin closed\n") and TOKEN not in tv.out + tv.err


def _env_dump(tmp_path: Path) -> list[str]:
    """A child that writes its whole environment as JSON to ``tmp_path/env.json``."""
    return [PY, "-c", "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))",
            str(tmp_path / "env.json")]


def test_in_process_exec_leaves_our_environment_argv_and_signal_handlers_alone(
        cli: Any, ready: Path, tmp_path: Path) -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    environ, argv = dict(os.environ), list(sys.argv)
    result = cli("exec", "--token", "prod", "--", *_env_dump(tmp_path))
    assert result.code == 0, result.err
    assert json.loads((tmp_path / "env.json").read_text())["WHATSAPP_TOKEN"] == TOKEN
    assert dict(os.environ) == environ and TOKEN not in json.dumps(dict(os.environ))
    assert sys.argv == argv
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    assert TOKEN not in result.out + result.err


def test_the_vaults_own_credentials_are_not_passed_on(cli: Any, ready: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    credentials = {"TOKENVAULT_MASTER_KEY": "bWFzdGVy", "TOKENVAULT_MASTER_KEY_PREVIOUS": "b2xk",
                   "TOKENVAULT_VAULT_TOKEN": "hvs.root", "TOKENVAULT_VAULT_SECRET_ID": "approle-secret",
                   "TOKENVAULT_NOTIFY_URLS": "json://user:password@127.0.0.1:9/hook"}
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("APP_SETTING", "kept")
    result = cli("exec", "--token", "prod", "--", *_env_dump(tmp_path))
    assert result.code == 0, result.err
    child_env = json.loads((tmp_path / "env.json").read_text())
    assert not set(credentials) & set(child_env)
    assert child_env["APP_SETTING"] == "kept" and child_env["TOKENVAULT_HOME"] == str(ready)
    assert child_env["WHATSAPP_TOKEN"] == TOKEN


@pytest.mark.parametrize(("tokens", "expected"), [
    pytest.param(["prod"], {"WHATSAPP_TOKEN": TOKEN}, id="one-default"),
    pytest.param(["prod:WA"], {"WA": TOKEN}, id="one-named"),
    pytest.param(["prod", "staging-eu"], {"TOKENVAULT_PROD": TOKEN, "TOKENVAULT_STAGING_EU": OTHER}, id="derived"),
    pytest.param(["prod:WHATSAPP_TOKEN", "staging-eu"], {"WHATSAPP_TOKEN": TOKEN, "TOKENVAULT_STAGING_EU": OTHER},
                 id="mixed"),
])
def test_variable_names(cli: Any, ready: Path, tmp_path: Path, tokens: list[str], expected: dict[str, str]) -> None:
    import_token(cli, "staging-eu", OTHER)
    args = [arg for label in tokens for arg in ("--token", label)]
    result = cli("exec", *args, "--", *_env_dump(tmp_path))
    assert result.code == 0, result.err
    child_env = json.loads((tmp_path / "env.json").read_text())
    assert {k: v for k, v in child_env.items() if v in (TOKEN, OTHER)} == expected


@pytest.mark.parametrize(("tokens", "hint"), [
    pytest.param(["prod:A", "prod:A"], "its own variable", id="same-variable"),
    pytest.param(["prod:TOKENVAULT_HOME"], "Choose another variable", id="reserved"),
    pytest.param(["prod:1BAD"], "letters, digits", id="bad-name"),
    pytest.param(["bad label"], "--token LABEL", id="bad-label"),
])
def test_bad_token_specs_are_exit_2(cli: Any, ready: Path, tmp_path: Path, tokens: list[str], hint: str) -> None:
    args = [arg for label in tokens for arg in ("--token", label)]
    result = cli("exec", *args, "--", *_env_dump(tmp_path))
    assert_clean_error(result, 2, hint=hint)
    assert not (tmp_path / "env.json").exists()


def test_unknown_label_is_exit_3_and_nothing_runs(cli: Any, ready: Path, tmp_path: Path) -> None:
    result = cli("exec", "--token", "prod", "--token", "missing", "--", *_env_dump(tmp_path))
    assert_clean_error(result, 3)
    assert "missing" in result.err and not (tmp_path / "env.json").exists()


@pytest.mark.parametrize("status", [TokenStatus.RETIRED, TokenStatus.REVOKED, TokenStatus.COMPROMISED],
                         ids=lambda s: s.value)
def test_an_inactive_token_is_refused_unless_allowed(cli: Any, ready: Path, tmp_path: Path,
                                                     status: TokenStatus) -> None:
    set_status("prod", status)
    refused = cli("exec", "--token", "prod", "--", *_env_dump(tmp_path))
    assert_clean_error(refused, 2, hint="--allow-inactive")
    assert status.value in refused.err and not (tmp_path / "env.json").exists()
    allowed = cli("exec", "--token", "prod", "--allow-inactive", "--", *_env_dump(tmp_path))
    assert allowed.code == 0 and json.loads((tmp_path / "env.json").read_text())["WHATSAPP_TOKEN"] == TOKEN


# ---------------------------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize(("code", "expected"), [
    pytest.param("sys.exit(0)", 0, id="0"),
    pytest.param("sys.exit(3)", 3, id="3"),
    pytest.param("sys.exit(42)", 42, id="42"),
    pytest.param("sys.exit(255)", 255, id="255"),
    pytest.param("os.kill(os.getpid(), signal.SIGKILL)", 137, id="killed-137"),
    pytest.param("os.kill(os.getpid(), signal.SIGTERM)", 143, id="terminated-143"),
])
def test_exit_codes_pass_through(cli: Any, ready: Path, code: str, expected: int) -> None:
    result = cli("exec", "--token", "prod", "--", PY, "-c", f"import os, signal, sys; {code}")
    assert result.code == expected, result.err
    assert result.err == ""  # the command's status is not our error


def test_command_not_found_is_127_and_not_executable_is_126(cli: Any, ready: Path, tmp_path: Path) -> None:
    missing = cli("exec", "--token", "prod", "--", "tokenvault-no-such-command-xyz")
    assert_clean_error(missing, 127, hint="PATH")
    assert "tokenvault-no-such-command-xyz" in missing.err
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    for target in (str(script), str(tmp_path)):
        assert_clean_error(cli("exec", "--token", "prod", "--", target), 126, hint="chmod +x")
    # Usage errors found by the parser are the boundary's job (cli/main.py); exec itself runs nothing.
    assert cli("exec", "--token", "prod").code != 0


def test_options_after_the_command_belong_to_it(cli: Any, ready: Path, tmp_path: Path) -> None:
    result = cli("exec", "--token", "prod", PY, "-c", "import sys, pathlib; pathlib.Path(sys.argv[2]).write_text("
                 "sys.argv[1])", "--mask", str(tmp_path / "arg"))
    assert result.code == 0, result.err
    assert (tmp_path / "arg").read_text() == "--mask"


# ---------------------------------------------------------------------------------------------- signals
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 42), (signal.SIGINT, 43), (signal.SIGHUP, 44),
                                           (signal.SIGQUIT, 45)], ids=lambda v: getattr(v, "name", str(v)))
def test_signals_reach_the_child_and_its_exit_code_comes_back(ready: Path, scripts: Path, run: Any,
                                                              sig: signal.Signals, code: int) -> None:
    tv = run("exec", "--token", "prod", "--", PY, str(scripts / "probe.py"))
    tv.expect("ready ")
    os.kill(tv.proc.pid, sig)  # to tokenvault only, not to the child
    assert tv.expect("got ") == f"got {sig.name}"
    assert tv.finish() == code
    assert tv.err == ""


def test_a_non_terminating_signal_is_forwarded_and_the_child_goes_on(ready: Path, scripts: Path, run: Any) -> None:
    tv = run("exec", "--token", "prod", "--", PY, str(scripts / "probe.py"))
    tv.expect("ready ")
    os.kill(tv.proc.pid, signal.SIGUSR1)
    tv.expect("got SIGUSR1")
    assert tv.finish() == 0 and tv.out.endswith("stdin closed\n")


def test_a_child_killed_by_the_forwarded_signal_is_128_plus_n(ready: Path, run: Any) -> None:
    tv = run("exec", "--token", "prod", "--", PY, "-c", "import time; print('ready', flush=True); time.sleep(60)")
    tv.expect("ready")
    os.kill(tv.proc.pid, signal.SIGTERM)
    assert tv.finish() == 128 + signal.SIGTERM


# ---------------------------------------------------------------------------------------------- --mask
def test_mask_redacts_a_token_split_across_writes_while_streaming(ready: Path, scripts: Path, run: Any) -> None:
    tv = run("exec", "--token", "prod", "--mask", "--", PY, str(scripts / "splitter.py"))
    tv.expect("hello")  # arrives while the child still runs: masking does not buffer whole streams
    tv.send("go\n")
    assert tv.finish() == 5
    assert tv.out == "hello\ntoken=<redacted:prod> end\nwhole <redacted:prod>\n"
    assert tv.err == "<redacted:prod> on stderr\n"
    half = len(TOKEN) // 2
    for piece in (TOKEN, TOKEN[:half], TOKEN[half:]):
        assert piece not in tv.out and piece not in tv.err


# ---------------------------------------------------------------------------------------------- rotation
@pytest.mark.parametrize(("mode", "grace"), [("traps-term", "5"), ("ignores-term", "0.3")])
def test_restart_on_rotate_restarts_the_child_with_the_new_token(ready: Path, scripts: Path, run: Any,
                                                                 mode: str, grace: str) -> None:
    tv = run("exec", "--token", "prod", "--restart-on-rotate", "--poll", "0.1", "--grace", grace, "--mask",
             "--", PY, str(scripts / "server.py"), mode)
    first = tv.expect("serving ")
    assert _field(first, "sha") == sha(TOKEN)
    assert new_version("prod", TOKEN_V2) == 2
    if mode == "traps-term":
        assert tv.expect("bye ") == f"bye {_field(first, 'pid')}"  # asked to stop with SIGTERM
    second = tv.expect("serving ")  # SIGKILLed after the grace period when it ignores SIGTERM
    assert _field(second, "sha") == sha(TOKEN_V2) and _field(second, "pid") != _field(first, "pid")
    os.kill(tv.proc.pid, signal.SIGINT)
    tv.expect("interrupted")
    assert tv.finish() == 43
    assert "token rotated (prod v1 -> v2); restarting the command" in tv.err
    assert tv.err.count("<redacted:prod>") == 2  # each child's careless log line, each with its own token
    for value in (TOKEN, TOKEN_V2):
        assert value not in tv.out and value not in tv.err


def test_restart_on_rotate_does_not_restart_a_child_that_exits(cli: Any, ready: Path) -> None:
    result = cli("exec", "--token", "prod", "--restart-on-rotate", "--poll", "0.05", "--",
                 PY, "-c", "import time, sys; time.sleep(0.2); sys.exit(3)")
    assert result.code == 3 and result.err == ""
