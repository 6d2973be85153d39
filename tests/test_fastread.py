"""The fast read path (meta_tokenvault.fastread) against the full path (SqlStore on SQLAlchemy): the same records, the
same secrets, the same refusals, the same audit chain; and the one source both read from (meta_tokenvault.queries)
checked against the table definitions (meta_tokenvault.models) and the schema version (meta_tokenvault.migrations)."""

from __future__ import annotations

import inspect
import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from meta_tokenvault import migrations, models, queries
from meta_tokenvault.adapters.store_sql import SqlStore
from meta_tokenvault.config import Settings
from meta_tokenvault.errors import InvalidInput, NotFound, TamperedCiphertext, UsageError, VaultError
from meta_tokenvault.fastread import FastPathUnavailable, FastReader, FastStore, PgFastStore, open_fast, sqlite_file
from meta_tokenvault.service import TokenManager
from meta_tokenvault.types import Secret, SecretKind, SecretRef, TokenSource, TokenStatus
from meta_tokenvault.wiring import build_manager

TOKENS = {
    "prod": "EAAGfastProdToken" + "a1b2c3" * 20 + "PROD",
    "staging": "EAAGfastStagingTok" + "d4e5f6" * 20 + "STAG",
    "old": "EAAGfastOldToken" + "g7h8i9" * 20 + "OLD1",
}
ROTATED = "EAAGfastProdRotated" + "j1k2l3" * 20 + "ROT2"
MODEL_TABLES = {m.__tablename__: m for m in (  # type: ignore[attr-defined]
    models.TokenRow, models.BusinessRow, models.TokenVersionRow, models.SecretBlobRow, models.SettingRow,
    models.AuditEventRow, models.SchemaVersion, models.WrappedKeyRow)}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.resolve({"home": tmp_path / "home", "key_provider": "file"}, environ={})


@pytest.fixture
def full(settings: Settings) -> Iterator[TokenManager]:
    """A store made by the full path: three tokens, 'prod' rotated to v2 (v1 retired), 'old' revoked, and
    'reserved' with no version yet."""
    m = build_manager(settings, create=True, environ={})
    m.initialize("file")
    m.add_business("acme", "1001", "2002", Secret("app-secret-value-123"), Secret("EAAadminTokenValue9876"))
    for label, value in TOKENS.items():
        m.import_token(label, business="acme", secret=Secret(value), system_user_id="3003",
                       scopes=["whatsapp_business_messaging", "whatsapp_business_management"],
                       waba_ids=["4004", "4005"], verify=False, max_age_days=90 if label == "prod" else None)
    prod = m.store.get_token("prod")
    m.secrets.put(SecretRef(SecretKind.TOKEN, prod.id, 2, "prod"), Secret(ROTATED))
    m.store.add_version(prod.id, 2, {**_fields(m, ROTATED), "source": TokenSource.ROTATED,
                                     "status": TokenStatus.PENDING}, make_current=False)
    m.store.promote(prod.id, 2, 1, TokenStatus.RETIRED)
    m.store.update_version(m.store.get_token("old").id, 1, status=TokenStatus.REVOKED, revoked_at=m.now())
    m.store.reserve_token_id("reserved", m.store.get_business("acme").id, m.now())
    yield m
    m.store.close()


