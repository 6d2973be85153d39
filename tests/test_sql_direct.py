"""The store's repeated statements run through the driver directly (vault/adapters/sql_direct.py) or through
SQLAlchemy: the same rows written, byte for byte, and the same records read, on SQLite and PostgreSQL; a
driver error becomes the same exception; a statement the direct path cannot run goes through SQLAlchemy."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from meta_tokenvault.adapters import sql_direct
from meta_tokenvault.adapters.store_sql import SqlStore
from meta_tokenvault.errors import AlreadyExists, NotFound
from meta_tokenvault.types import TokenSource, TokenStatus

NOW = datetime(2026, 3, 1, 12, 30, 45, 123456, tzinfo=UTC)
TABLES = ("tv_token", "tv_token_version", "tv_secret_blob", "tv_audit_event", "tv_setting", "tv_rotation", "tv_lease")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A factory of empty metadata databases: SQLite files, or fresh PostgreSQL databases (dropped after)."""
    made: list[str] = []
    server = request.getfixturevalue("postgres_server") if request.param == "postgres" else None

    def make() -> str:
        name = f"tv_direct_{secrets.token_hex(6)}"
        made.append(name)
        if server is None:
            return f"sqlite:///{tmp_path / name / 'tokenvault.db'}"
        return server.create_database(name)

    yield make
    if server is not None:
        server.drop_databases(*made)


def _exercise(store: SqlStore) -> list[Any]:
    """Every store call that runs a direct statement, in and out of a transaction; what each returned."""
    out: list[Any] = []
    business = store.add_business("acme", "1001", "2002", NOW)
    tid = store.reserve_token_id("wa-prod", business.id, NOW)
    fields = {"status": TokenStatus.ACTIVE, "source": TokenSource.GENERATED, "fingerprint": "f" * 64, "last4": "1234",
              "created_at": NOW, "expires_at": None, "backend": "local", "system_user_id": "61",
              "scopes": ["whatsapp_business_messaging"], "waba_ids": ["3001"], "app_id": "2002"}
    store.add_version(tid, 1, fields, make_current=True)
    store.put_blob("token", tid, 1, "key-1", b"\x00wrapped\xff", b"\x01cipher\xfe")
    out.append(store.append_audit("cli", "token.add", "wa-prod", {"version": 1, "note": "é"}, NOW))
    with store.transaction():
        out.append(store.acquire_lease("rotate:wa-prod", "host-a", NOW, timedelta(minutes=5)))
        rid = store.start_rotation(tid, "wa-prod", 1, False, "scheduled", NOW, step="minting", to_version=2)
        out.append(rid)
        store.add_version(tid, 2, {**fields, "status": TokenStatus.PENDING, "last4": "5678",
                                   "created_at": NOW + timedelta(seconds=1)}, make_current=False)
        store.put_blob("token", tid, 2, "key-1", b"w2", b"c2")
        store.update_rotation(rid, NOW + timedelta(seconds=2), step="stored")
        out.append(store.append_audit("rotator", "rotation.stored", "wa-prod", {"to": 2}, NOW))
        out.append(store.append_audit("rotator", "rotation.verified", "wa-prod", {"to": 2}, NOW))
    with store.transaction():
        store.update_version(tid, 2, verified_at=NOW + timedelta(seconds=3), debug_summary={"is_valid": True},
                             data_access_expires_at=NOW + timedelta(days=90))
        store.promote(tid, 2, 1, TokenStatus.RETIRED)
        store.update_rotation(rid, NOW + timedelta(seconds=4), step="done", state="done")
        store.update_version(tid, 1, status=TokenStatus.REVOKED, revoked_at=NOW + timedelta(seconds=5))
        store.release_lease("rotate:wa-prod", "host-a")
        out.append(store.append_audit("rotator", "rotation.done", "wa-prod", {"to": 2}, NOW))
    out.append(store.acquire_lease("rotate:other", "host-b", NOW, timedelta(minutes=5)))
    with store.transaction():  # a lease row exists (held, expired or ours): nothing written, the transaction goes on
        out += [store.take_free_lease("rotate:free", "host-a", NOW, timedelta(minutes=5)),
                store.take_free_lease("rotate:free", "host-b", NOW + timedelta(hours=1), timedelta(minutes=5)),
                store.take_free_lease("rotate:other", "host-b", NOW, timedelta(minutes=5))]
        assert out[-3:] == [True, False, False]
        store.update_rotation(rid, NOW + timedelta(seconds=6), reason="after the refused leases")
    out += [store.lease_holder("rotate:other"), store.lease_holder("rotate:none"), store.max_version(tid),
            store.version_record(tid, 1), store.version_record(tid, 2), store.get_token("wa-prod", with_history=True),
            store.get_blob("token", tid, 1), store.get_blob("token", tid, 9), store.open_rotation(tid),
            store.get_rotation(rid), store.verify_audit()]
    rid2 = store.start_rotation(tid, "wa-prod", 2, True, "compromised", NOW)
    out += [store.open_rotation(tid), store.get_rotation(rid2)]
    for call in (lambda: store.put_blob("token", tid, 1, "k", b"x", b"y"),      # exists: refused
                 lambda: store.update_rotation(999, NOW, step="x"),               # no such row
                 lambda: store.update_version(tid, 9, status=TokenStatus.ACTIVE),
                 lambda: store.version_record(tid, 9)):
        with pytest.raises((AlreadyExists, NotFound)) as info:
            call()
        out.append((type(info.value).__name__, info.value.message))
    return out


