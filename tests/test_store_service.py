"""The vault core through the service: capture, provenance, encryption at rest, integrity, audit, keys rotate."""

from __future__ import annotations

import base64
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from meta_tokenvault.adapters.secrets_local import LocalBackend
from meta_tokenvault.adapters.store_sql import SqlStore
from meta_tokenvault.errors import (
    AlreadyExists,
    AuditChainBroken,
    DatabaseUnavailable,
    IntegrityError,
    InvalidInput,
    NotFound,
    TamperedCiphertext,
    WrongMasterKey,
)
from meta_tokenvault.service import TokenManager, clean_token
from meta_tokenvault.testing.fakes import MemoryKeyProvider
from meta_tokenvault.types import Secret, TokenStatus

TOKEN_A = "EAAGfakeSimTokenA" + "x1y2z3" * 25 + "AAAA"
TOKEN_B = "EAAGfakeSimTokenB" + "q7r8s9" * 25 + "BBBB"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "tokenvault.db"


@pytest.fixture
def keys() -> MemoryKeyProvider:
    return MemoryKeyProvider()


@pytest.fixture
def manager(db_path: Path, keys: MemoryKeyProvider) -> Iterator[TokenManager]:
    store = SqlStore.open(f"sqlite:///{db_path}", create=True)
    m = TokenManager(store=store, secrets=LocalBackend(store, keys), keys=keys)
    m.initialize("memory")
    m.add_business("acme", "1001", "2002", Secret("app-secret-value-123"), Secret("EAAadminTokenValue9876"))
    yield m
    store.close()


def _import(m: TokenManager, label: str, value: str) -> None:
    m.import_token(label, business="acme", secret=Secret(value), system_user_id="3003",
                   scopes=["whatsapp_business_messaging"], waba_ids=["4004"], verify=False)


def test_import_then_reveal_returns_the_same_token_and_records_provenance(manager: TokenManager) -> None:
    _import(manager, "prod", TOKEN_A)
    assert manager.reveal("prod").reveal() == TOKEN_A
    record = manager.show_token("prod")
    data = record.as_json()
    assert data["status"] == "active" and data["version"] == 1 and data["source"] == "imported"
    assert (data["business_id"], data["system_user_id"], data["app_id"]) == ("1001", "3003", "2002")
    assert data["scopes"] == ["whatsapp_business_messaging"] and data["waba_ids"] == ["4004"]
    assert data["last4"] == "AAAA" and len(str(data["fingerprint"])) == 32
    assert set(data) >= {"label", "created_at", "expires_at", "verified_at", "backend"}


def test_no_plaintext_at_rest_anywhere_under_the_home(manager: TokenManager, db_path: Path) -> None:
    _import(manager, "prod", TOKEN_A)
    _import(manager, "staging", TOKEN_B)
    manager.reveal("prod")
    forms = []
    for value in (TOKEN_A, TOKEN_B, "app-secret-value-123", "EAAadminTokenValue9876"):
        raw = value.encode()
        forms += [raw, raw.hex().encode(), base64.b64encode(raw), base64.urlsafe_b64encode(raw), raw[:-4]]
    for path in db_path.parent.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            for form in forms:
                assert form not in content, f"secret material found in {path.name}"
            assert path.stat().st_mode & 0o777 == 0o600, path
    assert db_path.parent.stat().st_mode & 0o777 == 0o700


def test_fingerprint_is_keyed_and_stable(manager: TokenManager) -> None:
    import hashlib

    _import(manager, "prod", TOKEN_A)
    fp = manager.show_token("prod").fingerprint
    assert fp == manager.fingerprint(Secret(TOKEN_A))
    assert fp not in hashlib.sha256(TOKEN_A.encode()).hexdigest()


def test_duplicate_label_is_refused_and_nothing_is_overwritten(manager: TokenManager) -> None:
    _import(manager, "prod", TOKEN_A)
    with pytest.raises(AlreadyExists) as info:
        _import(manager, "prod", TOKEN_B)
    assert info.value.exit_code == 2
    assert manager.reveal("prod").reveal() == TOKEN_A
    assert len(manager.list_tokens()) == 1


@pytest.mark.parametrize("raw", ["", "   ", "\n", "\t \n"], ids=["empty", "spaces", "newline", "mixed-ws"])
def test_empty_or_whitespace_token_is_bad_input(raw: str) -> None:
    with pytest.raises(InvalidInput) as info:
        clean_token(raw)
    assert info.value.exit_code == 2