def _fields(m: TokenManager, value: str) -> dict[str, Any]:
    return {"system_user_id": "3003", "app_id": "2002", "scopes": ["whatsapp_business_messaging"],
            "waba_ids": [], "fingerprint": m.fingerprint(Secret(value)), "last4": value[-4:],
            "created_at": m.now(), "expires_at": datetime(2031, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            "verified_at": m.now(), "debug_summary": {}, "backend": "local"}


@pytest.fixture
def fast(full: TokenManager, settings: Settings) -> Iterator[FastReader]:
    reader = open_fast(settings, environ={})
    assert reader is not None, "the plain local SQLite + file key case must take the fast path"
    yield reader
    reader.close()


def _db(settings: Settings) -> Path:
    path = sqlite_file(settings.database_url)
    assert path is not None
    return path


def _sql(settings: Settings, statement: str, *params: Any) -> list[Any]:
    conn = sqlite3.connect(_db(settings))
    try:
        with conn:
            return conn.execute(statement, params).fetchall()
    finally:
        conn.close()


def _error(call: Any) -> tuple[type[VaultError], str, str | None, int]:
    with pytest.raises(VaultError) as info:
        call()
    return type(info.value), info.value.message, info.value.hint, info.value.exit_code


# --------------------------------------------------------------------------- one source of truth
def test_every_table_and_column_the_queries_name_is_in_vault_models() -> None:
    for alias, column in queries.REFERENCED:
        table = queries.TABLES[alias]
        assert table in MODEL_TABLES, f"{table} is not a table of meta_tokenvault.models"
        assert column in MODEL_TABLES[table].__table__.c, f"{table}.{column} is not in meta_tokenvault.models"


def test_the_queries_are_written_for_the_latest_schema_version() -> None:
    assert queries.SCHEMA_VERSION == migrations.LATEST, (
        "a migration was added: check vault/queries.py against the new schema (this file's tests), then set "
        "meta_tokenvault.queries.SCHEMA_VERSION to migrations.LATEST (until then the fast path steps aside)")


@pytest.mark.parametrize("fast_store", [FastStore, PgFastStore], ids=["sqlite", "postgres"])
def test_the_fast_store_has_sql_stores_signatures(fast_store: type[FastStore]) -> None:
    for name in ("get_token", "list_tokens", "list_tokens_json", "get_blob", "append_audit", "get_setting",
                 "get_wrapped_key", "schema_version", "close"):
        assert inspect.signature(getattr(fast_store, name)) == inspect.signature(getattr(SqlStore, name)), name


def test_records_are_built_with_their_fields_in_the_classes_order() -> None:
    import dataclasses

    from meta_tokenvault.types import Provenance, TokenRecord

    assert tuple(f.name for f in dataclasses.fields(TokenRecord)) == queries.RECORD_FIELDS
    assert tuple(f.name for f in dataclasses.fields(Provenance)) == queries.PROVENANCE_FIELDS


def test_sqlite_datetimes_are_written_as_sqlalchemy_writes_them() -> None:
    from sqlalchemy.dialects import sqlite

    processor = sqlite.DATETIME().bind_processor(sqlite.dialect())
    assert processor is not None
    for value in (datetime(2025, 3, 1, 12, 0, tzinfo=UTC), datetime(2025, 3, 1, 12, 0, 5, 123, tzinfo=UTC),
                  datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)):
        assert queries.sqlite_datetime(value) == processor(value)
        assert queries.when(queries.sqlite_datetime(value)) == value


# --------------------------------------------------------------------------- same records, same secrets
def test_show_and_list_give_identical_records(full: TokenManager, fast: FastReader) -> None:
    assert fast.list_tokens() == full.list_tokens()
    assert [t.label for t in fast.list_tokens()] == ["old", "prod", "staging"]
    for label in TOKENS:
        assert fast.show_token(label) == full.show_token(label)
    prod = fast.show_token("prod")
    assert [v.version for v in prod.history] == [2, 1] and prod.max_age_days == 90
    assert prod.history[1].status is TokenStatus.RETIRED


@pytest.mark.parametrize("label,version,expected", [
    ("prod", None, ROTATED), ("prod", 1, TOKENS["prod"]), ("prod", 2, ROTATED), ("staging", None, TOKENS["staging"]),
    ("old", None, TOKENS["old"]),
], ids=["current", "older-version", "explicit-current", "other-token", "revoked-still-revealable"])
def test_reveal_returns_identical_secrets(full: TokenManager, fast: FastReader, label: str, version: int | None,
                                          expected: str) -> None:
    assert fast.reveal(label, version=version) == full.reveal(label, version=version) == Secret(expected)


def test_resolve_gives_identical_records_and_refusals(full: TokenManager, fast: FastReader) -> None:
    assert fast.resolve("prod", purpose="exec") == full.resolve("prod", purpose="exec")
    assert _error(lambda: fast.resolve("old")) == _error(lambda: full.resolve("old"))
    assert _error(lambda: fast.resolve("old"))[0] is InvalidInput
    assert fast.resolve("old", allow_inactive=True) == full.resolve("old", allow_inactive=True)


@pytest.mark.parametrize("call", [
    lambda r: r.reveal("nope"), lambda r: r.show_token("nope"), lambda r: r.resolve("nope"),
    lambda r: r.reveal("reserved"), lambda r: r.reveal("prod", version=7),
], ids=["unknown-reveal", "unknown-show", "unknown-resolve", "no-version-yet", "no-such-version"])
def test_not_found_is_reported_identically(full: TokenManager, fast: FastReader, call: Any) -> None:
    got = _error(lambda: call(fast))
    assert got == _error(lambda: call(full))
    assert got[0] is NotFound and got[3] == 3