def _dump(store: SqlStore) -> dict[str, list[Any]]:
    """Every row of the tables the statements write, as the driver returns them (SQLite: the stored text)."""
    with store.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1"))] for t in TABLES}  # noqa: S608


def test_direct_and_sqlalchemy_write_and_read_the_same(db_url: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = SqlStore.open(db_url(), create=True)
    try:
        results, rows = _exercise(direct), _dump(direct)
        plans = direct._direct._plans
        assert len(plans) >= 20 and all(plan is not None for plan in plans.values())  # every one ran directly
    finally:
        direct.close()
    monkeypatch.setattr(sql_direct.DirectStatements, "_compile", lambda self, stmt, names: None)
    through_sqlalchemy = SqlStore.open(db_url(), create=True)
    try:
        assert _exercise(through_sqlalchemy) == results
        assert _dump(through_sqlalchemy) == rows
        assert all(plan is None for plan in through_sqlalchemy._direct._plans.values())
    finally:
        through_sqlalchemy.close()
    assert rows["tv_lease"] and rows["tv_rotation"] and len(rows["tv_audit_event"]) == 4


def test_a_driver_error_in_a_transaction_rolls_back_to_its_savepoint(db_url: Any) -> None:
    """A duplicate refused by the database (not by a check before it) is AlreadyExists, undoes only its
    savepoint, and the transaction goes on."""
    store = SqlStore.open(db_url(), create=True)
    try:
        business = store.add_business("acme", "1001", "2002", NOW)
        tid = store.reserve_token_id("wa", business.id, NOW)
        fields = {"status": TokenStatus.ACTIVE, "source": TokenSource.GENERATED, "fingerprint": "f", "last4": "1",
                  "created_at": NOW, "backend": "local", "system_user_id": "61", "app_id": "2002", "scopes": [],
                  "waba_ids": []}
        with store.transaction():
            store.add_version(tid, 1, fields, make_current=True)
            with pytest.raises(AlreadyExists, match="duplicate"), store.transaction():
                store.append_audit("cli", "x", "wa", {}, NOW)
                store.add_version(tid, 1, fields, make_current=False)  # (token_id, version) is unique
            store.append_audit("cli", "y", "wa", {}, NOW)
        assert store.max_version(tid) == 1
        assert [e.action for e in store.list_audit()] == ["y"] and store.verify_audit() == 1
    finally:
        store.close()
