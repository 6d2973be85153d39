"""The CLI core end to end (in-process runner): init, business add, import, list/show/reveal, audit, keys, doctor,
and the error boundary: one line, a hint, the contract's exit code, never a traceback or a secret."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from cli_support import Result, subprocess_cli

TOKEN = "EAAGsimulatedCliToken" + "k3m4n5" * 20 + "WXYZ"
OTHER = "EAAGsimulatedCliOther" + "p6q7r8" * 20 + "ABCD"


def _clean_error(result: Result, code: int) -> None:
    assert result.code == code, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.err
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("hint: ")), result.err
    assert "Traceback" not in result.err
    for secret in (TOKEN, OTHER):
        assert secret not in result.err and secret not in result.out


@pytest.fixture
def ready(cli, env_home: Path) -> Path:  # type: ignore[no-untyped-def]
    assert cli("init").code == 0
    added = cli("business", "add", "acme", "--business-id", "111", "--app-id", "222",
                stdin="app-secret-xyz-123\nEAAadminTokenForCli9876\n")
    assert added.code == 0, added.err
    return env_home


def _import(cli, label: str = "prod", token: str = TOKEN) -> Result:  # type: ignore[no-untyped-def]
    return cli("token", "import", label, "--business", "acme", "--system-user", "333",
               "--scopes", "whatsapp_business_messaging,whatsapp_business_management", "--waba", "444",
               "--no-verify", stdin=token + "\n")


def test_init_creates_a_private_home_and_is_idempotent(cli, env_home: Path) -> None:  # type: ignore[no-untyped-def]
    first = cli("init", "--json")
    assert first.code == 0, first.err
    data = first.json()
    assert data["created"] is True and data["key_provider"] == "file"
    assert stat.S_IMODE(env_home.stat().st_mode) == 0o700
    for path in env_home.rglob("*"):
        expected = 0o700 if path.is_dir() else 0o600
        assert stat.S_IMODE(path.stat().st_mode) == expected, path
    key_files = sorted(p.read_bytes() for p in (env_home / "keys").glob("master-*.key"))
    second = cli("init", "--json")
    assert second.code == 0 and second.json()["created"] is False
    assert second.json()["key_id"] == data["key_id"]
    assert sorted(p.read_bytes() for p in (env_home / "keys").glob("master-*.key")) == key_files


def test_import_list_show_reveal_roundtrip(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    assert _import(cli).code == 0
    listed = cli("token", "list", "--json")
    assert listed.code == 0 and [t["label"] for t in listed.json()] == ["prod"]
    shown = cli("token", "show", "prod", "--json").json()
    assert shown["status"] == "active" and shown["waba_ids"] == ["444"] and shown["last4"] == "WXYZ"
    assert shown["scopes"] == ["whatsapp_business_messaging", "whatsapp_business_management"]
    assert TOKEN not in listed.out and TOKEN not in json.dumps(shown)
    revealed = cli("token", "reveal", "prod")
    assert revealed.code == 0 and revealed.out == TOKEN + "\n"
    human = cli("token", "show", "prod")
    assert human.code == 0 and "WXYZ" in human.out and TOKEN not in human.out


@pytest.mark.parametrize("stdin", ["", "   \n", "\n\n"], ids=["empty", "spaces", "blank-lines"])
def test_empty_token_on_stdin_is_exit_2(cli, ready: Path, stdin: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("token", "import", "prod", "--business", "acme", "--system-user", "1", "--no-verify", stdin=stdin)
    _clean_error(result, 2)
    assert cli("token", "list", "--json").json() == []


def test_duplicate_label_is_exit_2_and_keeps_the_first(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    assert _import(cli).code == 0
    _clean_error(_import(cli, token=OTHER), 2)
    assert cli("token", "reveal", "prod").out == TOKEN + "\n"


def test_unknown_label_is_exit_3(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    _clean_error(cli("token", "show", "nope"), 3)


def test_not_initialised_says_run_init(cli, env_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("token", "list")
    _clean_error(result, 5)
    assert "tokenvault init" in result.err


def test_wrong_master_key_is_exit_4_and_nothing_changes(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    assert _import(cli).code == 0
    keys = ready / "keys"
    saved = {p.name: p.read_bytes() for p in keys.iterdir()}
    for path in keys.glob("master-*.key"):
        path.unlink()
    import base64

    from meta_tokenvault.crypto import key_id_of

    fresh = os.urandom(32)
    kid = key_id_of(fresh)
    fd = os.open(keys / f"master-{kid}.key", os.O_CREAT | os.O_WRONLY, 0o600)
    os.write(fd, base64.b64encode(fresh))
    os.close(fd)
    (keys / "current").write_text(kid)
    result = cli("token", "reveal", "prod")
    _clean_error(result, 4)
    assert "key" in result.err.lower()
    for path in keys.iterdir():
        path.unlink()
    for name, content in saved.items():
        fd = os.open(keys / name, os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, content)
        os.close(fd)
    assert cli("token", "reveal", "prod").out == TOKEN + "\n"


def test_audit_list_and_verify(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    assert _import(cli).code == 0
    cli("token", "reveal", "prod")
    events = cli("audit", "list", "--json").json()
    assert [e["action"] for e in events] == ["init", "business.add", "token.import", "token.reveal"]
    assert cli("audit", "verify", "--json").json() == {"ok": True, "events": 4}
    import sqlite3

    with sqlite3.connect(ready / "tokenvault.db") as conn:
        conn.execute("UPDATE tv_audit_event SET actor='mallory' WHERE seq=3")
    result = cli("audit", "verify")
    _clean_error(result, 4)
    assert "#3" in result.err


def test_keys_rotate_keeps_tokens_readable(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    assert _import(cli).code == 0
    before = cli("init", "--json").json()["key_id"]
    rotated = cli("keys", "rotate", "--json")
    assert rotated.code == 0, rotated.err
    assert rotated.json()["key_id"] != before and before in rotated.json()["retired"]
    assert cli("token", "reveal", "prod").out == TOKEN + "\n"
    assert len(list((ready / "keys").glob("master-*.key"))) == 1


def test_doctor_reports_checks_as_json(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("doctor", "--json")
    assert result.code == 0, result.err
    names = {c["name"]: c["ok"] for c in result.json()["checks"]}
    assert all(names.values()) and "audit trail" in names and "master key" in names


def test_doctor_reports_the_journal_mode_and_warns_when_sqlite_is_not_in_wal(
        cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    def journal(*url: str) -> dict[str, object]:
        result = cli(*url, "doctor", "--json")
        assert result.code == 0, result.err  # a warning does not fail doctor
        return next(c for c in result.json()["checks"] if c["name"] == "journal mode")

    assert journal()["ok"] is True and str(journal()["detail"]).startswith("wal")
    db = ready / "tokenvault.db"
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    # a URL with options is used as given (no switch to WAL), as a database whose switch failed is left
    check = journal("--db-url", f"sqlite:///{db}?timeout=5")
    assert check["ok"] is False and check["warning"] is True
    assert str(check["detail"]).startswith("delete:") and "no other process" in str(check["fix"])
    assert journal()["ok"] is True  # the next plain open switched it


def test_keyring_provider_without_a_backend_names_the_alternatives(cli, home: Path,  # type: ignore[no-untyped-def]
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    result = cli("init")
    _clean_error(result, 5)
    for name in ("file", "env", "vault-transit"):
        assert name in result.err
    assert not (home / "keys").exists()


def test_read_only_database_is_a_clean_error_and_nothing_is_lost(cli, ready: Path) -> None:  # type: ignore[no-untyped-def]
    assert _import(cli).code == 0
    import sqlite3

    # make the database refuse writes the way a read-only mount does, even for root
    url = f"sqlite:///file:{ready / 'tokenvault.db'}?mode=ro&uri=true"
    result = cli("--db-url", url, "token", "import", "second", "--business", "acme", "--system-user", "1",
                 "--no-verify", stdin=OTHER + "\n")
    _clean_error(result, 5)
    with sqlite3.connect(ready / "tokenvault.db") as conn:
        assert conn.execute("SELECT count(*) FROM tv_token").fetchone() == (1,)
    assert cli("token", "reveal", "prod").out == TOKEN + "\n"


def test_a_real_process_prints_no_traceback_and_the_right_code(ready: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENVAULT_")}
    env.update(TOKENVAULT_HOME=str(ready), TOKENVAULT_KEY_PROVIDER="file")
    result = subprocess_cli(["token", "show", "missing"], env)
    assert result.code == 3 and "Traceback" not in result.err and result.err.startswith("error: ")
    bad = subprocess_cli(["token", "import", "x", "--business", "acme", "--no-verify", "--system-user", "1"],
                         env, stdin="")
    assert bad.code == 2 and "Traceback" not in bad.err
    assert sys.executable  # the subprocess used this interpreter