# --------------------------------------------------------------------------- AEAD associated data, both paths
@pytest.mark.parametrize("tamper", ["flip-ciphertext", "flip-wrapped-key", "swap-rows", "truncate"])
def test_a_tampered_row_fails_on_both_paths_and_writes_no_audit(full: TokenManager, fast: FastReader,
                                                                settings: Settings, tamper: str) -> None:
    staging, prod = full.show_token("staging"), full.show_token("prod")
    where = "kind = 'token' AND owner_id = ? AND version = ?"
    if tamper == "flip-ciphertext":
        _sql(settings, f"UPDATE tv_secret_blob SET ciphertext = ? WHERE {where}",  # noqa: S608
             _flipped(_sql(settings, f"SELECT ciphertext FROM tv_secret_blob WHERE {where}",  # noqa: S608
                           staging.id, 1)[0][0]), staging.id, 1)
    elif tamper == "flip-wrapped-key":
        wrapped = _sql(settings, f"SELECT wrapped_key FROM tv_secret_blob WHERE {where}", staging.id, 1)[0][0]  # noqa: S608
        _sql(settings, f"UPDATE tv_secret_blob SET wrapped_key = ? WHERE {where}",  # noqa: S608
             _flipped(wrapped), staging.id, 1)
    elif tamper == "swap-rows":  # prod v2's sealed value put on staging v1: opens only for prod v2
        row = _sql(settings, f"SELECT key_id, wrapped_key, ciphertext FROM tv_secret_blob WHERE {where}",  # noqa: S608
                   prod.id, 2)[0]
        _sql(settings, f"UPDATE tv_secret_blob SET key_id = ?, wrapped_key = ?, ciphertext = ? WHERE {where}",  # noqa: S608
             *row, staging.id, 1)
    else:
        _sql(settings, f"UPDATE tv_secret_blob SET ciphertext = substr(ciphertext, 1, 10) WHERE {where}",  # noqa: S608
             staging.id, 1)
    events = full.verify_audit()
    for call in (lambda r: r.reveal("staging"), lambda r: r.resolve("staging")):
        got = _error(lambda c=call: c(fast))  # type: ignore[misc]
        assert got == _error(lambda c=call: c(full))  # type: ignore[misc]
        assert issubclass(got[0], TamperedCiphertext) and got[3] == 4
    assert full.verify_audit() == events  # nothing handed out, nothing recorded
    assert fast.reveal("prod") == Secret(ROTATED)  # the other rows still open


def _flipped(data: bytes) -> bytes:
    return data[:20] + bytes([data[20] ^ 1]) + data[21:]


