"""Start-up: what a command imports, and the fast path of `token reveal` / `exec` (meta_tokenvault.cli.fast) giving
exactly what the typer path gives - output, error lines, exit codes - while usage errors and help stay typer's."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_support import both_paths, import_two_tokens, imports_of

import meta_tokenvault.cli.fast
import meta_tokenvault.cli.main

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "EAAGstartupToken" + "s1t2u3" * 20 + "WXYZ"
OTHER = "EAAGstartupOther" + "v4w5x6" * 20 + "ABCD"
HEAVY = ("hvac", "httpx", "sqlalchemy", "sqlmodel")
TYPER = ("typer", "click", "rich")

_imports = imports_of


def _env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENVAULT_", "VAULT_"))}
    if home is not None:
        env.update(TOKENVAULT_HOME=str(home), TOKENVAULT_KEY_PROVIDER="file")
    return env


@pytest.fixture
def store(env_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with two tokens, made through the CLI (without capsys: these tests capture file descriptors)."""
    import_two_tokens(monkeypatch, TOKEN, OTHER)
    return env_home


# --------------------------------------------------------------------------- what start-up imports
@pytest.mark.slow
@pytest.mark.parametrize("args", [["--help"], ["token", "--help"], ["exec", "--help"], ["token", "reveal", "--help"]],
                         ids=["help", "token-help", "exec-help", "reveal-help"])
def test_help_imports_no_http_vault_or_database_library(args: list[str], tmp_path: Path) -> None:
    code, loaded, out = _imports(args, _env(tmp_path / "home"), HEAVY)
    assert code == 0 and "Usage" in out
    assert loaded == [], f"`tokenvault {' '.join(args)}` imported {loaded}"


@pytest.mark.slow
@pytest.mark.parametrize("args", [["token", "reveal", "prod"], ["exec", "--token", "prod", "--", "true"]],
                         ids=["reveal", "exec"])
def test_fast_commands_import_neither_typer_nor_sqlalchemy(store: Path, args: list[str]) -> None:
    code, loaded, _out = _imports(args, _env(store), HEAVY + TYPER + ("keyring",))
    assert code == 0
    assert loaded == [], f"`tokenvault {' '.join(args)}` imported {loaded}"


#: Modules the fast commands must not import: use cases other than the reads (the service imports them when
#: a method needs them), what they pull (leases: socket, uuid), the typer path's state, and dataclasses (the
#: records are meta_tokenvault.records' @record; dataclasses imports inspect, ast, dis, tokenize); hashlib
#: (digests are cryptography's: meta_tokenvault.digest), tomllib (init's config.toml: config.plain_toml), ctypes
#: (prctl through cffi), cryptography's cipher modules (crypto.aesgcm), base64 (binascii), and for exec the
#: inject modules it does not run (templates, exports -> secrets); typing (~2 ms: the modules of the fast path
#: import it for mypy only, under TYPE_CHECKING, and the ports they load define their Protocols for mypy only)
#: and cryptography's hashes, which import it (meta_tokenvault.digest: the built-in SHA-256).
NOT_ON_FAST_PATH = ("meta_tokenvault.usecases.master_key", "meta_tokenvault.usecases.doctor",
                    "meta_tokenvault.usecases.system_users", "meta_tokenvault.usecases.businesses",
                    "meta_tokenvault.usecases.capture", "meta_tokenvault.leases", "meta_tokenvault.cli.state",
                    "meta_tokenvault.api", "socket", "uuid", "dataclasses", "inspect", "hashlib", "_hashlib",
                    "tomllib", "ctypes", "secrets", "meta_tokenvault.inject.templates",
                    "meta_tokenvault.inject.exports", "cryptography.hazmat.primitives.ciphers", "base64",
                    "typing", "cryptography.hazmat.primitives.hashes", "cryptography.utils",
                    "cryptography.exceptions")
