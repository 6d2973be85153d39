"""How the SQLite store is opened (``meta_tokenvault.sqlitedb``), by the full store and the fast path alike: WAL
journal mode stored in the file (new databases, and existing ones at their next write-capable open),
``synchronous=FULL`` on every connection, ``-wal``/``-shm`` private from creation. The read-only home (a real
read-only mount, where the database is opened ``immutable``) is tested in tests/test_core_failures.py."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from meta_tokenvault import sqlitedb
from meta_tokenvault.adapters.store_sql import SqlStore
from meta_tokenvault.fastread import FastStore

FULL = 2  # PRAGMA synchronous's answer for FULL


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A new store's file (created, migrated and closed by the full store)."""
    path = tmp_path / "home" / "tokenvault.db"
    SqlStore.open(f"sqlite:///{path}", create=True).close()
    return path


def _plain(path: Path, sql: str) -> object:
    """``sql``'s first value, read by a plain sqlite3 connection (what the file says, not our connection)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def _full(path: Path) -> Iterator[sqlite3.Connection]:
    store = SqlStore.open(f"sqlite:///{path}")
    try:
        with store.engine.connect() as conn:
            yield conn.connection.driver_connection  # type: ignore[misc]
    finally:
        store.close()


def _fast(path: Path) -> Iterator[sqlite3.Connection]:
    store = FastStore.connect(path)
    assert store is not None
    try:
        yield store.conn
    finally:
        store.close()


OPENERS: dict[str, Callable[[Path], Iterator[sqlite3.Connection]]] = {"full store": _full, "fast path": _fast}


def test_a_new_database_is_in_wal_mode_in_the_file_and_left_without_wal_files_after_a_clean_close(db: Path) -> None:
    assert _plain(db, "PRAGMA journal_mode") == "wal"
    assert db.read_bytes()[18:20] == b"\x02\x02"  # the header's WAL format versions
    assert sorted(p.name for p in db.parent.iterdir()) == ["tokenvault.db"]


@pytest.mark.parametrize("opener", OPENERS, ids=list(OPENERS))
def test_every_connection_is_synchronous_full_and_in_wal_mode(db: Path, opener: str) -> None:
    for conn in OPENERS[opener](db):
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == FULL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("opener", OPENERS, ids=list(OPENERS))
def test_an_existing_rollback_journal_database_switches_to_wal_at_its_next_write_capable_open(
        db: Path, opener: str) -> None:
    assert _plain(db, "PRAGMA journal_mode=DELETE") == "delete"  # as a database made before this change
    assert db.read_bytes()[18:20] == b"\x01\x01"
    for conn in OPENERS[opener](db):
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM tv_token").fetchone()[0] == 0
    assert _plain(db, "PRAGMA journal_mode") == "wal"


def test_a_database_another_connection_is_reading_keeps_its_mode_and_opens(db: Path) -> None:
    """The switch needs the database to itself: when it is busy, the open still works (the mode is switched at a
    later open), without the 30 s busy wait of a write."""
    assert _plain(db, "PRAGMA journal_mode=DELETE") == "delete"
    reader = sqlite3.connect(db, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM tv_token").fetchone()  # a shared lock held
        store = FastStore.connect(db)
        assert store is not None
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == sqlitedb.BUSY_TIMEOUT_S * 1000
        assert store.schema_version() > 0
        store.close()
    finally:
        reader.close()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert sqlitedb.ensure_wal(conn) is True  # free again: switched
    finally:
        conn.close()


@pytest.mark.parametrize("opener", OPENERS, ids=list(OPENERS))
def test_wal_and_shm_files_are_0600_from_creation_with_a_permissive_umask(db: Path, opener: str) -> None:
    old = os.umask(0o022)
    try:
        for conn in OPENERS[opener](db):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO tv_setting (key, value) VALUES ('wal-test', 'x')")
            conn.execute("COMMIT")
            for name in ("tokenvault.db-wal", "tokenvault.db-shm"):
                assert stat.S_IMODE((db.parent / name).stat().st_mode) == 0o600, name
            assert (db.parent / "tokenvault.db-wal").stat().st_size > 0
    finally:
        os.umask(old)
    assert _plain(db, "SELECT value FROM tv_setting WHERE key = 'wal-test'") == "x"