def test_two_values_pasted_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidInput) as info:
        clean_token(f"{TOKEN_A} {TOKEN_B}")
    assert TOKEN_A not in str(info.value) and TOKEN_B not in str(info.value)


def _sql(db_path: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(statement, params).fetchall()
    return rows


def test_flipped_byte_in_ciphertext_fails_to_open_and_others_stay_readable(manager: TokenManager,
                                                                           db_path: Path) -> None:
    _import(manager, "prod", TOKEN_A)
    _import(manager, "staging", TOKEN_B)
    (blob_id, ciphertext), = _sql(db_path, "SELECT b.id, b.ciphertext FROM tv_secret_blob b JOIN tv_token t "
                                  "ON b.owner_id = t.id WHERE b.kind='token' AND t.label='prod'")
    tampered = bytearray(ciphertext)  # type: ignore[arg-type]
    tampered[len(tampered) // 2] ^= 0x01
    _sql(db_path, "UPDATE tv_secret_blob SET ciphertext=? WHERE id=?", bytes(tampered), blob_id)
    with pytest.raises(TamperedCiphertext) as info:
        manager.reveal("prod")
    assert info.value.exit_code == 4
    assert manager.reveal("staging").reveal() == TOKEN_B


@pytest.mark.parametrize("column", ["ciphertext", "wrapped_key"], ids=["ciphertexts", "wrapped-keys"])
def test_swapped_rows_fail_to_open(manager: TokenManager, db_path: Path, column: str) -> None:
    _import(manager, "prod", TOKEN_A)
    _import(manager, "staging", TOKEN_B)
    rows = _sql(db_path, f"SELECT id, {column} FROM tv_secret_blob WHERE kind='token' ORDER BY id")
    (id1, v1), (id2, v2) = rows
    _sql(db_path, f"UPDATE tv_secret_blob SET {column}=? WHERE id=?", v2, id1)
    _sql(db_path, f"UPDATE tv_secret_blob SET {column}=? WHERE id=?", v1, id2)
    for label in ("prod", "staging"):
        with pytest.raises(TamperedCiphertext):
            manager.reveal(label)


def test_truncated_ciphertext_is_tampering(manager: TokenManager, db_path: Path) -> None:
    _import(manager, "prod", TOKEN_A)
    _sql(db_path, "UPDATE tv_secret_blob SET ciphertext=substr(ciphertext, 1, 10) WHERE kind='token'")
    with pytest.raises(TamperedCiphertext):
        manager.reveal("prod")


def test_wrong_master_key_is_integrity_error_naming_the_key(manager: TokenManager, db_path: Path) -> None:
    _import(manager, "prod", TOKEN_A)
    other = MemoryKeyProvider()
    other.create_key()
    store = SqlStore.open(f"sqlite:///{db_path}")
    wrong = TokenManager(store=store, secrets=LocalBackend(store, other), keys=other)
    with pytest.raises(WrongMasterKey) as info:
        wrong.reveal("prod")
    assert info.value.exit_code == 4
    assert manager.reveal("prod").reveal() == TOKEN_A  # nothing changed for the right key
    store.close()


@pytest.mark.parametrize("damage", ["truncate", "garbage"], ids=["truncated-file", "corrupt-file"])
def test_corrupt_database_file_is_a_one_line_integrity_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "tokenvault.db"
    store = SqlStore.open(f"sqlite:///{path}", create=True)
    store.close()
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        if damage == "truncate":
            fh.truncate(size // 3)
            fh.seek(0)
            fh.write(b"\x00" * 100)
        else:
            fh.write(os.urandom(4096))
    with pytest.raises((IntegrityError, DatabaseUnavailable)) as info:
        SqlStore.open(f"sqlite:///{path}").list_tokens()
    assert "\n" not in info.value.message
    assert info.value.exit_code in (4, 5)


def test_missing_database_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUnavailable) as info:
        SqlStore.open(f"sqlite:///{tmp_path / 'nope.db'}")
    assert "tokenvault init" in info.value.hint


def test_unknown_label_is_not_found(manager: TokenManager) -> None:
    with pytest.raises(NotFound) as info:
        manager.reveal("nope")
    assert info.value.exit_code == 3


# --------------------------------------------------------------------------- audit trail
def test_audit_chain_verifies_and_holds_no_secret(manager: TokenManager, db_path: Path) -> None:
    _import(manager, "prod", TOKEN_A)
    manager.reveal("prod")
    count = manager.verify_audit()
    assert count == 4  # init, business.add, token.import, token.reveal
    actions = [e.action for e in manager.audit_events()]
    assert actions == ["init", "business.add", "token.import", "token.reveal"]
    dump = repr(_sql(db_path, "SELECT * FROM tv_audit_event"))
    assert TOKEN_A not in dump and TOKEN_A[-12:] not in dump


@pytest.mark.parametrize(
    ("tamper", "bad_event"),
    [
        ("UPDATE tv_audit_event SET subject='other' WHERE seq=2", 2),
        ("UPDATE tv_audit_event SET details='{}' WHERE seq=3", 3),
        ("DELETE FROM tv_audit_event WHERE seq=2", 3),
        ("DELETE FROM tv_audit_event WHERE seq=(SELECT max(seq) FROM tv_audit_event)", 4),
        ("UPDATE tv_audit_event SET seq=seq+100 WHERE seq IN (2,3); "
         "UPDATE tv_audit_event SET seq=3 WHERE seq=102; UPDATE tv_audit_event SET seq=2 WHERE seq=103", 3),
    ],
    ids=["edited-subject", "edited-details", "deleted-middle", "deleted-newest", "reordered"],
)
def test_audit_verify_names_the_first_bad_event(manager: TokenManager, db_path: Path, tamper: str,
                                                bad_event: int) -> None:
    _import(manager, "prod", TOKEN_A)
    manager.reveal("prod")
    with sqlite3.connect(db_path) as conn:
        conn.executescript(tamper)
    with pytest.raises(AuditChainBroken) as info:
        manager.verify_audit()
    assert info.value.exit_code == 4
    assert info.value.event_id == bad_event


# --------------------------------------------------------------------------- master key rotation
def test_keys_rotate_rewraps_everything_and_retires_the_old_key(manager: TokenManager, keys: MemoryKeyProvider,
                                                                db_path: Path) -> None:
    _import(manager, "prod", TOKEN_A)
    _import(manager, "staging", TOKEN_B)
    old = keys.current_key_id()
    ciphertexts_before = _sql(db_path, "SELECT ciphertext FROM tv_secret_blob ORDER BY id")
    result = manager.rotate_master_key()
    assert result.new_key_id != old and old in result.retired and result.rewrapped == 4
    assert keys.key_ids() == [result.new_key_id]
    # envelope: ciphertexts untouched, only data keys re-wrapped
    assert _sql(db_path, "SELECT ciphertext FROM tv_secret_blob ORDER BY id") == ciphertexts_before
    assert {r[0] for r in _sql(db_path, "SELECT key_id FROM tv_secret_blob")} == {result.new_key_id}
    assert manager.reveal("prod").reveal() == TOKEN_A
    assert manager.show_token("staging").fingerprint == manager.fingerprint(Secret(TOKEN_B))


@pytest.mark.parametrize("stop_after", [0, 1, 2, 3], ids=lambda n: f"interrupted-after-{n}")
def test_keys_rotate_interrupted_anywhere_leaves_everything_readable_and_resumes(
    manager: TokenManager, keys: MemoryKeyProvider, stop_after: int
) -> None:
    _import(manager, "prod", TOKEN_A)
    _import(manager, "staging", TOKEN_B)
    with pytest.raises(KeyboardInterrupt):
        manager.rotate_master_key(stop_after=stop_after)
    assert len(keys.key_ids()) == 2  # old key kept while anything still uses it
    assert manager.reveal("prod").reveal() == TOKEN_A
    assert manager.reveal("staging").reveal() == TOKEN_B
    result = manager.rotate_master_key()
    assert keys.key_ids() == [result.new_key_id]
    assert manager.reveal("prod").reveal() == TOKEN_A and manager.reveal("staging").reveal() == TOKEN_B
    assert manager.verify_audit() > 0


def test_resolve_refuses_inactive_tokens(manager: TokenManager) -> None:
    _import(manager, "prod", TOKEN_A)
    record = manager.show_token("prod")
    manager.store.update_version(record.id, 1, status=TokenStatus.COMPROMISED)
    with pytest.raises(InvalidInput):
        manager.resolve("prod")
    assert manager.resolve("prod", allow_inactive=True)[1].reveal() == TOKEN_A


def test_secret_repr_never_shows_the_value() -> None:
    secret = Secret(TOKEN_A)
    assert TOKEN_A not in repr(secret) and TOKEN_A not in str(secret) and TOKEN_A not in f"{secret}"
    assert repr(secret) == "Secret('…AAAA')"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)
