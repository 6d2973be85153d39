"""Issue 2, verifiably: every bad input and failure of the vault core, and the proofs, through the real CLI.

The master key lives in a *real* file-backed keyring backend (``keyrings.alt.file.PlaintextKeyring``,
chosen explicitly with ``PYTHON_KEYRING_BACKEND``) whose file is in this test's own temporary
``XDG_DATA_HOME`` (see ``conftest.py``); nothing of our own code is mocked. Each failure must give a
one-line ``error: ...`` plus ``hint: ...`` on stderr (no traceback, no secret), the contract's exit
code, leave every other record readable and overwrite nothing: the bytes of every file under the home
and of the keyring file are compared before and after.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_support import CliRunner, Result, master_key_b64, subprocess_cli

REPO = Path(__file__).resolve().parent.parent
KEYRING_BACKEND = "keyrings.alt.file.PlaintextKeyring"
LABELS = ("prod", "staging", "backup")


def _token(tag: str) -> str:
    """A random token shaped like Meta's (so its base64/hex forms are as unpredictable as a real one's)."""
    return "EAAG" + base64.urlsafe_b64encode(os.urandom(120)).decode().rstrip("=").replace("-", "x") + tag


@dataclass
class Vault:
    """An initialised home with a business and three imported tokens, the key in a file-backed keyring."""

    home: Path
    keyring_dir: Path
    tokens: dict[str, str]
    app_secret: str
    admin_token: str
    extra_secrets: list[str] = field(default_factory=list)

    @property
    def db(self) -> Path:
        return self.home / "tokenvault.db"

    @property
    def keyring_file(self) -> Path:
        return self.keyring_dir / "keyring_pass.cfg"

    def secrets(self) -> list[str]:
        return [*self.tokens.values(), self.app_secret, self.admin_token, *self.extra_secrets]

    def snapshot(self) -> dict[str, bytes]:
        """The bytes of every file under the home and the keyring folder."""
        files: dict[str, bytes] = {}
        for root in (self.home, self.keyring_dir):
            if root.exists():
                for path in sorted(root.rglob("*")):
                    if path.is_file():
                        files[str(path)] = path.read_bytes()
        return files


def _keyring_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Choose the real file-backed keyring explicitly; return the folder that holds its file."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING_BACKEND)
    return Path(os.environ["XDG_DATA_HOME"]) / "python_keyring"


def _make_vault(cli: Callable[..., Result], home: Path, keyring_dir: Path) -> Vault:
    vault = Vault(home=home, keyring_dir=keyring_dir, tokens={label: _token(label[:4].upper()) for label in LABELS},
                  app_secret=_token("APPS"), admin_token=_token("ADMN"))
    init = cli("init", "--json")
    assert init.code == 0, init.err
    added = cli("business", "add", "acme", "--business-id", "111", "--app-id", "222",
                stdin=f"{vault.app_secret}\n{vault.admin_token}\n")
    assert added.code == 0, added.err
    for label, value in vault.tokens.items():
        assert _import(cli, label, value).code == 0
    return vault


def _quiet_cli(args: tuple[str, ...] | list[str], stdin: str = "") -> Result:
    """The real CLI in-process without pytest's capsys (usable from a module-scoped fixture)."""
    import contextlib
    import io

    from meta_tokenvault.cli.main import run

    out, err, saved = io.StringIO(), io.StringIO(), sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = run(list(args))
    finally:
        sys.stdin = saved
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def _template(tmp_path_factory: pytest.TempPathFactory) -> Vault:
    """One vault made through the CLI, copied for each test (making it costs ~0.5 s; copying it ~10 ms)."""
    root = tmp_path_factory.mktemp("template")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("TOKENVAULT_", "VAULT_", "PYTHON_KEYRING")):
                mp.delenv(name)
        mp.setenv("XDG_DATA_HOME", str(root / "data"))
        mp.setenv("XDG_CONFIG_HOME", str(root / "config"))
        mp.setenv("TOKENVAULT_HOME", str(root / "tvhome"))
        keyring_dir = _keyring_env(mp)
        made = _make_vault(lambda *args, stdin="": _quiet_cli(args, stdin), root / "tvhome", keyring_dir)
        # `init` with no provider named picked the keyring, because a usable (explicitly chosen) backend exists
        assert json.loads(_quiet_cli(["doctor", "--json"]).out)["config"]["key provider"] == "keyring"
    assert made.keyring_file.exists()
    return made


@pytest.fixture
def vault(_template: Vault, home: Path, monkeypatch: pytest.MonkeyPatch) -> Vault:
    """A private copy of the template: home (modes kept) and keyring file, in this test's own folders."""
    keyring_dir = _keyring_env(monkeypatch)
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    shutil.copytree(_template.home, home)
    keyring_dir.mkdir(parents=True)
    shutil.copy2(_template.keyring_file, keyring_dir / _template.keyring_file.name)
    return Vault(home=home, keyring_dir=keyring_dir, tokens=dict(_template.tokens), app_secret=_template.app_secret,
                 admin_token=_template.admin_token)


def _import(cli: Callable[..., Result], label: str, value: str) -> Result:
    return cli("token", "import", label, "--business", "acme", "--system-user", "333",
               "--scopes", "whatsapp_business_messaging", "--waba", "444", "--no-verify", stdin=value + "\n")


def _one_line_error(result: Result, code: int, vault: Vault | None = None) -> None:
    """Exit ``code``; stderr is ``error: ...`` and at most a ``hint: ...``; no traceback, no secret anywhere."""
    assert result.code == code, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("error: "), result.err
    assert len(lines) == 2 and lines[1].startswith("hint: "), result.err
    assert "Traceback" not in result.err
    for secret in vault.secrets() if vault else ():
        assert secret not in result.err and secret not in result.out


def _all_readable(cli: CliRunner, vault: Vault) -> None:
    """Every token and both business secrets still decrypt to what was stored."""
    for label, value in vault.tokens.items():
        shown = cli("token", "reveal", label)
        assert (shown.code, shown.out) == (0, value + "\n"), (label, shown.err)
    from meta_tokenvault import TokenVault

    with TokenVault.open(str(vault.home)) as tv:
        business = tv.manager.store.get_business("acme")
        assert tv.manager.app_credentials(business).app_secret.reveal() == vault.app_secret
        assert tv.manager.admin_token(business).reveal() == vault.admin_token
    assert cli("audit", "verify").code == 0


