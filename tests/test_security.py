"""Security hardening (issue 15): each test reproduces an attack from the adversarial review.

Files others can write or own, plain-http URLs off loopback, credentials in URLs, terminal escapes and
rich markup from outside, the keyed audit head, `exec --mask` on one shared output, `simulator serve`
off loopback, core dumps / ptrace."""

from __future__ import annotations

import os
import unicodedata
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_inject import TOKEN, assert_clean_error, ready

from meta_tokenvault.config import Settings
from meta_tokenvault.errors import InvalidInput

__all__ = ["ready"]  # the fixture, shared


# ---------------------------------------------------------------------------------------------- files others control
def _targets(home: Path) -> dict[str, Path]:
    return {"home": home, "config": home / "config.toml", "database": home / "tokenvault.db", "keys": home / "keys"}


@pytest.mark.parametrize("target", ["home", "config", "database", "keys"])
@pytest.mark.parametrize("command", [["token", "show", "prod"], ["token", "reveal", "prod"]], ids=["full", "fast"])
def test_a_file_others_can_write_is_refused(cli: Any, ready: Path, target: str, command: list[str]) -> None:
    path = _targets(ready)[target]
    old = path.stat().st_mode
    path.chmod(old | 0o022)
    result = cli(*command)
    assert_clean_error(result, 2, hint=f"chmod go-w {path}")
    assert str(path) in result.err and TOKEN not in result.out
    path.chmod(old)
    assert cli(*command).code == 0


def test_the_fast_path_applies_the_same_check(ready: Path) -> None:
    from meta_tokenvault.fastread import open_fast

    ready.chmod(0o777)
    with pytest.raises(InvalidInput, match="can be written by other users"):
        open_fast(Settings.resolve({}))


def test_init_refuses_a_home_others_can_write(cli: Any, env_home: Path) -> None:
    env_home.mkdir(mode=0o700)
    env_home.chmod(0o777)
    assert_clean_error(cli("init"), 2, hint=f"chmod go-w {env_home}")
    assert not (env_home / "tokenvault.db").exists()