#: ... and `token reveal` starts no thread and redacts nothing.
NOT_ON_REVEAL = ("threading", "subprocess", "meta_tokenvault.redact", "meta_tokenvault.inject")
#: ... and no command of the fast path loads what it does not run: the stored help, the notifier and renewal
#: policy (run-due's), the file writes (init's, keys').
NOT_ON_READS = ("meta_tokenvault.cli.help", "meta_tokenvault.ports.notify", "meta_tokenvault.policy",
                "meta_tokenvault.fileutil")
_MODULES_PROBE = """
import json, sys
from meta_tokenvault.cli.main import run
code = run(json.loads(sys.argv[1]))
sys.stderr.write("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def _modules_of(args: list[str], env: dict[str, str]) -> tuple[int, set[str]]:
    """Run ``tokenvault ARGS`` in a fresh interpreter: its exit code and every module it imported (full names)."""
    import subprocess

    proc = subprocess.run([sys.executable, "-c", _MODULES_PROBE, json.dumps(args)], env=env, capture_output=True,
                          stdin=subprocess.DEVNULL,
                          text=True, timeout=120, cwd=ROOT)
    marker = proc.stderr.rsplit("MODULES ", 1)
    assert len(marker) == 2, proc.stderr
    data = json.loads(marker[1])
    return data["code"], set(data["modules"])


@pytest.mark.slow
@pytest.mark.parametrize("args", [["token", "reveal", "prod"], ["exec", "--token", "prod", "--", "true"],
                                  ["token", "list", "--json"]], ids=["reveal", "exec", "list-json"])
def test_fast_commands_import_only_the_read_use_case(store: Path, args: list[str]) -> None:
    code, modules = _modules_of(args, _env(store))
    assert code == 0
    assert "meta_tokenvault.usecases.tokens" in modules  # the probe sees the fast path's imports
    assert sorted(modules & set(NOT_ON_FAST_PATH)) == []
    assert sorted(modules & set(NOT_ON_READS)) == []
    if args[:2] == ["token", "reveal"]:
        assert sorted(modules & set(NOT_ON_REVEAL)) == []


@pytest.mark.slow
def test_the_command_modules_import_neither_the_service_nor_the_record_types(tmp_path: Path) -> None:
    # typer's help of a subcommand loads every command module: their signatures need only light types
    code, modules = _modules_of(["token", "--help"], {**_env(tmp_path / "home"), "COLUMNS": "80"})
    assert code == 0 and "meta_tokenvault.cli.commands.tokens" in modules
    assert sorted(modules & {"meta_tokenvault.service", "meta_tokenvault.types", "meta_tokenvault.context"}) == []


def test_the_use_cases_the_service_defers_still_load_when_used() -> None:
    import meta_tokenvault.service as service
    from meta_tokenvault.usecases.doctor import DoctorCheck
    from meta_tokenvault.usecases.master_key import KeyRotationResult

    assert service.DoctorCheck is DoctorCheck and service.KeyRotationResult is KeyRotationResult
    with pytest.raises(AttributeError):
        _ = service.NoSuchThing  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the fast path = the typer path
_both = both_paths


CHILD = [sys.executable, "-c", "import os,sys; print(os.environ.get('WHATSAPP_TOKEN','-')[-4:], "
         "os.environ.get('TOKENVAULT_PROD','-')[-4:], os.environ.get('TOKENVAULT_OTHER','-')[-4:]); "
         "sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 else 0)"]


@pytest.mark.parametrize("args,code", [
    (["token", "reveal", "prod"], 0),
    (["token", "reveal", "other", "--version", "1"], 0),
    (["token", "reveal", "--version=1", "prod"], 0),
    (["token", "reveal", "nope"], 3),
    (["token", "reveal", "prod", "--version", "9"], 3),
    (["exec", "--token", "prod", "--", *CHILD], 0),
    (["exec", "-t", "prod", "--token=other", "--", *CHILD, "7"], 7),
    (["exec", "--token", "prod:MY_VAR", "--mask", "--", *CHILD], 0),
    (["exec", "--token", "nope", "--", *CHILD], 3),
    (["exec", "--token", "bad label!", "--", *CHILD], 2),
    (["exec", "--token", "prod", "--", "/nonexistent/tokenvault-test-cmd"], 127),
    (["token", "list", "--json"], 0),
], ids=["reveal", "reveal-version", "reveal-version-first", "reveal-unknown", "reveal-no-such-version", "exec",
        "exec-two-tokens-exit-code", "exec-named-var-mask", "exec-unknown", "exec-bad-spec", "exec-not-found",
        "list-json"])
def test_fast_path_output_errors_and_exit_codes_are_the_typer_paths(
        store: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str],
        code: int) -> None:
    fast, full, fast_ran = _both(capfd, monkeypatch, args)
    assert fast_ran, "this command line should have taken the fast path"
    assert fast == full
    assert fast.code == code, fast.err
    if code == 0 and args[:2] == ["token", "reveal"]:
        assert fast.out in (TOKEN + "\n", OTHER + "\n")
    if args[:2] == ["token", "list"]:
        assert [t["label"] for t in json.loads(fast.out)] == ["other", "prod"]
    if code not in (0, 7):
        lines = fast.err.splitlines()
        assert lines[0].startswith("error: ") and len(lines) <= 2, fast.err


def test_a_tampered_row_is_exit_4_on_both_paths(store: Path, capfd: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    conn = sqlite3.connect(store / "tokenvault.db")
    with conn:  # the 'other' token's sealed value moved onto 'prod': it opens only for 'other'
        row = conn.execute("SELECT wrapped_key, ciphertext FROM tv_secret_blob WHERE kind = 'token' AND owner_id = "
                           "(SELECT id FROM tv_token WHERE label = 'other')").fetchone()
        conn.execute("UPDATE tv_secret_blob SET wrapped_key = ?, ciphertext = ? WHERE kind = 'token' AND owner_id = "
                     "(SELECT id FROM tv_token WHERE label = 'prod')", row)
    conn.close()
    for args in (["token", "reveal", "prod"], ["exec", "--token", "prod", "--", *CHILD]):
        fast, full, fast_ran = _both(capfd, monkeypatch, args)
        assert fast_ran and fast == full
        assert fast.code == 4 and fast.out == "" and fast.err.startswith("error: "), fast.err


@pytest.mark.parametrize("args", [
    ["token", "reveal"],
    ["token", "reveal", "prod", "extra"],
    ["token", "reveal", "prod", "--version", "abc"],
    ["token", "reveal", "prod", "--verbose"],
    ["token", "reveal", "--help"],
    ["exec", "--token", "prod"],
    ["exec", "--", "true"],
    ["exec", "--token", "prod", "--restart-on-rotate", "--", "true"],
    ["exec", "--token", "--", "true"],
    ["--home", "--", "token", "reveal", "prod"],
    ["--nope", "token", "reveal", "prod"],
    ["token", "reveal", "-h"],
    ["token", "list"],
    ["token", "list", "--json", "--help"],
], ids=["reveal-no-label", "reveal-two-labels", "reveal-bad-version", "reveal-unknown-option", "reveal-help",
        "exec-no-command", "exec-no-token", "exec-other-option", "exec-token-without-value", "global-without-value",
        "unknown-global", "reveal-short-help", "list-table", "list-help"])
def test_bad_usage_and_help_go_through_typer(store: Path, capfd: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    assert meta_tokenvault.cli.fast.recognise(args) is None
    fast, full, fast_ran = _both(capfd, monkeypatch, args)
    assert not fast_ran and fast == full


def test_a_store_that_is_not_the_plain_case_goes_through_typer_with_the_same_result(
        store: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    conn = sqlite3.connect(store / "tokenvault.db")
    with conn:  # as if an older tokenvault made it: the full path migrates it, the fast path stays away
        conn.execute("DELETE FROM tv_schema_version WHERE version = (SELECT max(version) FROM tv_schema_version)")
    conn.close()
    fast, full, fast_ran = _both(capfd, monkeypatch, ["token", "reveal", "prod"])
    assert not fast_ran and fast == full and fast.out == TOKEN + "\n"
    fast, full, fast_ran = _both(capfd, monkeypatch, ["token", "reveal", "prod"])  # migrated by the first run
    assert fast_ran and fast == full


def test_configuration_errors_are_reported_by_the_typer_path(store: Path, capfd: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENVAULT_BACKEND", "vault")  # contradicts the store's record
    fast, full, fast_ran = _both(capfd, monkeypatch, ["token", "reveal", "prod"])
    assert not fast_ran and fast == full and fast.code == 2
    monkeypatch.delenv("TOKENVAULT_BACKEND")
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "nonsense")
    fast, full, fast_ran = _both(capfd, monkeypatch, ["token", "reveal", "prod"])
    assert not fast_ran and fast == full and fast.code == 2


def test_a_database_error_mid_read_falls_back_to_the_typer_path(store: Path, capfd: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_tokenvault.fastread import FastPathUnavailable, FastStore

    def broken(*_args: Any, **_kw: Any) -> int:
        raise FastPathUnavailable("OperationalError: disk I/O error")

    monkeypatch.setattr(FastStore, "append_audit", broken)
    fast, full, fast_ran = _both(capfd, monkeypatch, ["token", "reveal", "prod"])
    assert not fast_ran and fast == full and fast.out == TOKEN + "\n"


def test_global_options_are_honoured(store: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                                     tmp_path: Path) -> None:
    monkeypatch.setenv("TOKENVAULT_HOME", str(tmp_path / "elsewhere"))
    for args in (["--home", str(store), "token", "reveal", "prod"], [f"--home={store}", "--key-provider", "file",
                                                                     "--backend=local", "token", "reveal", "prod"]):
        fast, full, fast_ran = _both(capfd, monkeypatch, args)
        assert fast_ran and fast == full and fast.out == TOKEN + "\n"


# --------------------------------------------------------------------------- the fast parser knows typer's options
def _click_command(*path: str) -> Any:
    import typer.main

    from meta_tokenvault.cli.app import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _opts(command: Any) -> set[str]:
    return {opt for p in command.params if p.param_type_name == "option" for opt in (*p.opts, *p.secondary_opts)}


def test_the_fast_parser_knows_exactly_the_global_options() -> None:
    # the completion options print or install a script and stop: typer's business, never the fast path's
    assert _opts(_click_command()) - {"-h", "--help", "--show-completion", "--install-completion"} == set(
        meta_tokenvault.cli.fast.GLOBAL_OPTIONS)


def test_the_fast_parser_only_accepts_options_typer_has() -> None:
    assert set(meta_tokenvault.cli.fast.REVEAL_OPTIONS) <= _opts(_click_command("token", "reveal"))
    exec_opts = _opts(_click_command("exec"))
    assert set(meta_tokenvault.cli.fast.EXEC_VALUE_OPTIONS) | set(meta_tokenvault.cli.fast.EXEC_FLAGS) <= exec_opts


# --------------------------------------------------------------------------- the top-level help, rendered ahead
def typer_top_level_help(*args: str) -> str:
    """What typer prints for ``tokenvault ARGS`` with stdout a pipe, no terminal at all and none of the variables
    that change its output: the conditions under which :mod:`meta_tokenvault.cli.help` serves the stored text."""
    import subprocess

    from meta_tokenvault.cli.help import CHANGES_OUTPUT

    env = {k: v for k, v in os.environ.items() if k not in CHANGES_OUTPUT and not k.startswith("TOKENVAULT_")}
    env["PYTHONIOENCODING"] = "utf-8"
    proc = subprocess.run([sys.executable, "-c", "import sys; from meta_tokenvault.cli.main import run; "
                           "sys.exit(run(sys.argv[1:], fast=False))", *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, encoding="utf-8", timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def write_help_text() -> None:
    """Regenerate cli/help_text.bin from typer, every width and form: ``python tests/test_startup.py
    --write-help`` (tests/help_support.py)."""
    from help_support import write_store

    write_store()


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_the_stored_top_level_help_is_what_typer_prints(flag: str) -> None:
    # end to end, piped, 80 columns; every width and form in-process and in a pseudo-terminal: tests/test_help.py
    from meta_tokenvault.cli.help import PLAIN, stored_help

    typer_text = typer_top_level_help(flag)
    assert typer_text == stored_help(80, PLAIN), "run `python tests/test_startup.py --write-help`"
    assert max(len(line) for line in typer_text.splitlines()) == 80


@pytest.mark.slow
def test_the_top_level_help_is_served_without_typer_only_where_typer_prints_the_same(tmp_path: Path) -> None:
    from meta_tokenvault.cli.help import PLAIN, stored_help

    stored = stored_help(80, PLAIN)
    env = {k: v for k, v in _env(tmp_path / "home").items() if k != "COLUMNS"}
    code, loaded, out = _imports(["--help"], env, TYPER)
    assert (code, loaded, out) == (0, [], stored)
    code, modules = _modules_of(["--help"], env)  # nor the record types: `import meta_tokenvault` defers them
    assert code == 0 and "meta_tokenvault.cli.help" in modules and "zlib" in modules
    assert sorted(modules & {"meta_tokenvault.types", "dataclasses", "inspect", "meta_tokenvault.cli.app"}) == []
    code, loaded, out = _imports(["--help"], {**env, "COLUMNS": "100"}, TYPER)  # set by hand: typer's
    assert code == 0 and loaded == sorted(TYPER) and out != stored and "Usage" in out
    code, loaded, out = _imports(["--help"], {**env, "TOKENVAULT_FAST_PATH": "0"}, TYPER)
    assert code == 0 and loaded == sorted(TYPER) and out == stored


def test_the_stored_help_answers_one_argument_and_the_fast_commands_do_not_load_it() -> None:
    # cli.main offers only a single argument to the stored help (the fast commands skip its module)
    import meta_tokenvault.cli.help as help_

    assert help_.TOP_LEVEL and all(len(args) == 1 for args in help_.TOP_LEVEL)


@pytest.mark.parametrize("name", ["COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE", "TYPER_USE_RICH", "TERMINAL_WIDTH"])
def test_the_stored_help_is_not_served_when_a_variable_changes_typers_output(name: str) -> None:
    import meta_tokenvault.cli.help as help_

    assert name in help_.CHANGES_OUTPUT
    assert help_.variant({name: "1"}) is None


def test_the_stored_help_is_served_in_the_form_and_at_the_width_typer_would_print(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import meta_tokenvault.cli.help as help_

    class Tty(io.StringIO):
        encoding = "utf-8"

        def isatty(self) -> bool:
            return True

    for name in ("TERM", "NO_COLOR", "COLORTERM", *help_.CHANGES_OUTPUT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.setattr(help_, "rich_width", lambda: 120)  # a terminal 120 columns wide
    assert help_.serve(["-h"]) and sys.stdout.getvalue() == help_.stored_help(120, help_.TERMINAL)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", Tty())
    assert help_.serve(["--help"]) and sys.stdout.getvalue() == help_.stored_help(120, help_.NO_COLOR)
    monkeypatch.setenv("TERM", "dumb")  # rich prints no styles at 80 columns: typer's
    assert not help_.serve(["--help"])
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(help_, "rich_width", lambda: help_.LAST_WIDTH + 1)  # wider than stored: typer's
    assert not help_.serve(["--help"])
    assert not help_.serve(["token", "--help"])
    monkeypatch.setattr(help_, "rich_width", lambda: 80)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    assert help_.variant({}) == help_.PLAIN


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-help"]:
        write_help_text()


# --------------------------------------------------------------------------- config.toml without tomllib
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from meta_tokenvault.config import CONFIG_FILE, Settings, plain_toml, write_config  # noqa: E402

_TOML_PROPS = settings(deadline=None, database=None, max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
# every character TOML (or str.strip) treats specially, and a few ordinary ones
_SPECIAL = ' \t\r\n"\\\'=[]#.,{}-_+:ab1\x00\x01\x08\x0b\x0c\x1f\x7f\x85\xa0\u2028\u3000\ufeffé'
_PRINTABLE = "".join(c for c in _SPECIAL if c == "\t" or c >= " " and c != "\x7f")  # what TOML strings may hold
_fragments = st.text(alphabet=_SPECIAL, max_size=12)
_keys = st.one_of(st.sampled_from(["home", "db_url", "key_provider", "backend", "graph_url", "tokenvault"]),
                  _fragments)
_values = st.one_of(_fragments, st.text(max_size=20), st.sampled_from(['"x"', '"\\\\"', '"\\""', '""', "1", "true",
                                                                       "'x'", '"""x"""', '"a" # c', '"\\u0041"']))


@st.composite
def _config_texts(draw: st.DrawFn) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["pair", "quoted", *["escaped"] * 6, "header", "comment", "blank", "junk"]))
        pad = draw(st.sampled_from(["", " ", "\t", "  "]))
        if kind == "pair":
            lines.append(f"{pad}{draw(_keys)}{pad}={draw(st.sampled_from(['', ' ']))}{draw(_values)}{pad}")
        elif kind == "quoted":
            body = draw(st.text(alphabet=_SPECIAL, max_size=10))
            lines.append(f'{pad}{draw(_keys)} = "{body}"{pad}')
        elif kind == "escaped":  # as write_config escapes, with a stray escape now and then
            body = draw(st.text(alphabet=_PRINTABLE, max_size=10)).replace("\\", "\\\\").replace('"', '\\"')
            if draw(st.integers(0, 4)) == 0:
                body = body.replace("\\\\", "\\", 1)
            key = draw(st.one_of(st.sampled_from(["home", "db_url", "backend", "a-b_1", "K", "x9", "graph_url", "c-"]),
                                 _keys))
            lines.append(f'{pad}{key} = "{body}"{pad}')
        elif kind == "header":
            lines.append(pad + draw(st.sampled_from(["[tokenvault]", "[tokenvault]", "[other]", "[ tokenvault ]",
                                                     "[[tokenvault]]", "[tokenvault] # c", "[tokenvault.x]"])) + pad)
        elif kind == "comment":
            lines.append(f"{pad}#{draw(_fragments)}")
        elif kind == "blank":
            lines.append(pad)
        else:
            lines.append(draw(_fragments))
    return draw(st.sampled_from(["\n", "\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n", "\r\n"]))


def _tomllib(text: str) -> dict[str, Any] | None:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return None


@_TOML_PROPS
@given(text=st.one_of(_config_texts(), st.text(alphabet=_SPECIAL, max_size=40)))
def test_config_toml_is_read_as_tomllib_reads_it_or_left_to_tomllib(text: str) -> None:
    plain = plain_toml(text)
    if plain is not None:
        assert plain == _tomllib(text)


@_TOML_PROPS
@given(values=st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_-0123456789", min_size=1, max_size=12),
                              st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30), max_size=6))
def test_whatever_init_writes_is_read_without_tomllib(values: dict[str, str], tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("cfg") / CONFIG_FILE
    write_config(path, values)
    text = path.read_text("utf-8")
    assert plain_toml(text) == _tomllib(text) == {"tokenvault": values}


@pytest.mark.parametrize("text,expected", [
    ('[tokenvault]\nbackend = "vault"\n', {"tokenvault": {"backend": "vault"}}),
    ('backend = "vault"', {"backend": "vault"}),
    ('# c\n\n[tokenvault]\n  a = "x \\\\ \\" y"  \n', {"tokenvault": {"a": 'x \\ " y'}}),
    ("", {}),
    ("[tokenvault]\n", {"tokenvault": {}}),
], ids=["init", "top-level", "escapes", "empty", "empty-table"])
def test_config_toml_plain_forms(text: str, expected: dict[str, Any]) -> None:
    assert plain_toml(text) == _tomllib(text) == expected


@pytest.mark.parametrize("text", [
    '[tokenvault]\nallow_insecure_http = true\n', '[tokenvault]\na = "x"\na = "y"\n', 'a = "x"\n[tokenvault]\n',
    '[tokenvault]\n[tokenvault]\n', '[tokenvault]\r\na = "x"\r\n', 'a = "x" # c\n', 'a = "\\n"\n', "a = 'x'\n",
    'a.b = "x"\n', '"a" = "x"\n', 'a = """x"""\n', '\ufeffa = "x"\n'],
    ids=["boolean", "duplicate", "key-before-header", "two-headers", "crlf", "trailing-comment", "escape-n",
         "literal-string", "dotted-key", "quoted-key", "multi-line", "bom"])
def test_config_toml_other_forms_go_to_tomllib(text: str, tmp_path: Path) -> None:
    assert plain_toml(text) is None
    (tmp_path / CONFIG_FILE).write_text(text, "utf-8")
    expected = _tomllib(text)
    if expected is None:
        with pytest.raises(meta_tokenvault.errors.InvalidInput, match="is not valid TOML"):
            Settings.resolve({"home": tmp_path}, environ={})
    elif text.startswith("[tokenvault]\nallow"):
        assert Settings.resolve({"home": tmp_path}, environ={}).allow_insecure_http is True


# --------------------------------------------------------------------------- the end of a fast command
_ENTRY = """
import atexit, sys
class Witness:
    def __del__(self):
        sys.stderr.write("teardown ran\\n")