def _sql(db: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(statement, params).fetchall()
    conn.close()
    return rows


def _dump(db: Path) -> list[str]:
    """The database's logical content (what a byte comparison would say, minus SQLite's change counter)."""
    with sqlite3.connect(db) as conn:
        lines = list(conn.iterdump())
    conn.close()
    return lines


def _blob(db: Path, label: str) -> tuple[int, bytes, bytes]:
    ((blob_id, wrapped, ciphertext),) = _sql(db, "SELECT b.id, b.wrapped_key, b.ciphertext FROM tv_secret_blob b "
                                             "JOIN tv_token t ON b.owner_id = t.id WHERE b.kind='token' AND t.label=?",
                                             label)
    return int(blob_id), bytes(wrapped), bytes(ciphertext)  # type: ignore[call-overload, arg-type]


# =============================================================================================== wrong master key
def _keyring_holds_a_different_key(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keyring entry of the store's key id now holds another 32-byte key (restored from the wrong backup)."""
    from keyring.core import load_keyring

    ring = load_keyring(KEYRING_BACKEND)
    key_id = ring.get_password("tokenvault", "current-key-id")
    ring.set_password("tokenvault", f"master-key:{key_id}", master_key_b64())


WRONG_KEYS = {
    "keyring-of-another-service": lambda vault, mp: mp.setenv("TOKENVAULT_KEYRING_SERVICE", "tokenvault-other"),
    "keyring-entry-replaced": _keyring_holds_a_different_key,
    "env-key-of-another-store": lambda vault, mp: (mp.setenv("TOKENVAULT_KEY_PROVIDER", "env"),
                                                   mp.setenv("TOKENVAULT_MASTER_KEY", master_key_b64())),
}


@pytest.mark.parametrize("wrong", list(WRONG_KEYS), ids=list(WRONG_KEYS))
def test_wrong_master_key_is_exit_4_for_every_command_and_nothing_is_created_or_overwritten(
        cli: CliRunner, vault: Vault, monkeypatch: pytest.MonkeyPatch, wrong: str) -> None:
    """Reads, writes, ``init`` and ``keys rotate`` all refuse before writing: no row sealed under the wrong key
    (``business add`` used to store its secrets under it), no stray new key in the keyring (``init`` and
    ``keys rotate`` used to create one before noticing)."""
    original_keyring = vault.keyring_file.read_bytes()
    WRONG_KEYS[wrong](vault, monkeypatch)
    before = vault.snapshot()
    commands: list[tuple[tuple[str, ...], str]] = [
        (("token", "reveal", "prod"), ""),
        (("token", "import", "new-one", "--business", "acme", "--system-user", "3", "--no-verify"), _token("NEW1")),
        (("business", "add", "beta", "--business-id", "5", "--app-id", "6"), f"{_token('APP2')}\n{_token('ADM2')}"),
        (("keys", "rotate"), ""),
        (("init",), ""),
    ]
    for args, stdin in commands:
        result = cli(*args, stdin=stdin + "\n")
        _one_line_error(result, 4, vault)
        assert "master key" in result.err, result.err
        assert vault.snapshot() == before, f"{' '.join(args)} changed files"
    doctor = cli("doctor", "--json")
    assert doctor.code == 5 and not {c["name"]: c["ok"] for c in doctor.json()["checks"]}["master key"]
    assert vault.snapshot() == before
    monkeypatch.delenv("TOKENVAULT_KEYRING_SERVICE", raising=False)
    monkeypatch.delenv("TOKENVAULT_KEY_PROVIDER", raising=False)
    monkeypatch.delenv("TOKENVAULT_MASTER_KEY", raising=False)
    if wrong == "keyring-entry-replaced":
        vault.keyring_file.write_bytes(original_keyring)
    assert vault.keyring_file.read_bytes() == original_keyring
    assert [t["label"] for t in cli("token", "list", "--json").json()] == sorted(LABELS)
    _all_readable(cli, vault)


# ======================================================================================= tampered ciphertexts
def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize("column", ["ciphertext", "wrapped_key"])
@pytest.mark.parametrize("where", [0, 5, -20, -1], ids=["format-byte", "nonce", "body", "tag"])
def test_a_flipped_byte_is_exit_4_for_that_token_only_and_the_row_is_not_touched(
        cli: CliRunner, vault: Vault, column: str, where: int) -> None:
    blob_id, wrapped, ciphertext = _blob(vault.db, "prod")
    original = ciphertext if column == "ciphertext" else wrapped
    _sql(vault.db, f"UPDATE tv_secret_blob SET {column}=? WHERE id=?", _flip(original, where), blob_id)
    before = vault.snapshot()
    _one_line_error(cli("token", "reveal", "prod"), 4, vault)
    assert vault.snapshot() == before  # nothing written, not even an audit event
    rotate = cli("keys", "rotate")
    if column == "wrapped_key":  # it cannot re-wrap that data key: it names the record and stops there
        _one_line_error(rotate, 4, vault)
        assert "token #" in rotate.err and "keys rotate" in rotate.err
        assert _blob(vault.db, "prod")[1] == _flip(original, where)  # not "repaired"
    else:  # envelope: only data keys are re-wrapped, the (tampered) ciphertext is carried over byte for byte
        assert rotate.code == 0, rotate.err
        assert _blob(vault.db, "prod")[2] == _flip(original, where)
        _one_line_error(cli("token", "reveal", "prod"), 4, vault)
    for label in ("staging", "backup"):
        assert cli("token", "reveal", label).out == vault.tokens[label] + "\n"
    _sql(vault.db, f"UPDATE tv_secret_blob SET {column}=? WHERE id=?", original, blob_id)
    assert cli("keys", "rotate").code == 0  # the interrupted rotation finishes once the row is restored
    _all_readable(cli, vault)


def test_a_flipped_byte_in_the_fingerprint_key_stops_writes_and_audited_reads(cli: CliRunner, vault: Vault) -> None:
    """The audit head's MAC key derives from the fingerprint key: without it no event can be chained, so a read
    that must be audited (reveal) is refused too (exit 4, nothing written), and works again once it is restored."""
    ((wrapped,),) = _sql(vault.db, "SELECT wrapped FROM tv_wrapped_key WHERE purpose='fingerprint'")
    _sql(vault.db, "UPDATE tv_wrapped_key SET wrapped=? WHERE purpose='fingerprint'", _flip(bytes(wrapped), -3))  # type: ignore[arg-type]
    before = vault.snapshot()
    _one_line_error(_import(cli, "new-one", _token("NEW2")), 4, vault)
    _one_line_error(cli("init"), 4, vault)
    for label in vault.tokens:
        _one_line_error(cli("token", "reveal", label), 4, vault)
    assert vault.snapshot() == before
    _sql(vault.db, "UPDATE tv_wrapped_key SET wrapped=? WHERE purpose='fingerprint'", bytes(wrapped))  # type: ignore[arg-type]
    for label, value in vault.tokens.items():
        assert cli("token", "reveal", label).out == value + "\n"


SWAPS = {
    # two tokens' ciphertexts exchanged; their wrapped data keys stay
    "ciphertexts": ("UPDATE tv_secret_blob SET ciphertext = CASE id WHEN :a THEN :cb ELSE :ca END "
                    "WHERE id IN (:a, :b)"),
    "wrapped-keys": ("UPDATE tv_secret_blob SET wrapped_key = CASE id WHEN :a THEN :wb ELSE :wa END "
                     "WHERE id IN (:a, :b)"),
    # whole envelopes (data key and ciphertext together) moved onto the other record
    "whole-rows": ("UPDATE tv_secret_blob SET wrapped_key = CASE id WHEN :a THEN :wb ELSE :wa END, "
                   "ciphertext = CASE id WHEN :a THEN :cb ELSE :ca END WHERE id IN (:a, :b)"),
}


@pytest.mark.parametrize("swap", list(SWAPS), ids=list(SWAPS))
def test_two_rows_swapped_fail_to_open_and_swapping_back_restores_them(cli: CliRunner, vault: Vault,
                                                                      swap: str) -> None:
    a, wa, ca = _blob(vault.db, "prod")
    b, wb, cb = _blob(vault.db, "staging")
    with sqlite3.connect(vault.db) as conn:
        conn.execute(SWAPS[swap], {"a": a, "b": b, "wa": wa, "wb": wb, "ca": ca, "cb": cb})
    conn.close()
    before = vault.snapshot()
    for label in ("prod", "staging"):
        _one_line_error(cli("token", "reveal", label), 4, vault)
    assert vault.snapshot() == before  # a failed reveal writes nothing, not even an audit event
    assert cli("token", "reveal", "backup").out == vault.tokens["backup"] + "\n"
    with sqlite3.connect(vault.db) as conn:
        conn.execute(SWAPS[swap], {"a": a, "b": b, "wa": wb, "wb": wa, "ca": cb, "cb": ca})
    conn.close()
    _all_readable(cli, vault)


def test_a_token_envelope_moved_onto_the_app_secret_does_not_open(cli: CliRunner, vault: Vault) -> None:
    """Associated data names the kind too: a token's envelope copied over the app secret's is refused."""
    _, wrapped, ciphertext = _blob(vault.db, "prod")
    _sql(vault.db, "UPDATE tv_secret_blob SET wrapped_key=?, ciphertext=? WHERE kind='app_secret'", wrapped, ciphertext)
    from meta_tokenvault import IntegrityError, TokenVault

    with TokenVault.open(str(vault.home)) as tv, pytest.raises(IntegrityError) as info:
        tv.manager.app_credentials(tv.manager.store.get_business("acme"))
    assert info.value.exit_code == 4
    assert cli("token", "reveal", "prod").out == vault.tokens["prod"] + "\n"


def _swap_labels(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tv_token SET label='tmp' WHERE label='prod'")
        conn.execute("UPDATE tv_token SET label='prod' WHERE label='staging'")
        conn.execute("UPDATE tv_token SET label='staging' WHERE label='tmp'")
    conn.close()


@pytest.mark.parametrize("path", ["fast", "full"])
def test_swapped_labels_do_not_hand_out_the_other_token(cli: CliRunner, vault: Vault, path: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Envelopes are bound to the label too: swapping two tokens' labels in the database is exit 4 for both
    (on the fast read path and the full one), and swapping them back restores everything."""
    if path == "full":
        monkeypatch.setenv("TOKENVAULT_DB_URL", f"sqlite:///{vault.db}?timeout=30")  # with options: no fast path
    _swap_labels(vault.db)
    for label in ("prod", "staging"):
        result = cli("token", "reveal", label)
        _one_line_error(result, 4, vault)
        assert vault.tokens["prod"] not in result.out and vault.tokens["staging"] not in result.out
    _swap_labels(vault.db)
    _all_readable(cli, vault)


# ======================================================================================= corrupt database file
def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        if how == "truncated-half":
            fh.truncate(size // 2)
        elif how == "truncated-one-page":
            fh.truncate(4096)
        elif how == "truncated-mid-header":
            fh.truncate(50)
        elif how == "garbage-header":
            fh.write(os.urandom(100))
        elif how == "garbage-pages":
            fh.seek(4096)
            fh.write(os.urandom(size - 4096))


@pytest.mark.parametrize("how", ["truncated-half", "truncated-one-page", "truncated-mid-header", "garbage-header",
                                 "garbage-pages"])
def test_a_truncated_or_corrupt_database_is_exit_4_and_never_rewritten(cli: CliRunner, vault: Vault,
                                                                       how: str) -> None:
    backup = vault.db.read_bytes()
    _damage(vault.db, how)
    before = vault.snapshot()
    for args, stdin in [(("token", "list"), ""), (("token", "reveal", "prod"), ""), (("audit", "verify"), ""),
                        (("token", "import", "new-one", "--business", "acme", "--system-user", "3", "--no-verify"),
                         _token("NEW3")),
                        (("keys", "rotate"), ""), (("init",), "")]:
        result = cli(*args, stdin=stdin + "\n")
        _one_line_error(result, 4, vault)
        assert "corrupt" in result.err and "backup" in result.err, result.err
        assert vault.snapshot() == before, f"{' '.join(args)} changed files"  # incl. no new journal, no new key
    vault.db.write_bytes(backup)
    _all_readable(cli, vault)


def test_an_emptied_database_file_says_truncated_or_never_initialised(cli: CliRunner, vault: Vault) -> None:
    """A 0-byte file is what a crash inside ``init`` leaves too, so it cannot be called corrupt: exit 5, and the
    message names both causes; nothing writes to it except an explicit ``init``."""
    backup = vault.db.read_bytes()
    vault.db.write_bytes(b"")
    before = vault.snapshot()
    for args in (("token", "list"), ("token", "reveal", "prod"), ("keys", "rotate")):
        result = cli(*args)
        _one_line_error(result, 5, vault)
        assert "empty (0 bytes)" in result.err and "truncated" in result.err and "backup" in result.err
    assert vault.snapshot() == before
    vault.db.write_bytes(backup)
    _all_readable(cli, vault)


# ============================================================================================ bad stdin input
@pytest.mark.parametrize("stdin", ["", "\n", "   \n", "\t\n", "\r\n", " \t \r\n", "\n{token}\n"],
                         ids=["nothing", "newline", "spaces", "tab", "crlf", "mixed", "token-on-second-line"])
def test_an_empty_or_whitespace_token_on_stdin_is_exit_2_and_stores_nothing(cli: CliRunner, vault: Vault,
                                                                            stdin: str) -> None:
    extra = _token("LATE")
    vault.extra_secrets.append(extra)
    before = vault.snapshot()
    result = cli("token", "import", "new-one", "--business", "acme", "--system-user", "3", "--no-verify",
                 stdin=stdin.format(token=extra))
    _one_line_error(result, 2, vault)
    assert "empty" in result.err and "stdin" in result.err
    added = cli("business", "add", "beta", "--business-id", "5", "--app-id", "6",
                stdin=f"{_token('APP3')}\n{stdin.format(token=extra)}")
    _one_line_error(added, 2, vault)
    assert "admin access token" in added.err
    assert vault.snapshot() == before  # no token row, no business row, no audit event
    _all_readable(cli, vault)


# ============================================================================================ duplicate label
@pytest.mark.parametrize("value", ["other", "same"], ids=["another-token", "the-same-token"])
def test_a_duplicate_label_is_exit_2_and_the_stored_token_is_untouched(cli: CliRunner, vault: Vault,
                                                                       value: str) -> None:
    other = _token("DUPL") if value == "other" else vault.tokens["prod"]
    vault.extra_secrets.append(other)
    before = vault.snapshot()
    result = _import(cli, "prod", other)
    _one_line_error(result, 2, vault)
    assert "'prod' exists already" in result.err and "token rotate" in result.err
    dup_business = cli("business", "add", "acme", "--business-id", "9", "--app-id", "9",
                       stdin=f"{_token('APP4')}\n{_token('ADM4')}\n")
    _one_line_error(dup_business, 2, vault)
    assert vault.snapshot() == before
    _all_readable(cli, vault)


# ===================================================================================== missing keyring backend
def test_init_without_a_keyring_backend_names_the_other_providers_and_creates_nothing(
        cli: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """keyring's own discovery on this headless box (config in the test's XDG_CONFIG_HOME naming the 'fail'
    backend, as keyring reports when nothing usable exists) — not PYTHON_KEYRING_BACKEND."""
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "python_keyring"
    config.mkdir(parents=True)
    (config / "keyringrc.cfg").write_text("[backend]\ndefault-keyring=keyring.backends.fail.Keyring\n")
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    import keyring.core

    monkeypatch.setattr(keyring.core, "_keyring_backend", None)  # forget a backend cached by another test
    result = cli("init")
    _one_line_error(result, 5)
    assert "No usable OS keyring" in result.err
    for name in ("--key-provider file", "--key-provider env", "--key-provider vault-transit"):
        assert name in result.err
    assert not home.exists()  # no half-made home, no plaintext key file as a "fallback"


def test_a_plaintext_keyring_found_by_discovery_is_refused_not_used(cli: CliRunner, home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "python_keyring"
    config.mkdir(parents=True)
    (config / "keyringrc.cfg").write_text(f"[backend]\ndefault-keyring={KEYRING_BACKEND}\n")
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    import keyring.core

    monkeypatch.setattr(keyring.core, "_keyring_backend", None)
    result = cli("init")
    _one_line_error(result, 5)
    assert "does not protect secrets" in result.err
    assert not home.exists() and not (Path(os.environ["XDG_DATA_HOME"]) / "python_keyring").exists()


def test_a_keyring_backend_gone_after_init_is_exit_5_everywhere_and_nothing_changes(
        cli: CliRunner, vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cron job without the desktop session: the recorded provider is keyring, no backend works."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    before = vault.snapshot()
    for args, stdin in [(("token", "reveal", "prod"), ""), (("keys", "rotate"), ""), (("init",), ""),
                        (("token", "import", "new-one", "--business", "acme", "--system-user", "3", "--no-verify"),
                         _token("NEW4")),
                        (("business", "add", "beta", "--business-id", "5", "--app-id", "6"),
                         f"{_token('APP5')}\n{_token('ADM5')}")]:
        result = cli(*args, stdin=stdin + "\n")
        _one_line_error(result, 5, vault)
        assert "keyring" in result.err and "--key-provider file" in result.err, result.err
    doctor = cli("doctor", "--json")
    assert doctor.code == 5
    assert vault.snapshot() == before
    assert [t["label"] for t in cli("token", "list", "--json").json()] == sorted(LABELS)  # metadata needs no key
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING_BACKEND)
    _all_readable(cli, vault)


# ============================================================================================= read-only home
def _read_only_runner(probe_dir: Path) -> list[str] | None:
    """A command prefix that runs a shell in a private mount namespace where a read-only bind mount works.

    ``unshare -m`` (root with CAP_SYS_ADMIN, as here) or ``unshare -rm`` (an unprivileged user namespace).
    None when neither can make a read-only mount on this machine.
    """
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return None
    probe_dir.mkdir(exist_ok=True)
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && ! touch "$1/probe" 2>/dev/null'
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):
        done = subprocess.run([*prefix, "sh", "-c", script, "sh", str(probe_dir)], capture_output=True, timeout=30)
        if done.returncode == 0 and not (probe_dir / "probe").exists():
            return prefix
    return None


_DRIVER = """
import contextlib, io, json, sys
from meta_tokenvault.cli.main import run
results = []
for args, stdin in json.load(open(sys.argv[1])):
    out, err = io.StringIO(), io.StringIO()
    sys.stdin = io.StringIO(stdin)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(args)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def _run_with_read_only(folder: Path, commands: list[tuple[list[str], str]], tmp_path: Path) -> list[Result]:
    """Run tokenvault commands (one process) while ``folder`` is a read-only mount, the way a read-only volume,
    an ``ro`` bind mount in a container or a full-disk remount looks to tokenvault.

    Root ignores file modes (and chattr needs an ext* file system and CAP_LINUX_IMMUTABLE), so a real read-only
    mount in a private mount namespace is the honest way to make the home unwritable for root. As a non-root
    user without user namespaces, mode 0500 is real too. Otherwise the test is skipped, saying why.
    """
    (tmp_path / "commands.json").write_text(json.dumps(commands))
    (tmp_path / "driver.py").write_text(_DRIVER)
    python = [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "commands.json")]
    prefix = _read_only_runner(tmp_path / "probe")
    if prefix is not None:
        script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
        argv = [*prefix, "sh", "-c", script, "sh", str(folder), *python]
    elif os.geteuid() != 0:
        folder.chmod(0o500)
        argv = python
    else:
        pytest.skip("root without mount namespaces: no honest way to make a folder read-only for root here")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    finally:
        folder.chmod(0o700)
    assert done.returncode == 0, done.stderr
    return [Result(r["code"], r["out"], r["err"]) for r in json.loads(done.stdout.splitlines()[-1])]


@pytest.mark.parametrize("journal", ["wal", "rollback-journal"])
def test_a_read_only_home_serves_metadata_refuses_writes_with_exit_5_and_changes_nothing(
        cli: CliRunner, vault: Vault, tmp_path: Path, journal: str) -> None:
    """Reads that need no audit event work; every write (and ``token reveal``, which must be audited) is exit 5;
    ``keys rotate`` fails at its first database write, *before* making a new key in the (writable) keyring.
    In WAL mode (what tokenvault makes) with no ``-wal``/``-shm`` (a clean close), and in rollback-journal mode
    (a database made before WAL, never opened for writing since)."""
    if journal == "rollback-journal":
        conn = sqlite3.connect(vault.db)
        try:
            assert conn.execute("PRAGMA journal_mode=DELETE").fetchone() == ("delete",)
        finally:
            conn.close()
    assert not (vault.home / "tokenvault.db-wal").exists() and not (vault.home / "tokenvault.db-shm").exists()
    before = vault.snapshot()
    import_args = ["token", "import", "new-one", "--business", "acme", "--system-user", "3", "--no-verify"]
    results = _run_with_read_only(vault.home, [
        (["token", "list", "--json"], ""), (["token", "show", "prod", "--json"], ""), (["audit", "verify"], ""),
        (["init"], ""), (["token", "reveal", "prod"], ""), (import_args, _token("NEW5") + "\n"),
        (["business", "add", "beta", "--business-id", "5", "--app-id", "6"], f"{_token('A6')}\n{_token('B6')}\n"),
        (["keys", "rotate"], ""),
    ], tmp_path)
    listed, shown, verified, init, *writes = results
    assert listed.code == 0 and [t["label"] for t in listed.json()] == sorted(LABELS)
    assert shown.code == 0 and shown.json()["label"] == "prod"
    assert verified.code == 0 and init.code == 0, (verified.err, init.err)
    for result in writes:
        _one_line_error(result, 5, vault)
        assert "read-only" in result.err and result.out == ""
    assert vault.snapshot() == before
    _all_readable(cli, vault)


_CRASH_AFTER_IMPORT = """
import os, signal, sqlite3, sys
from meta_tokenvault.cli.main import run
holder = sqlite3.connect(sys.argv[1])  # another connection open: the import's close neither checkpoints nor deletes
holder.execute("PRAGMA wal_autocheckpoint=0")
holder.execute("SELECT count(*) FROM tv_token").fetchone()
code = run(["token", "import", "after-crash", "--business", "acme", "--system-user", "333", "--no-verify"])
if code == 0:
    os.kill(os.getpid(), signal.SIGKILL)  # -wal (holding the import) and -shm left behind
sys.exit(code)
"""


def test_a_read_only_home_reads_what_a_killed_process_left_in_the_wal(vault: Vault, tmp_path: Path) -> None:
    """A process killed with the database open leaves its committed transactions in ``-wal`` (not yet in the
    main file). A read-only home then reads them through the ``-wal``: the database is not opened ``immutable``
    (which would ignore the ``-wal`` and show the database as it was before)."""
    (tmp_path / "crash.py").write_text(_CRASH_AFTER_IMPORT)
    db = vault.home / "tokenvault.db"
    done = subprocess.run([sys.executable, str(tmp_path / "crash.py"), str(db)], input=_token("KIL1") + "\n",
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert (vault.home / "tokenvault.db-wal").stat().st_size > 0 and (vault.home / "tokenvault.db-shm").exists()
    main_file = sqlite3.connect(f"{db.as_uri()}?immutable=1", uri=True)  # the main file alone: without the import
    try:
        assert main_file.execute("SELECT count(*) FROM tv_token WHERE label = 'after-crash'").fetchone() == (0,)
    finally:
        main_file.close()
    before = vault.snapshot()
    listed, shown = _run_with_read_only(vault.home, [(["token", "list", "--json"], ""),
                                                      (["token", "show", "after-crash", "--json"], "")], tmp_path)
    assert listed.code == 0 and [t["label"] for t in listed.json()] == sorted([*LABELS, "after-crash"]), listed.err
    assert shown.code == 0 and shown.json()["label"] == "after-crash", shown.err
    assert vault.snapshot() == before


def test_init_in_a_read_only_home_is_exit_5_and_makes_no_key(cli: CliRunner, home: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    keyring_dir = _keyring_env(monkeypatch)
    home.mkdir(mode=0o700)
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    for provider in ("keyring", "file"):
        (init,) = _run_with_read_only(home, [(["--key-provider", provider, "init"], "")], tmp_path)
        _one_line_error(init, 5)
        assert "Read-only file system" in init.err and "writable" in init.err
    assert list(home.iterdir()) == [] and not keyring_dir.exists()


@pytest.mark.parametrize("layout", ["home-is-a-file", "parent-is-a-file"])
def test_a_home_path_blocked_by_a_file_is_a_one_line_error_and_the_file_is_kept(
        cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    """Another home that cannot be written, without privileges: a file where the home (or its parent) should be.
    Reading config.toml there fails first: exit 2 (a bad TOKENVAULT_HOME setting), one line, the file untouched."""
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a folder")
    monkeypatch.setenv("TOKENVAULT_HOME", str(blocker if layout == "home-is-a-file" else blocker / "tokenvault"))
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "file")
    for args in (("init",), ("token", "list")):
        result = cli(*args)
        _one_line_error(result, 2)
        assert "is not a folder: a file is in the way" in result.err and str(blocker) in result.err
    assert blocker.read_bytes() == b"not a folder" and sorted(tmp_path.iterdir()) == [blocker]


# ============================================================================================ no plaintext at rest
def _forms(secret: str) -> list[bytes]:
    """The secret and its encodings (base64 at every alignment, hex, UTF-16), and its middle part alone."""
    raw = secret.encode()
    middle = raw[4:-4]  # without the common 'EAAG' prefix and the last4 that is stored on purpose
    forms = [raw, middle, raw.hex().encode(), raw.hex().upper().encode(), secret.encode("utf-16-le")]
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            forms.append(encode(raw[shift:])[4:-4])  # aligned at each offset; edges depend on neighbours
    return forms


@pytest.mark.parametrize("journal", ["checkpointed", "wal"])
def test_no_plaintext_at_rest_and_files_private_from_birth(cli: CliRunner, home: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch, journal: str) -> None:
    """With a permissive umask (0): the home is 0700 and every file 0600 when first seen, including the SQLite
    journal / WAL files; and neither the database, its WAL, the audit trail, the keyring file nor any file under
    the home holds any token or business secret in any usual encoding. The database is in WAL mode (tokenvault
    makes it so); the WAL variant holds a reader open, so every page the commands wrote stays in the -wal file
    to be scanned."""
    keyring_dir = _keyring_env(monkeypatch)
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    old_umask = os.umask(0)
    reader = None
    try:
        vault = _make_vault(cli, home, keyring_dir)
        if journal == "wal":
            reader = sqlite3.connect(vault.db)
            assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # as init made it
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM tv_token").fetchone()  # a read snapshot: no checkpoint past it
            extra = _token("WALX")
            vault.extra_secrets.append(extra)
            assert _import(cli, "wal-one", extra).code == 0
            assert (home / "tokenvault.db-wal").stat().st_size > 0
        outputs = [cli("token", "reveal", "prod").out]
        assert cli("keys", "rotate").code == 0
        for args in (("audit", "list", "--json"), ("token", "list", "--json"), ("token", "show", "prod", "--json"),
                     ("doctor", "--json"), ("audit", "verify")):
            result = cli(*args)
            outputs += [result.out, result.err]
        files = {p: p.read_bytes() for root in (home, keyring_dir) for p in root.rglob("*") if p.is_file()}
        assert {p.name for p in files} >= {"tokenvault.db", "config.toml", "keyring_pass.cfg"}
        if journal == "wal":
            assert {"tokenvault.db-wal", "tokenvault.db-shm"} <= {p.name for p in files}
        for path in home.rglob("*"):
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
    finally:
        os.umask(old_umask)
        if reader is not None:
            reader.close()
    audit_rows = repr(_sql(vault.db, "SELECT * FROM tv_audit_event")).encode()
    blobs = {"audit rows": audit_rows, "command output": "".join(outputs[1:]).encode()}
    assert outputs[0] == vault.tokens["prod"] + "\n"  # the one deliberate way out
    for secret in vault.secrets():
        for form in _forms(secret):
            for path, content in [*files.items(), *blobs.items()]:
                assert form not in content, f"secret material ({len(form)} bytes) found in {path}"


# ================================================================================================ audit chain
AUDIT_TAMPERING = {
    "edited-actor": (["UPDATE tv_audit_event SET actor='mallory@elsewhere' WHERE seq=3"], 3),
    "edited-time": (["UPDATE tv_audit_event SET at='2020-01-01 00:00:00.000000' WHERE seq=4"], 4),
    "edited-details": (["UPDATE tv_audit_event SET details='{}' WHERE seq=2"], 2),
    "edited-hash": (["UPDATE tv_audit_event SET hash=substr(hash, 2) || '0' WHERE seq=5"], 5),
    "deleted-first": (["DELETE FROM tv_audit_event WHERE seq=1"], 2),
    "deleted-middle": (["DELETE FROM tv_audit_event WHERE seq=3"], 4),
    "deleted-newest": (["DELETE FROM tv_audit_event WHERE seq=(SELECT max(seq) FROM tv_audit_event)"], 5),
    "reordered-rows": ([  # events 2 and 3 change places in storage order, each intact
        "CREATE TEMP TABLE t AS SELECT * FROM tv_audit_event WHERE seq IN (2, 3)",
        "DELETE FROM tv_audit_event WHERE seq IN (2, 3)",
        "INSERT INTO tv_audit_event SELECT (SELECT id FROM t WHERE seq=3), seq, at, actor, action, subject, details, "
        "prev_hash, hash FROM t WHERE seq=2",
        "INSERT INTO tv_audit_event SELECT (SELECT id FROM t WHERE seq=2), seq, at, actor, action, subject, details, "
        "prev_hash, hash FROM t WHERE seq=3"], 3),
    "renumbered": (["UPDATE tv_audit_event SET seq=seq+100 WHERE seq IN (2, 3)",
                    "UPDATE tv_audit_event SET seq=3 WHERE seq=102", "UPDATE tv_audit_event SET seq=2 WHERE seq=103"],
                   3),
}


@pytest.mark.parametrize("tamper", list(AUDIT_TAMPERING), ids=list(AUDIT_TAMPERING))
def test_audit_verify_exits_4_naming_the_first_bad_event(cli: CliRunner, vault: Vault, tamper: str) -> None:
    statements, first_bad = AUDIT_TAMPERING[tamper]
    assert cli("audit", "verify", "--json").json() == {"ok": True, "events": 5}
    with sqlite3.connect(vault.db) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()
    result = cli("audit", "verify")
    _one_line_error(result, 4, vault)
    first_line = result.err.splitlines()[0]
    assert re.search(rf"#{first_bad}\b", first_line), result.err
    as_json = cli("audit", "verify", "--json")
    assert as_json.code == 4 and as_json.out == ""  # --json prints nothing but the document, and here none
    for label, value in vault.tokens.items():  # a broken trail does not lock anyone out of their tokens
        assert cli("token", "reveal", label).out == value + "\n"


def test_a_database_writer_who_rebuilds_the_audit_chain_is_caught_by_the_keyed_head(cli: CliRunner,
                                                                                   vault: Vault) -> None:
    """The hashes are plain SHA-256, so someone who can write the database can edit an event and recompute every
    later hash; the head's MAC needs the master key, so the rebuilt head does not verify (SECURITY.md)."""
    from meta_tokenvault.adapters.store_sql import audit_hash
    from meta_tokenvault.types import as_utc

    exported = cli("audit", "list", "--json").json()
    with sqlite3.connect(vault.db) as conn:
        conn.execute("UPDATE tv_audit_event SET actor='mallory@elsewhere' WHERE seq=3")
        rows = conn.execute("SELECT seq, at, actor, action, subject, details FROM tv_audit_event ORDER BY seq")
        prev = "0" * 64
        from datetime import datetime

        for seq, at, actor, action, subject, details in rows.fetchall():
            digest = audit_hash(seq, prev, as_utc(datetime.fromisoformat(at)), actor, action, subject, details)
            conn.execute("UPDATE tv_audit_event SET prev_hash=?, hash=? WHERE seq=?", (prev, digest, seq))
            prev = digest
        conn.execute("UPDATE tv_setting SET value=? WHERE key='audit_head'", (json.dumps({"seq": 5, "hash": prev}),))
    conn.close()
    verified = cli("audit", "verify")
    assert verified.code == 4 and "MAC" in verified.err
    assert cli("audit", "list", "--json").json()[4]["hash"] != exported[4]["hash"]  # an export tells too


# ======================================================================================= keys rotate, SIGKILLed
def _keyring_key_ids(service: str = "tokenvault") -> list[str]:
    from keyring.core import load_keyring

    raw = load_keyring(KEYRING_BACKEND).get_password(service, "key-ids") or ""
    return [k for k in raw.split(",") if k]


def _kill_keys_rotate_at(point: str) -> None:
    env = {**os.environ, "TOKENVAULT_TEST_MODE": "1", "TOKENVAULT_TEST_CRASH_AFTER": point}
    crashed = subprocess_cli(["keys", "rotate"], env)
    assert crashed.code == -signal.SIGKILL, (point, crashed.code, crashed.err)


@pytest.mark.parametrize("point", ["keys.created", "keys.target", "keys.rewrapped:1", "keys.rewrapped:4",
                                   "keys.rewrapped:5", "keys.fingerprint", "keys.retired"])
def test_keys_rotate_killed_at_any_point_leaves_everything_readable_and_a_rerun_finishes(
        cli: CliRunner, vault: Vault, point: str) -> None:
    """A real ``kill -9`` of a ``tokenvault keys rotate`` process (5 envelopes: 3 tokens, app secret, admin token)
    right after: the new key is made; the rotation target is recorded; the 1st / 4th / last envelope is re-wrapped
    (each its own compare-and-swap transaction); the fingerprint key is re-wrapped; the old key is retired.
    Every envelope is then under the old or the new key, both are in the keyring, everything decrypts; the
    lease the dead process left is taken over at once and a second run finishes the job."""
    old_ids = _keyring_key_ids()
    assert len(old_ids) == 1
    _kill_keys_rotate_at(point)
    held = _keyring_key_ids()
    in_use = {row[0] for row in _sql(vault.db, "SELECT key_id FROM tv_secret_blob UNION "
                                               "SELECT key_id FROM tv_wrapped_key")}
    assert in_use <= set(held) and len(held) <= 2, (in_use, held)
    if point != "keys.created":  # from here on the store knows a rotation is unfinished, and doctor says so
        doctor = {c["name"]: c for c in cli("doctor", "--json").json()["checks"]}
        assert not doctor["master key rotation"]["ok"] and "keys rotate" in doctor["master key rotation"]["fix"]
    _all_readable(cli, vault)
    finished = cli("keys", "rotate", "--json")
    assert finished.code == 0, finished.err
    new_id = finished.json()["key_id"]
    assert _keyring_key_ids() == [new_id] and new_id not in old_ids
    assert {row[0] for row in _sql(vault.db, "SELECT key_id FROM tv_secret_blob")} == {new_id}
    _all_readable(cli, vault)
    for path in vault.home.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


def test_keys_rotate_with_the_file_provider_survives_a_kill_at_every_step_in_turn(
        cli: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same with key files: one rotation killed again and again, each run getting one step further."""
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "file")
    vault = _make_vault(cli, home, home / "keys")
    old = {p.name for p in (home / "keys").glob("master-*.key")}
    for point in ("keys.created", "keys.rewrapped:2", "keys.retired"):
        _kill_keys_rotate_at(point)
        _all_readable(cli, vault)
    finished = cli("keys", "rotate", "--json")
    assert finished.code == 0, finished.err
    assert {p.name for p in (home / "keys").glob("master-*.key")} == {f"master-{finished.json()['key_id']}.key"}
    assert not old & {p.name for p in (home / "keys").glob("master-*.key")}
    _all_readable(cli, vault)


def test_keys_rotate_interrupted_by_ctrl_c_says_how_to_finish_and_frees_its_lease(cli: CliRunner,
                                                                                  vault: Vault) -> None:
    env = {**os.environ, "TOKENVAULT_TEST_MODE": "1", "TOKENVAULT_TEST_CRASH_AFTER": "keys.rewrapped:2",
           "TOKENVAULT_TEST_CRASH_SIGNAL": "INT"}
    interrupted = subprocess_cli(["keys", "rotate"], env)
    _one_line_error(interrupted, 130, vault)
    assert "readable" in interrupted.err and "`tokenvault keys rotate` again" in interrupted.err
    assert _sql(vault.db, "SELECT * FROM tv_lease") == []
    _all_readable(cli, vault)
    assert cli("keys", "rotate").code == 0
    assert {c["name"] for c in cli("doctor", "--json").json()["checks"]} >= {"master key"}
    _all_readable(cli, vault)


def test_a_second_keys_rotate_while_one_runs_is_exit_8_and_changes_nothing(cli: CliRunner, vault: Vault) -> None:
    """Two concurrent runs could retire each other's new key; the second one stops before making a key."""
    from datetime import timedelta

    from meta_tokenvault import TokenVault
    from meta_tokenvault.types import utcnow

    with TokenVault.open(str(vault.home)) as tv:  # a live run on another host holds the lease
        assert tv.manager.store.acquire_lease("keys-rotate", "otherhost|4242|abcd", utcnow(), timedelta(minutes=10))
    before = vault.snapshot()
    result = cli("keys", "rotate")
    _one_line_error(result, 8, vault)
    assert "keys rotate" in result.err and vault.snapshot() == before
    with TokenVault.open(str(vault.home)) as tv:
        tv.manager.store.release_lease("keys-rotate", "otherhost|4242|abcd")
    assert cli("keys", "rotate").code == 0
    _all_readable(cli, vault)


# ======================================================================================== env provider rotation
def test_env_provider_keys_rotate_needs_a_new_key_and_then_works(cli: CliRunner, home: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """As docs/key-providers.md says: the env provider cannot make keys; ``keys rotate`` without a new key is
    exit 2 (it used to report a "rotation" to the same key), with new + previous keys it re-wraps everything,
    and then the previous key can be dropped."""
    old, new = master_key_b64(), master_key_b64()
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "env")
    monkeypatch.setenv("TOKENVAULT_MASTER_KEY", old)
    vault = _make_vault(cli, home, home / "no-keyring")
    before = _dump(vault.db)
    same = cli("keys", "rotate")
    _one_line_error(same, 2, vault)
    assert "TOKENVAULT_MASTER_KEY_PREVIOUS" in same.err and _dump(vault.db) == before  # (its lease came and went)
    monkeypatch.setenv("TOKENVAULT_MASTER_KEY", new)
    _one_line_error(cli("token", "reveal", "prod"), 4, vault)  # the old key is still needed...
    monkeypatch.setenv("TOKENVAULT_MASTER_KEY_PREVIOUS", old)
    rotated = cli("keys", "rotate", "--json")  # ...until keys rotate has re-wrapped everything
    assert rotated.code == 0 and rotated.json()["rewrapped"] == 5, rotated.err
    monkeypatch.delenv("TOKENVAULT_MASTER_KEY_PREVIOUS")
    _all_readable(cli, vault)


# ======================================================================== both read paths fail the same way
def test_token_reveal_fails_identically_on_the_fast_path_and_the_full_one(cli: CliRunner, vault: Vault,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """``token reveal`` is first offered to a fast path (no typer/SQLAlchemy); each failure above must give the
    same exit code and the same two lines there and on the full path (TOKENVAULT_FAST_PATH=0)."""
    backup = vault.db.read_bytes()
    blob_id, _, ciphertext = _blob(vault.db, "prod")

    def flipped() -> None:
        _sql(vault.db, "UPDATE tv_secret_blob SET ciphertext=? WHERE id=?", _flip(ciphertext, -1), blob_id)

    def corrupt() -> None:
        _damage(vault.db, "garbage-pages")

    def emptied() -> None:
        vault.db.write_bytes(b"")

    states = {
        "wrong-key": lambda: (monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "env"),
                              monkeypatch.setenv("TOKENVAULT_MASTER_KEY", master_key_b64())),
        "no-keyring": lambda: monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring"),
        "flipped-byte": flipped, "corrupt-db": corrupt, "empty-db": emptied,
        "unknown-label": lambda: None,
    }
    expected = {"wrong-key": 4, "no-keyring": 5, "flipped-byte": 4, "corrupt-db": 4, "empty-db": 5,
                "unknown-label": 3}
    for name, damage in states.items():
        damage()
        label = "nope" if name == "unknown-label" else "prod"
        results = []
        for fast in ("1", "0"):
            monkeypatch.setenv("TOKENVAULT_FAST_PATH", fast)
            results.append(cli("token", "reveal", label))
        for result in results:
            _one_line_error(result, expected[name], vault)
        assert results[0].err == results[1].err, name
        monkeypatch.delenv("TOKENVAULT_KEY_PROVIDER", raising=False)
        monkeypatch.delenv("TOKENVAULT_MASTER_KEY", raising=False)
        monkeypatch.setenv("PYTHON_KEYRING_BACKEND", KEYRING_BACKEND)
        vault.db.write_bytes(backup)
    monkeypatch.delenv("TOKENVAULT_FAST_PATH")
    _all_readable(cli, vault)


# ===================================================== moving and restoring the master key (docs/key-providers.md)
def _keyring_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str,
                 stdin: str | None = None) -> str:
    """keyring's own command line (``python -m keyring ...``), in-process, on the test's file-backed backend."""
    import io

    from keyring.cli import main as keyring_main

    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    capsys.readouterr()
    assert keyring_main(["-b", KEYRING_BACKEND, *args]) in (None, 0)
    return capsys.readouterr().out.strip()


def test_the_keyring_key_backs_up_with_keyring_get_and_restores_with_keyring_set(
        cli: CliRunner, vault: Vault, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipe in docs/key-providers.md: three entries, read with ``keyring get``, written back with
    ``keyring set`` from a pipe into a fresh keyring (a new machine, a reinstalled desktop)."""
    backup = {name: _keyring_cli(capsys, monkeypatch, "get", "tokenvault", name)
              for name in ("current-key-id", "key-ids")}
    backup["master-key:" + backup["current-key-id"]] = _keyring_cli(
        capsys, monkeypatch, "get", "tokenvault", "master-key:" + backup["current-key-id"])
    vault.keyring_file.unlink()
    _one_line_error(cli("token", "reveal", "prod"), 4, vault)  # the keyring lost it: wrong (no) key, exit 4
    for name, value in backup.items():
        _keyring_cli(capsys, monkeypatch, "set", "tokenvault", name, stdin=value + "\n")
    _all_readable(cli, vault)


def test_a_key_moves_between_local_providers_because_its_id_is_derived_from_it(
        cli: CliRunner, vault: Vault, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """keyring -> env -> file, as docs/key-providers.md describes: same 32 bytes, same key id, same store."""
    key_id = _keyring_cli(capsys, monkeypatch, "get", "tokenvault", "current-key-id")
    key_b64 = _keyring_cli(capsys, monkeypatch, "get", "tokenvault", f"master-key:{key_id}")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")  # the keyring is gone
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "env")
    monkeypatch.setenv("TOKENVAULT_MASTER_KEY", key_b64)
    _all_readable(cli, vault)
    monkeypatch.delenv("TOKENVAULT_MASTER_KEY")
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "file")
    keys = vault.home / "keys"
    keys.mkdir(mode=0o700)
    for name, content in ((f"master-{key_id}.key", key_b64), ("current", key_id)):
        fd = os.open(keys / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, (content + "\n").encode())
        os.close(fd)
    _all_readable(cli, vault)
    assert cli("keys", "rotate").code == 0 and len(list(keys.glob("master-*.key"))) == 1
    _all_readable(cli, vault)


def test_init_on_an_existing_shared_folder_warns_and_does_not_chmod_it(cli: CliRunner, home: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "file")
    result = cli("init", "--json")
    assert result.code == 0 and result.json()["created"] is True  # stdout: the JSON document only
    assert "warning:" in result.err and f"chmod 700 {home}" in result.err
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    for path in home.rglob("*"):  # what tokenvault made itself is private
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path


# ========================================================================================== the Python API
def test_tokenvault_open_get_returns_a_secret_that_never_shows_its_value(cli: CliRunner, vault: Vault) -> None:
    import logging
    import pickle

    from meta_tokenvault import Secret, TokenVault

    with TokenVault.open(str(vault.home)) as tv:
        token = tv.get("prod")
        assert isinstance(token, Secret) and token.reveal() == vault.tokens["prod"]
        for shown in (repr(token), str(token), f"{token}", f"{token!r}", repr([token]), repr({"t": token}),
                      logging.Formatter().format(logging.LogRecord("x", 20, __file__, 1, "%s", (token,), None)),
                      repr(tv)):
            assert vault.tokens["prod"] not in shown and vault.tokens["prod"][4:-4] not in shown
        assert repr(token) == f"Secret('…{vault.tokens['prod'][-4:]}')"
        with pytest.raises(TypeError):
            pickle.dumps(token)
        with TokenVault.open(str(vault.home)) as again:
            assert again.get("staging") == Secret(vault.tokens["staging"])
    events = cli("audit", "list", "--json").json()
    assert [e["action"] for e in events[-2:]] == ["token.read", "token.read"]


def test_tokenvault_open_on_a_missing_store_or_label_raises_vault_errors(vault: Vault, tmp_path: Path) -> None:
    from meta_tokenvault import BackendUnavailable, NotFound, TokenVault

    with pytest.raises(BackendUnavailable) as missing:
        TokenVault.open(str(tmp_path / "nowhere"))
    assert "tokenvault init" in (missing.value.hint or "")
    with TokenVault.open(str(vault.home)) as tv, pytest.raises(NotFound):
        tv.get("nope")


@pytest.fixture(autouse=True)
def _no_stray_mounts() -> Iterator[None]:
    """Mounts live only in the child's private namespace; make sure none leaked into ours."""
    yield
    if os.path.exists("/proc/self/mounts"):
        with open("/proc/self/mounts") as mounts:
            assert "tvhome" not in mounts.read()