# --------------------------------------------------------------------------- the audit chain
def test_fast_reads_append_the_same_events_to_the_same_chain(full: TokenManager, fast: FastReader,
                                                             settings: Settings) -> None:
    before = full.verify_audit()
    full.reveal("prod")
    fast.reveal("prod")
    full.resolve("staging", purpose="exec")
    fast.resolve("staging", purpose="exec")
    assert full.verify_audit() == before + 4  # one chain: each event links to the one before, head updated
    events = full.audit_events(limit=4)
    assert [(e.actor, e.action, e.subject, e.details) for e in events[0::2]] == \
        [(e.actor, e.action, e.subject, e.details) for e in events[1::2]]
    assert [e.action for e in events] == ["token.reveal", "token.reveal", "token.exec", "token.exec"]
    stored = [r[0] for r in _sql(settings, "SELECT at FROM tv_audit_event ORDER BY seq DESC LIMIT 4")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", at) for at in stored), stored


def test_the_fast_path_creates_a_missing_audit_head_as_the_full_path_would(full: TokenManager, fast: FastReader,
                                                                          settings: Settings) -> None:
    _sql(settings, "DELETE FROM tv_audit_event")
    _sql(settings, "DELETE FROM tv_setting WHERE key = 'audit_head'")
    fast.reveal("prod")
    full.reveal("prod")
    assert full.verify_audit() == 2


def test_an_audit_append_that_fails_writes_nothing(full: TokenManager, settings: Settings,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from meta_tokenvault import sqlitedb

    before = full.verify_audit()
    monkeypatch.setattr(sqlitedb, "BUSY_TIMEOUT_S", 0.05)  # the fast path waits for the lock this long
    reader = open_fast(settings, environ={})
    assert reader is not None
    blocker = sqlite3.connect(_db(settings), isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        with pytest.raises(FastPathUnavailable, match="locked"):
            reader.reveal("prod")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        reader.close()
    assert full.verify_audit() == before


# --------------------------------------------------------------------------- when the fast path steps aside
def _settings(settings: Settings, **changes: Any) -> Settings:
    return settings.with_overrides(**changes)


@pytest.mark.parametrize("case", [
    "postgres-unreachable", "postgres-other-driver", "memory-url", "url-with-options", "missing-file",
    "vault-transit", "recorded-vault-backend-without-address", "vault-backend-approle", "pending-migration",
    "newer-schema", "not-a-database", "no-schema",
], ids=str)
def test_open_fast_declines_everything_but_the_plain_cases(full: TokenManager, settings: Settings,
                                                                case: str, tmp_path: Path) -> None:
    env: dict[str, str] = {}
    if case == "postgres-unreachable":  # the full path reports it
        settings = _settings(settings, db_url=f"postgresql+psycopg2://postgres@/tv?host={tmp_path}&port=1")
    elif case == "postgres-other-driver":
        settings = _settings(settings, db_url="postgresql+asyncpg://postgres@localhost/tv")
    elif case == "memory-url":
        settings = _settings(settings, db_url="sqlite:///:memory:")
    elif case == "url-with-options":
        settings = _settings(settings, db_url=settings.database_url + "?timeout=5")
    elif case == "missing-file":
        settings = _settings(settings, db_url=f"sqlite:///{tmp_path / 'nowhere.db'}")
    elif case == "vault-transit":
        settings = _settings(settings, key_provider="vault-transit")
    elif case == "recorded-vault-backend-without-address":
        full.store.set_setting("backend", "vault")
    elif case == "vault-backend-approle":  # a login first: hvac's
        full.store.set_setting("backend", "vault")
        settings = _settings(settings, vault_addr="http://127.0.0.1:1", vault_role_id="role")
        env["TOKENVAULT_VAULT_SECRET_ID"] = "secret-id"
    elif case == "pending-migration":
        _sql(settings, "DELETE FROM tv_schema_version WHERE version = ?", migrations.LATEST)
    elif case == "newer-schema":
        _sql(settings, "INSERT INTO tv_schema_version (version, applied_at) VALUES (?, '2030-01-01 00:00:00')",
             migrations.LATEST + 1)
    elif case == "not-a-database":
        junk = tmp_path / "junk.db"
        junk.write_bytes(b"this is not a database" * 100)
        settings = _settings(settings, db_url=f"sqlite:///{junk}")
    elif case == "no-schema":
        empty = tmp_path / "empty.db"
        sqlite3.connect(empty).close()
        settings = _settings(settings, db_url=f"sqlite:///{empty}")
    assert open_fast(settings, environ=env) is None
    assert not (tmp_path / "nowhere.db").exists()  # never creates a database


def test_open_fast_raises_what_the_full_path_raises_for_a_contradicting_backend(full: TokenManager,
                                                                                settings: Settings) -> None:
    env = {"TOKENVAULT_BACKEND": "vault"}
    fast_error = _error(lambda: open_fast(settings, environ=env))
    full_error = _error(lambda: build_manager(settings, environ=env))
    assert fast_error == full_error and fast_error[0] is UsageError


def test_the_env_key_provider_takes_the_fast_path(tmp_path: Path) -> None:
    import base64
    import os

    env = {"TOKENVAULT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    settings = Settings.resolve({"home": tmp_path / "home", "key_provider": "env"}, environ={})
    m = build_manager(settings, create=True, environ=env)
    m.initialize("env")
    m.add_business("acme", "1001", "2002", Secret("app-secret-value-123"), Secret("EAAadminTokenValue9876"))
    m.import_token("prod", business="acme", secret=Secret(TOKENS["prod"]), system_user_id="3003", verify=False)
    m.store.close()
    reader = open_fast(settings, environ=env)
    assert reader is not None
    with reader:
        assert reader.reveal("prod") == Secret(TOKENS["prod"])