witness = Witness()  # collected by the interpreter's teardown, if it runs
if sys.argv[1] == "atexit":
    atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
from meta_tokenvault.cli.main import run
sys.argv = ["tokenvault", *sys.argv[2:]]
run()
"""


@pytest.mark.slow
@pytest.mark.parametrize("args,code,teardown", [
    (["token", "reveal", "prod"], 0, False),
    (["exec", "--token", "prod", "--", *CHILD, "7"], 7, False),
    (["token", "list", "--json"], 0, False),
    (["--help"], 0, False),
    (["token", "reveal", "nope"], 3, True),  # an error: the usual exit
    (["token", "show", "prod"], 0, True),  # typer's path: the usual exit
], ids=["reveal", "exec", "list-json", "help", "reveal-error", "typer"])
@pytest.mark.parametrize("registered", [False, True], ids=["plain", "atexit-callback"])
def test_fast_commands_exit_with_their_output_and_code_skipping_only_the_teardown(
        store: Path, args: list[str], code: int, teardown: bool, registered: bool) -> None:
    import subprocess

    from meta_tokenvault.cli.help import CHANGES_OUTPUT

    # without COLUMNS & co. (pytest-xdist's workers set COLUMNS): the stored --help is served, not typer's
    env = {k: v for k, v in _env(store).items() if k not in CHANGES_OUTPUT}
    proc = subprocess.run([sys.executable, "-c", _ENTRY, "atexit" if registered else "-", *args], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120, cwd=ROOT)
    assert proc.returncode == code, proc.stderr
    assert ("teardown ran" in proc.stderr) == (teardown or registered)  # an atexit callback: the usual exit too
    assert ("atexit ran" in proc.stderr) == registered
    if args[:2] == ["token", "reveal"] and code == 0:
        assert proc.stdout == TOKEN + "\n"
    if args[0] == "exec":
        assert proc.stdout == f"{TOKEN[-4:]} - -\n"
    if args[:2] == ["token", "list"]:
        assert [t["label"] for t in json.loads(proc.stdout)] == ["other", "prod"]
    if args == ["--help"]:
        assert "Usage: tokenvault" in proc.stdout