def test_a_home_another_user_owns_is_refused(cli: Any, ready: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_tokenvault import safety

    if os.geteuid() == 0:  # root may give it away for real
        os.chown(ready / "config.toml", 4242, -1)
    else:  # else become someone else: the files are then another user's
        monkeypatch.setattr(safety.os, "geteuid", lambda: os.getuid() + 4242)
    problems = safety.trust_problems(Settings.resolve({}))
    assert problems and "belongs to another user" in problems[0].message and "chown" in problems[0].fix
    assert_clean_error(cli("token", "reveal", "prod"), 2, hint="chown")


def test_doctor_reports_files_others_can_write(cli: Any, ready: Path) -> None:
    (ready / "keys").chmod(0o777)
    result = cli("doctor", "--json")
    assert result.code == 5
    checks = result.json()["checks"]
    assert [c["name"] for c in checks] == ["files"] and "keys" in checks[0]["detail"]
    assert "chmod go-w" in checks[0]["fix"]


def test_a_group_readable_key_file_is_still_refused(cli: Any, ready: Path) -> None:
    key = next((ready / "keys").glob("master-*.key"))
    key.chmod(0o640)
    assert_clean_error(cli("token", "reveal", "prod"), 2, hint=f"chmod 600 {key}")


# ---------------------------------------------------------------------------------------------- plain http
@pytest.mark.parametrize("url", ["http://attacker.example:8080", "http://10.0.0.7", "http://user:pw@evil.example"])
def test_plain_http_graph_url_off_loopback_needs_an_opt_in(cli: Any, ready: Path, url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENVAULT_GRAPH_URL", url)
    result = cli("token", "verify", "prod")
    assert_clean_error(result, 2, hint="TOKENVAULT_ALLOW_INSECURE_HTTP")
    assert "user:pw" not in result.err
    monkeypatch.setenv("TOKENVAULT_ALLOW_INSECURE_HTTP", "1")
    assert cli("token", "show", "prod").code == 0


def test_plain_http_from_config_toml_and_vault_addr(ready: Path) -> None:
    from meta_tokenvault.safety import insecure_url_problems

    (ready / "config.toml").write_text('[tokenvault]\ngraph_url = "http://graph.evil"\n'
                                       'vault_addr = "http://vault.internal:8200"\n')
    problems = insecure_url_problems(Settings.resolve({}))
    assert [p.message.split(" http")[0] for p in problems] == ["The Graph API URL", "The Vault address"]
    (ready / "config.toml").write_text('[tokenvault]\ngraph_url = "http://graph.evil"\nallow_insecure_http = true\n')
    assert insecure_url_problems(Settings.resolve({})) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:8765", "http://localhost:1", "http://[::1]:8", "https://x.example"])
def test_loopback_and_https_need_no_opt_in(ready: Path, url: str) -> None:
    from meta_tokenvault.safety import insecure_url_problems

    assert insecure_url_problems(Settings.resolve({"graph_url": url})) == []


# ------------------------------------------------------------------------------------------- terminal escapes, markup
EVIL = "ops\x1b]0;pwned\x07 bot\x1b[2J[link=https://evil.example]click[/link]\x9b31m"
SHOWN = "ops]0;pwned bot[2J[link=https://evil.example]click[/link]31m"


def _assert_defused(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "[link=https://evil.example]click[/link]" in text  # shown as text, not turned into a hyperlink


def test_a_system_user_name_from_graph_cannot_drive_the_terminal(cli: Any, env_home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from test_graph_cli import setup_business

    from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock

    sim, world = GraphSimulator.demo_world(clock=SimClock(datetime.now(UTC)))
    sim.add_system_user(world.business_id, name=EVIL, role="ADMIN")
    server = sim.serve()
    monkeypatch.setenv("TOKENVAULT_GRAPH_URL", server.url)
    try:
        setup_business(cli, world)
        synced = cli("system-users", "sync")
        listed = cli("system-users", "list")
        as_json = cli("system-users", "list", "--json")
    finally:
        server.close()
    assert synced.code == listed.code == 0, synced.err
    for result in (synced, listed):
        _assert_defused(result.out + result.err)
        assert SHOWN in result.out
    assert EVIL in [u["name"] for u in as_json.json()]  # the data itself is kept as Meta sent it


def test_an_actor_from_the_environment_cannot_drive_the_terminal(cli: Any, ready: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENVAULT_ACTOR", EVIL)
    assert cli("token", "reveal", "prod").code == 0
    monkeypatch.delenv("TOKENVAULT_ACTOR")
    listed = cli("audit", "list")
    assert listed.code == 0
    _assert_defused(listed.out + listed.err)
    assert SHOWN in listed.out


def test_an_error_message_quoting_outside_text_is_defused(capsys: pytest.CaptureFixture[str]) -> None:
    from meta_tokenvault.cli import render

    render.error(f"Meta says: {EVIL}\nhint: run this instead", f"see http://user:secret@graph.example/x {EVIL}")
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "user:secret" not in err and len(err.splitlines()) == 2


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | st.text(alphabet="\x1b\x07\x9b[]/=\\:ab\n\u202e",
                                                                            max_size=40))
def test_safe_removes_control_characters_and_escapes_markup(text: str) -> None:
    from rich.text import Text

    from meta_tokenvault.cli.render import safe

    plain, marked = safe(text), safe(text, markup=True)
    for out in (plain, marked):
        assert not any(unicodedata.category(c) == "Cc" and c != "\n" for c in out)
        assert not any(c in out for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert Text.from_markup(marked, emoji=False).plain == plain  # rich shows exactly the plain text
    assert plain == "".join(c for c in plain if c in text)  # only removals, in order (no URL in this alphabet)


# ---------------------------------------------------------------------------------------------- the keyed audit head
def _db(home: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    import sqlite3

    with sqlite3.connect(home / "tokenvault.db") as conn:
        return conn.execute(sql, params).fetchall()


FAST_AND_FULL = pytest.mark.parametrize("fast", ["1", "0"], ids=["fast", "full"])


@FAST_AND_FULL
def test_a_missing_audit_head_is_an_integrity_error(cli: Any, ready: Path, monkeypatch: pytest.MonkeyPatch,
                                                    fast: str) -> None:
    monkeypatch.setenv("TOKENVAULT_FAST_PATH", fast)
    _db(ready, "DELETE FROM tv_setting WHERE key = 'audit_head'")
    result = cli("token", "reveal", "prod")
    assert_clean_error(result, 4)
    assert "audit head is missing" in result.err and "duplicate" not in result.err
    assert_clean_error(cli("audit", "verify"), 4)


def _rewind(home: Path, drop: int) -> None:
    """Delete the newest ``drop`` events and point the head at the event before them, as an attacker
    without the master key can: the chain itself stays consistent."""
    last = _db(home, "SELECT max(seq) FROM tv_audit_event")[0][0]
    _db(home, "DELETE FROM tv_audit_event WHERE seq > ?", last - drop)
    seq, digest = _db(home, "SELECT seq, hash FROM tv_audit_event ORDER BY seq DESC LIMIT 1")[0]
    _db(home, "UPDATE tv_setting SET value = ? WHERE key = 'audit_head'", f'{{"seq": {seq}, "hash": "{digest}"}}')


@FAST_AND_FULL
def test_rewinding_the_audit_head_is_detected(cli: Any, ready: Path, monkeypatch: pytest.MonkeyPatch,
                                              fast: str) -> None:
    monkeypatch.setenv("TOKENVAULT_FAST_PATH", fast)
    assert cli("token", "reveal", "prod").code == 0  # the event to hide
    _rewind(ready, 1)
    verified = cli("audit", "verify")
    assert_clean_error(verified, 4)
    assert "MAC" in verified.err
    assert_clean_error(cli("token", "reveal", "prod"), 4)  # no further event is chained onto a rewound head


def test_a_forged_mac_is_detected_and_an_intact_head_verifies(cli: Any, ready: Path) -> None:
    import json

    assert cli("audit", "verify").code == 0
    head = json.loads(_db(ready, "SELECT value FROM tv_setting WHERE key = 'audit_head'")[0][0])
    assert set(head) == {"seq", "hash", "mac"}
    head["mac"] = "0" * 64
    _db(ready, "UPDATE tv_setting SET value = ? WHERE key = 'audit_head'", json.dumps(head))
    assert_clean_error(cli("audit", "verify"), 4)


def test_the_head_key_survives_a_master_key_rotation(cli: Any, ready: Path) -> None:
    assert cli("keys", "rotate").code == 0
    assert cli("token", "reveal", "prod").code == 0
    assert cli("audit", "verify").code == 0


# ---------------------------------------------------------------------------------------------- exec --mask, one file
_SPLIT = ("import os; v = os.environ['WHATSAPP_TOKEN'].encode(); os.write(1, b'a ' + v[:12]); "
          "os.write(2, v[12:] + b' b\\n')")


def _run_masked(tmp_path: Path, *, shared: bool) -> bytes:
    import sys

    from meta_tokenvault.inject import ExecOptions, Injected, TokenSpec, run_command
    from meta_tokenvault.types import Secret

    record = type("R", (), {"label": "prod", "version": 1, "fingerprint": "f"})()
    injected = [Injected(TokenSpec("prod", "WHATSAPP_TOKEN"), record, Secret(TOKEN))]  # type: ignore[arg-type]
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    err = os.dup(out) if shared else os.open(tmp_path / "err", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        code = run_command([sys.executable, "-c", _SPLIT], lambda: injected, options=ExecOptions(mask=True),
                           stdout_fd=out, stderr_fd=err)
    finally:
        os.close(out)
        os.close(err)
    assert code == 0
    return (tmp_path / "out").read_bytes() + (b"" if shared else (tmp_path / "err").read_bytes())


def test_mask_catches_a_token_split_between_stdout_and_stderr_on_one_file(tmp_path: Path) -> None:
    written = _run_masked(tmp_path, shared=True)  # as with 2>&1, or both on one terminal
    assert written == b"a <redacted:prod> b\n"


def test_mask_on_two_files_is_per_stream_as_documented(tmp_path: Path) -> None:
    # the documented limit: two different files are masked separately; half a token is in each file
    written = _run_masked(tmp_path, shared=False)
    for name in ("out", "err"):
        assert TOKEN.encode() not in (tmp_path / name).read_bytes()
    assert b"<redacted" not in written


# ---------------------------------------------------------------------------------------------- simulator serve
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_simulator_serve_off_loopback_needs_the_flag(cli: Any, host: str) -> None:
    result = cli("simulator", "serve", "--host", host, "--port", "0")
    assert_clean_error(result, 2, hint="--i-know-this-exposes-tokens")


def test_simulator_serve_with_the_flag_warns(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "meta_tokenvault.cli.main", "simulator", "serve",
                             "--host", "0.0.0.0", "--port", "0", "--json", "--i-know-this-exposes-tokens"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        assert started["port"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "warning: serving on 0.0.0.0" in err and "/_sim/" in err


# ---------------------------------------------------------------------------------------------- core dumps, ptrace
_PR_GET_DUMPABLE, _PR_SET_DUMPABLE = 3, 4
_CHILD_DUMPABLE = ("import ctypes, sys; libc = ctypes.CDLL(None); "
                   "open(sys.argv[1], 'w').write(str(libc.prctl(3, 0, 0, 0, 0)))")


@pytest.fixture
def dumpable(monkeypatch: pytest.MonkeyPatch) -> Any:
    """prctl(PR_GET_DUMPABLE) of this process; made dumpable again afterwards (the CLI runs in-process here)."""
    import ctypes

    from meta_tokenvault import safety

    libc = ctypes.CDLL(None)
    monkeypatch.setattr(safety, "_hardened", False)
    libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
    yield lambda: libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0)
    libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="prctl is Linux")
@pytest.mark.parametrize("fast", ["1", "0"], ids=["fast", "full"])
def test_commands_holding_secrets_are_not_dumpable_but_execs_child_is(cli: Any, ready: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      dumpable: Any, fast: str) -> None:
    import sys

    monkeypatch.setenv("TOKENVAULT_FAST_PATH", fast)
    assert dumpable() == 1
    report = tmp_path / "child"
    result = cli("exec", "--token", "prod", "--", sys.executable, "-c", _CHILD_DUMPABLE, str(report))
    assert result.code == 0, result.err
    assert dumpable() == 0  # tokenvault itself: no core dump, no ptrace by the same user
    assert report.read_text() == "1"  # the child starts dumpable again after execve


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="prctl is Linux")
def test_reading_a_secret_from_stdin_makes_the_process_undumpable(cli: Any, ready: Path, dumpable: Any) -> None:
    from test_inject import import_token

    assert dumpable() == 1
    import_token(cli, "other", "EAAGanotherTokenValue" + "x1y2" * 20)
    assert dumpable() == 0


# ---------------------------------------------------------------------------------------------- credentials in URLs
def test_credentials_in_the_graph_url_are_never_printed(cli: Any, ready: Path, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TOKENVAULT_GRAPH_URL", f"http://graphuser:hunter2pass@127.0.0.1:{port}")
    caplog.set_level("DEBUG")
    doctor = cli("doctor")
    verify = cli("token", "verify", "prod")
    assert verify.code != 0 and "127.0.0.1" in doctor.out
    for text in (doctor.out, doctor.err, verify.out, verify.err, caplog.text):
        assert "hunter2pass" not in text and "graphuser" not in text


@pytest.mark.parametrize(("text", "shown"), [
    ("GET http://u:p@h:8/x?q=a@b", "GET http://h:8/x?q=a@b"),
    ("https://user@vault.example/v1 and postgresql://tv:pw@db/tv", "https://vault.example/v1 and postgresql://db/tv"),
    ("mail a@b.example, no URL", "mail a@b.example, no URL"),
])
def test_strip_userinfo(text: str, shown: str) -> None:
    from meta_tokenvault.redact import redact_text, strip_userinfo

    assert strip_userinfo(text) == shown == redact_text(text)


def test_an_unkeyed_head_from_an_older_tokenvault_is_keyed_once_on_request(cli: Any, ready: Path) -> None:
    import json

    head = json.loads(_db(ready, "SELECT value FROM tv_setting WHERE key = 'audit_head'")[0][0])
    _db(ready, "UPDATE tv_setting SET value = ? WHERE key = 'audit_head'",
        json.dumps({"seq": head["seq"], "hash": head["hash"]}))  # what tokenvault wrote before keyed heads
    refused = cli("token", "reveal", "prod")
    assert_clean_error(refused, 4, hint="tokenvault audit verify --key-head")
    _rewind(ready, 1)  # a tampered trail is not keyed on request: the chain is checked first...
    _db(ready, "UPDATE tv_audit_event SET actor = 'mallory' WHERE seq = 2")
    assert_clean_error(cli("audit", "verify", "--key-head"), 4)
    _db(ready, "UPDATE tv_audit_event SET actor = (SELECT actor FROM tv_audit_event WHERE seq = 1) WHERE seq = 2")
    keyed = cli("audit", "verify", "--key-head")  # ...an intact one is
    assert keyed.code == 0, keyed.err
    assert cli("token", "reveal", "prod").code == 0 and cli("audit", "verify").code == 0
    assert cli("audit", "list", "--json").json()[-2]["action"] == "audit.key_head"


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="prctl is Linux")
@pytest.mark.parametrize("cffi", ["present", "missing", "other-api"])
def test_no_core_dumps_through_cffi_or_ctypes(cffi: str) -> None:
    # cffi's backend when it is there (cryptography's dependency), ctypes otherwise: the same prctl either way
    import subprocess
    import sys

    probe = ("import ctypes, sys, types\n"
             "if sys.argv[1] == 'missing': sys.modules['_cffi_backend'] = None\n"
             "if sys.argv[1] == 'other-api': sys.modules['_cffi_backend'] = types.ModuleType('_cffi_backend')\n"
             "from meta_tokenvault import safety\n"
             "libc = ctypes.CDLL(None)\n"
             "before = libc.prctl(3, 0, 0, 0, 0)\n"
             "if sys.argv[1] == 'present': sys.modules['ctypes'] = None  # cffi alone must do it\n"
             "hardened = safety.no_core_dumps()\n"
             "print(before, hardened, libc.prctl(3, 0, 0, 0, 0))\n")
    out = subprocess.run([sys.executable, "-c", probe, cffi], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    assert out == ["1", "True", "0"]
