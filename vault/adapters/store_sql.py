"""The metadata store on SQLAlchemy/sqlmodel: SQLite (embedded default) or PostgreSQL.

Every SQLAlchemy error is translated here (most specific first): a corrupt file is an
:class:`~meta_tokenvault.errors.IntegrityError`, an unreachable/locked/read-only database is
:class:`~meta_tokenvault.errors.DatabaseUnavailable`, a unique violation is
:class:`~meta_tokenvault.errors.AlreadyExists`. Rows handed out are the plain records of
:mod:`meta_tokenvault.types`, never ORM objects.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Engine, bindparam, create_engine, delete, event, func, insert, or_, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from .. import migrations, models, queries, sqlitedb
from ..audit import AUDIT_HEAD, GENESIS, audit_hash, encode_head, link_after, missing_head, read_head
from ..errors import (
    AlreadyExists,
    AuditChainBroken,
    DatabaseUnavailable,
    IntegrityError,
    NotFound,
    VaultError,
)
from ..fileutil import ensure_private_dir
from ..queries import BlobRecord
from ..types import (
    AgeSource,
    AuditEventRecord,
    BusinessRecord,
    ProvisioningRecord,
    ReminderRecord,
    RotationRecord,
    SystemUserRecord,
    TokenRecord,
    TokenSource,
    TokenStatus,
    TokenVersionRecord,
    as_utc,
)
from .sql_direct import DirectStatements


def _db(dt: datetime) -> datetime:
    """Datetimes are stored in UTC; columns give them back aware (naive values from older drivers are UTC)."""
    return as_utc(dt)


def _db_opt(dt: datetime | None) -> datetime | None:
    return None if dt is None else as_utc(dt)


def _aware(dt: datetime | None) -> datetime | None:
    return None if dt is None else as_utc(dt)


def _req(dt: datetime | None) -> datetime:
    assert dt is not None
    return as_utc(dt)


def _translate(exc: sa_exc.SQLAlchemyError, url: str) -> VaultError:
    """One table from SQLAlchemy errors to ours. The URL is shown without its password."""
    shown = _safe_url(url)
    text = str(getattr(exc, "orig", exc)).splitlines()[0] if str(getattr(exc, "orig", exc)) else type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, sa_exc.IntegrityError):
        return AlreadyExists(f"The database refused a duplicate: {text}.")
    if "file is not a database" in lowered or "malformed" in lowered or "file is encrypted" in lowered:
        return IntegrityError(
            f"The metadata database {shown} is corrupt or not a tokenvault database ({text}).",
            hint="Restore tokenvault.db from a backup; nothing was changed.",
        )
    if "readonly" in lowered or "read-only" in lowered:
        return DatabaseUnavailable(
            f"The metadata database {shown} is read-only ({text}).",
            hint="Make TOKENVAULT_HOME and tokenvault.db writable by this user; nothing was changed.",
        )
    if "locked" in lowered or "busy" in lowered:
        return DatabaseUnavailable(
            f"The metadata database {shown} is locked by another process ({text}).",
            hint="Retry in a moment; if it persists, look for a stuck tokenvault process.",
        )
    return DatabaseUnavailable(f"The metadata database {shown} failed: {text}.")


def _safe_url(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a bad URL is reported elsewhere; never echo a password
        return "(database URL)"


def _sqlite_path(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


class SqlStore:
    """The MetadataStore port on SQLAlchemy. Thread-safe: one engine; a Session per call (PostgreSQL, SQLite in
    memory), or, for a SQLite file, one kept connection and Session whose transactions take turns."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._audit_head_missing = True
        self._ambient = threading.local()  # this thread's open transaction() session, if any
        # SQLite has one writer at a time and every transaction here begins IMMEDIATE: this process's threads
        # queue on a lock rather than in SQLite's busy handler (which sleeps up to 100 ms between tries).
        self._serial = threading.RLock() if engine.dialect.name == "sqlite" else None
        self._direct = DirectStatements(engine)
        # A SQLite file: its transactions take turns (_serial) on one connection and one Session, kept open
        # (see session()); None until the first one, and again after an error of the database.
        self._one_writer = self._serial is not None and _sqlite_path(url) is not None
        self._writer: Session | None = None
        self._head_written: tuple[str, bytes | None, int, str] | None = None  # (value, key, seq, hash) last written
        # INSERT ... ON CONFLICT DO NOTHING where the dialect has it: a row that exists already is one statement's
        # rowcount of 0, without a SELECT before it and without an error (which spoils a PostgreSQL transaction)
        self._lease_if_absent = _insert_if_absent(_W.leases, engine.dialect.name)
        self._blob_if_absent = _insert_if_absent(_W.blobs, engine.dialect.name)

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, url: str, *, create: bool = False) -> SqlStore:
        """Open the store at ``url``; with ``create`` make it (SQLite file 0600) and migrate.

        Raises :class:`DatabaseUnavailable` when it does not exist and ``create`` is false.
        """
        path = _sqlite_path(url)
        if path is not None:
            if not path.exists():
                if not create:
                    raise DatabaseUnavailable(
                        f"No tokenvault database at {path}.",
                        hint="Run `tokenvault init` first (or set TOKENVAULT_HOME / TOKENVAULT_DB_URL).",
                    )
                ensure_private_dir(path.parent)
                try:  # private from birth: sqlite would otherwise create it with the umask's mode
                    os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise DatabaseUnavailable(f"Cannot create {path}: {exc.strerror}.",
                                              hint="Make TOKENVAULT_HOME writable.") from None
        engine = _make_engine(url)
        store = cls(url, engine)
        try:
            with engine.begin() as conn:
                version = migrations.current_version(conn)
                if version > migrations.LATEST:
                    raise DatabaseUnavailable(
                        f"The database {_safe_url(url)} has schema version {version}, newer than this "
                        f"tokenvault ({migrations.LATEST}).",
                        hint="Upgrade tokenvault on this host; nothing was changed.")
                if version == 0 and not create:
                    if path is not None and path.stat().st_size == 0:  # init died early, or the file was truncated
                        raise DatabaseUnavailable(
                            f"The database {path} is empty (0 bytes): `tokenvault init` never finished, or the "
                            "file was truncated.", hint="If it held your tokens, restore tokenvault.db from a "
                            "backup; otherwise run `tokenvault init`. Nothing was changed.")
                    raise DatabaseUnavailable(
                        f"The database {_safe_url(url)} has no tokenvault schema.",
                        hint="Run `tokenvault init` first.",
                    )
                if create or version < migrations.LATEST:
                    migrations.migrate(conn)
            if path is not None and "?" not in url:  # a new file is created empty, and connected before its
                with engine.connect() as conn:      # schema: switched to WAL now (a no-op when it already is)
                    sqlitedb.switch_to_wal(cast(sqlite3.Connection, conn.connection.driver_connection), path)
        except sa_exc.SQLAlchemyError as exc:
            engine.dispose()
            raise _translate(exc, url) from None
        except RuntimeError as exc:
            engine.dispose()
            raise DatabaseUnavailable(str(exc), hint="Upgrade tokenvault on this host; nothing was changed.") from None
        except BaseException:
            engine.dispose()
            raise
        return store

    @property
    def display_url(self) -> str:
        """The database URL without its password."""
        return _safe_url(self.url)

    def close(self) -> None:
        self._drop_writer()
        self.engine.dispose()

    def _drop_writer(self) -> None:
        """Close the kept Session and give its connection back (the next transaction opens new ones)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            bind = writer.bind
            writer.close()
            if isinstance(bind, Connection):
                bind.close()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back on any error; SQLAlchemy errors translated.

        Inside :meth:`transaction` (on the same thread) it is that transaction's session, flushed at the end
        of the block so that an error is raised by the call that caused it."""
        ambient: Session | None = getattr(self._ambient, "session", None)
        try:
            if ambient is not None:
                yield ambient
                ambient.flush()
                if ambient.identity_map:
                    ambient.expunge_all()  # the next call reads rows afresh, as in a session of its own
                return
            if self._one_writer:
                assert self._serial is not None
                with self._serial:
                    yield from self._writer_transaction()
                return
            with self._serial or nullcontext(), Session(self.engine, expire_on_commit=False) as session, \
                    session.begin():
                yield session
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, self.url) from None

    def _writer_transaction(self) -> Iterator[Session]:
        """A transaction of a SQLite file (the caller holds ``_serial``), on the kept connection, which it begins
        (``BEGIN IMMEDIATE``) and commits or rolls back itself; the kept Session joins it when the ORM is used
        (``rollback_only``: it flushes at the end, and its rollback is the transaction's). A Session and a pool
        checkout per transaction cost more CPU than a rotation step's statements, and one connection keeps its
        page cache from one transaction to the next. Rows are not kept in the Session afterwards (each transaction
        reads afresh); an error of the database (or an interrupt) drops both: the next transaction opens new
        ones, as before."""
        writer = self._writer
        if writer is None:
            writer = self._writer = Session(bind=self.engine.connect(), expire_on_commit=False,
                                            join_transaction_mode="rollback_only")
        conn = writer.bind
        assert isinstance(conn, Connection)
        try:
            transaction = conn.begin()
            try:
                yield writer
                if writer.in_transaction():
                    writer.commit()  # what the ORM holds is flushed; the transaction is committed below
                transaction.commit()
            except BaseException:
                if writer.in_transaction():
                    writer.rollback()  # (rollback_only: the connection's transaction too)
                if transaction.is_active:
                    transaction.rollback()
                raise
        except (sa_exc.IntegrityError, VaultError):
            raise  # refused by a constraint or by the store's own checks: rolled back, the connection is sound
        except BaseException:
            self._drop_writer()
            raise
        finally:
            if writer.identity_map:
                writer.expunge_all()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every store call made inside (on this thread) joins ONE transaction: one commit at the end, or
        everything rolled back on an error. Nested, it is a savepoint: an error inside undoes only what the
        inner block wrote, and the outer transaction goes on (a failed call spoils the transaction up to the
        nearest savepoint, so nest one around calls whose errors are caught, such as acquire_lease). It holds
        the write lock until the end: keep network calls out of it."""
        ambient: Session | None = getattr(self._ambient, "session", None)
        if ambient is not None:
            head = getattr(self._ambient, "head", None)
            try:
                self._flush_audit(ambient)  # the events before the savepoint are not its own
                with ambient.begin_nested():
                    # SAVEPOINT now: the Session would emit it at its first ORM use only, and the statements run
                    # through the driver (_x) do not use it: without this they were not undone with the savepoint
                    ambient.connection()
                    yield
                    self._flush_audit(ambient)  # its events are written (or refused) inside it
            except sa_exc.SQLAlchemyError as exc:
                self._undo_audit(head)  # the savepoint's audit events are undone: so is what they did to the head
                raise _translate(exc, self.url) from None
            except BaseException:
                self._undo_audit(head)
                raise
            return
        with self.session() as s:
            # the kept connection of a SQLite file, in its transaction already (no Session transaction needed)
            conn = s.bind if isinstance(s.bind, Connection) else None
            self._ambient.session, self._ambient.head, self._ambient.conn, self._ambient.audit = s, None, conn, []
            try:
                yield
                self._write_head(s)
            finally:
                self._ambient.session = self._ambient.head = self._ambient.conn = self._ambient.audit = None

    def _undo_audit(self, head: _Head | None) -> None:
        self._ambient.head = head
        self._ambient.audit = []

    def _conn(self, s: Session) -> Connection:
        """``s.connection()``; inside :meth:`transaction`, the one connection it runs on, looked up once (savepoints
        run on the same connection)."""
        if s is not getattr(self._ambient, "session", None):
            return s.connection()
        conn: Connection | None = getattr(self._ambient, "conn", None)
        if conn is None:
            conn = self._ambient.conn = s.connection()
        return conn

    def _x(self, s: Session, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        """Run one of the statements below (``_W``, ``_T``) on the session's connection through the driver
        directly (:mod:`.sql_direct`: SQLAlchemy's per-statement work costs more than the statement)."""
        return self._direct.execute(self._conn(s), stmt, params)

    def _flush_audit(self, s: Session) -> None:
        """Insert the audit events this thread's transaction appended and has not written yet (one
        ``executemany``): before the transaction (or a savepoint) ends, and before the trail is read in it."""
        pending: list[dict[str, Any]] | None = getattr(self._ambient, "audit", None)
        if pending:
            self._ambient.audit = []
            self._direct.executemany(self._conn(s), _W.audit_insert, pending)

    def _write_head(self, s: Session) -> None:
        """Write the audit events and the head that this thread's transaction moved (:meth:`append_audit` writes
        the head once per transaction, at its end, rather than once per event; its MAC is computed then, once)."""
        self._flush_audit(s)
        head: _Head | None = getattr(self._ambient, "head", None)
        if head is not None and head.dirty:
            value = encode_head(head.seq, head.hash, head.key)
            self._x(s, _W.setting_update, {"b_key": AUDIT_HEAD, "value": value})
            self._ambient.head = _Head(head.seq, head.hash, head.key, dirty=False)
            self._head_written = (value, head.key, head.seq, head.hash)

    def _read_head(self, value: str | None, key: bytes | None) -> tuple[int, str]:
        """:func:`~meta_tokenvault.audit.read_head`; for the very value this store last wrote with ``key`` (the
        next transaction of a bulk run finds it), its seq and hash as written, without parsing it and checking
        its MAC again: any other value is read and checked."""
        written = self._head_written
        if written is not None and value == written[0] and key == written[1]:
            return written[2], written[3]
        return read_head(value, key)

    def schema_version(self) -> int:
        try:
            with self.engine.connect() as conn:
                return migrations.current_version(conn)
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, self.url) from None

    def journal_mode(self) -> str | None:
        """SQLite's journal mode, lower case (``wal`` normally: see :mod:`meta_tokenvault.sqlitedb`); None on
        another database."""
        if self.engine.dialect.name != "sqlite":
            return None
        try:
            with self.engine.connect() as conn:
                return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, self.url) from None

    # ------------------------------------------------------------------ settings and wrapped keys
    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
            self._write_head(s)
            row = s.get(models.SettingRow, key)
            return row.value if row else None

    def set_setting(self, key: str, value: str) -> None:
        with self.session() as s:
            row = s.get(models.SettingRow, key)
            if row is None:
                s.add(models.SettingRow(key=key, value=value))
            else:
                row.value = value

    def get_wrapped_key(self, purpose: str) -> tuple[str, bytes] | None:
        with self.session() as s:
            row = s.get(models.WrappedKeyRow, purpose)
            return (row.key_id, bytes(row.wrapped)) if row else None

    def put_wrapped_key(self, purpose: str, key_id: str, wrapped: bytes, *, expected_key_id: str | None = None) -> None:
        """Insert, or replace only when the stored key id is ``expected_key_id`` (re-wrap)."""
        with self.session() as s:
            row = s.get(models.WrappedKeyRow, purpose)
            if row is None:
                s.add(models.WrappedKeyRow(purpose=purpose, key_id=key_id, wrapped=wrapped))
            elif expected_key_id is not None and row.key_id == expected_key_id:
                row.key_id, row.wrapped = key_id, wrapped
            elif row.key_id != key_id:
                raise AlreadyExists(f"The {purpose} key exists already; refusing to replace it.")

    # ------------------------------------------------------------------ businesses
    def add_business(self, name: str, business_id: str, app_id: str, now: datetime) -> BusinessRecord:
        with self.session() as s:
            if s.exec(select(models.BusinessRow).where(col(models.BusinessRow.name) == name)).first():
                raise AlreadyExists(f"A business named {name!r} exists already.",
                                    hint="Choose another name, or remove the existing one first.")
            row = models.BusinessRow(name=name, business_id=business_id, app_id=app_id, created_at=_db(now))
            s.add(row)
            s.flush()
            return _business(row)

    def get_business(self, name: str) -> BusinessRecord:
        with self.session() as s:
            row = s.exec(select(models.BusinessRow).where(col(models.BusinessRow.name) == name)).first()
            if row is None:
                raise NotFound(f"No business named {name!r}.",
                               hint="Register it with `tokenvault business add NAME --business-id ID --app-id ID`.")
            return _business(row)

    def business_by_pk(self, pk: int) -> BusinessRecord:
        with self.session() as s:
            row = s.get(models.BusinessRow, pk)
            if row is None:
                raise NotFound(f"No business with internal id {pk}.")
            return _business(row)

    def list_businesses(self) -> list[BusinessRecord]:
        with self.session() as s:
            return [_business(r) for r in s.exec(select(models.BusinessRow).order_by(col(models.BusinessRow.name)))]

    # ------------------------------------------------------------------ system users
    def upsert_system_user(
        self,
        business_pk: int,
        su_id: str,
        name: str,
        role: str,
        created_time: datetime | None,
        now: datetime,
    ) -> None:
        with self.session() as s:
            row = s.get(models.SystemUserRow, su_id)
            if row is None:
                s.add(models.SystemUserRow(
                    id=su_id, business_pk=business_pk, name=name, role=role.upper(),
                    created_time=_db_opt(created_time), first_seen_at=_db(now), synced_at=_db(now),
                ))
            else:
                row.name, row.role, row.synced_at = name, role.upper(), _db(now)
                if created_time is not None:
                    row.created_time = _db(created_time)

    def set_manual_created(self, su_id: str, created: datetime) -> None:
        with self.session() as s:
            row = s.get(models.SystemUserRow, su_id)
            if row is None:
                raise NotFound(f"No system user {su_id}.", hint="Run `tokenvault system-users sync` first.")
            row.manual_created_time = _db(created)

    def mark_app_installed(self, su_id: str, installed: bool = True) -> None:
        with self.session() as s:
            row = s.get(models.SystemUserRow, su_id)
            if row is not None:
                row.app_installed = installed

    def list_system_users(self, business_name: str | None = None) -> list[SystemUserRecord]:
        with self.session() as s:
            query = select(models.SystemUserRow, models.BusinessRow).join(
                models.BusinessRow, col(models.BusinessRow.id) == models.SystemUserRow.business_pk
            )
            if business_name is not None:
                query = query.where(col(models.BusinessRow.name) == business_name)
            rows = s.exec(query.order_by(col(models.SystemUserRow.id))).all()
            return [_system_user(su, b) for su, b in rows]

    def get_system_user(self, su_id: str) -> SystemUserRecord:
        with self.session() as s:
            row = s.exec(
                select(models.SystemUserRow, models.BusinessRow)
                .join(models.BusinessRow, col(models.BusinessRow.id) == models.SystemUserRow.business_pk)
                .where(col(models.SystemUserRow.id) == su_id)
            ).first()
            if row is None:
                raise NotFound(f"No system user {su_id}.", hint="Run `tokenvault system-users sync` first.")
            return _system_user(*row)

    # ------------------------------------------------------------------ tokens
    def create_token(
        self,
        label: str,
        business_pk: int,
        version: dict[str, Any],
        now: datetime,
        max_age_days: int | None = None,
    ) -> int:
        """Create a token with its first version (``version``: TokenVersionRow fields). Returns the id."""
        with self.session() as s:
            if s.exec(select(models.TokenRow.id).where(col(models.TokenRow.label) == label)).first() is not None:
                raise AlreadyExists(f"A token labelled {label!r} exists already; nothing was overwritten.",
                                    hint="Choose another label, or replace it with `tokenvault token rotate`.")
            token = models.TokenRow(label=label, business_pk=business_pk, current_version=1,
                                    max_age_days=max_age_days, created_at=_db(now))
            s.add(token)
            s.flush()
            assert token.id is not None
            s.add(_version_row(token.id, 1, version))
            return token.id

    def reserve_token_id(self, label: str, business_pk: int, now: datetime, max_age_days: int | None = None,
                         on_invalid: str | None = None) -> int:
        """Create the token row with no version yet (current_version 0) so a secret can be bound to its id.
        ``on_invalid``: ``alert`` (None: reissue, the default policy)."""
        with self.session() as s:
            if s.exec(select(models.TokenRow.id).where(col(models.TokenRow.label) == label)).first() is not None:
                raise AlreadyExists(f"A token labelled {label!r} exists already; nothing was overwritten.",
                                    hint="Choose another label, or replace it with `tokenvault token rotate`.")
            token = models.TokenRow(label=label, business_pk=business_pk, current_version=0,
                                    max_age_days=max_age_days, created_at=_db(now),
                                    on_invalid=None if on_invalid in (None, "reissue") else on_invalid)
            s.add(token)
            s.flush()
            assert token.id is not None
            return token.id

    def drop_empty_token(self, token_id: int) -> None:
        """Remove a reserved token row that never got a version (a failed import)."""
        with self.session() as s:
            has_versions = s.exec(
                select(models.TokenVersionRow.id).where(col(models.TokenVersionRow.token_id) == token_id)
            ).first()
            if has_versions is None:
                s.exec(delete(models.TokenRow).where(col(models.TokenRow.id) == token_id))

    def add_version(self, token_id: int, version: int, fields: dict[str, Any], *, make_current: bool) -> None:
        with self.session() as s:
            self._x(s, _W.version_insert, _version_values(token_id, version, fields))
            if make_current:
                result = self._x(s, _W.current_version_update, {"b_id": token_id, "current_version": version})
                assert result.rowcount

    def update_version(self, token_id: int, version: int, **fields: Any) -> None:
        """Update fields of one version (status, verified_at, debug_summary, revoked_at, expires_at...)."""
        values: dict[str, Any] = {}
        for key, value in fields.items():
            if isinstance(value, datetime):
                value = as_utc(value)
            elif isinstance(value, (list, tuple, dict)):
                value = json.dumps(value, sort_keys=True)
            elif isinstance(value, (TokenStatus, TokenSource)):
                value = value.value
            values[key] = value
        with self.session() as s:  # one UPDATE statement (bulk rotation runs this a few times per token)
            result = self._x(s, _W.version_update, {**values, "b_token_id": token_id,
                                                                "b_version": version})
            if not result.rowcount:
                raise NotFound(f"Token id {token_id} has no version {version}.")

    def promote(self, token_id: int, new_version: int, old_version: int | None, old_status: TokenStatus) -> None:
        """In one transaction: ``new_version`` becomes current and active, ``old_version`` gets ``old_status``."""
        with self.session() as s:  # three UPDATE statements built once (bulk rotation promotes every token)
            result = self._x(s, _W.current_version_update, {"b_id": token_id, "current_version": new_version})
            assert result.rowcount
            self._x(s, _W.version_update, {"b_token_id": token_id, "b_version": new_version,
                                             "status": TokenStatus.ACTIVE.value})
            if old_version is not None and old_version != new_version:
                self._x(s, _W.version_status_update, {"b_token_id": token_id, "b_version": old_version,
                                                        "b_from": TokenStatus.ACTIVE.value,
                                                        "status": old_status.value})

    def set_max_age(self, token_id: int, days: int | None) -> None:
        with self.session() as s:
            token = s.get(models.TokenRow, token_id)
            assert token is not None
            token.max_age_days = days

    def set_on_invalid(self, token_id: int, policy: str) -> None:
        """What run-due does when Meta invalidates the token: ``reissue`` or ``alert``."""
        with self.session() as s:
            token = s.get(models.TokenRow, token_id)
            assert token is not None
            token.on_invalid = None if policy == "reissue" else policy

    def token_id(self, label: str) -> int:
        with self.session() as s:
            tid = s.exec(select(models.TokenRow.id).where(col(models.TokenRow.label) == label)).first()
            if tid is None:
                raise NotFound(f"No token labelled {label!r}.", hint="See `tokenvault token list`.")
            return tid

    def get_token(self, label: str, *, with_history: bool = False) -> TokenRecord:
        """``label``'s current version (and, ``with_history``, every version, newest first).

        The statements are :mod:`meta_tokenvault.queries`', shared with the fast read path. Raises NotFound."""
        with self.session() as s:
            row = self._x(s, _T.token_by_label, {"label": label}).first()
            versions = (self._x(s, _T.versions_of_token, {"token_id": row[0]}).all()
                        if with_history and row is not None else ())
            return queries.token_from_rows(label, row, versions)

    def list_tokens(self) -> list[TokenRecord]:
        """Every token with a current version, by label: one query, rows straight to records (no ORM objects)."""
        with self.session() as s:
            return queries.token_records(self._conn(s).execute(text(queries.ALL_TOKENS)))

    def list_tokens_json(self) -> list[str]:
        """:meth:`list_tokens`' tokens as their JSON texts (``TokenRecord.as_json``, encoded), straight from the
        rows: :func:`meta_tokenvault.queries.token_json_lines`."""
        with self.session() as s:
            return queries.token_json_lines(self._conn(s).execute(text(queries.ALL_TOKENS)))

    def version_record(self, token_id: int, version: int) -> TokenVersionRecord:
        with self.session() as s:
            row = self._x(s, _W.version_by_number, {"b_token_id": token_id, "b_version": version}).first()
            if row is None:
                raise NotFound(f"Token id {token_id} has no version {version}.")
            return _version(row)

    def max_version(self, token_id: int) -> int:
        with self.session() as s:
            value = self._x(s, _W.max_version, {"b_token_id": token_id}).scalar()
            return int(value or 0)

    def find_by_fingerprint(self, fingerprint: str) -> list[tuple[str, int]]:
        with self.session() as s:
            rows = s.exec(
                select(models.TokenRow.label, models.TokenVersionRow.version)
                .join(models.TokenRow, col(models.TokenRow.id) == models.TokenVersionRow.token_id)
                .where(col(models.TokenVersionRow.fingerprint) == fingerprint)
            ).all()
            return [(label, version) for label, version in rows]

    def version_fingerprints(self) -> list[tuple[str, int, str, str, str, bool]]:
        """(label, version, status, fingerprint, last4, revoked?) of every version of every token: what
        `tokenvault scan` matches candidates against (one query, no secret read)."""
        with self.session() as s:
            t, v = models.TokenRow, models.TokenVersionRow
            rows = self._conn(s).execute(
                sa_select(col(t.label), col(v.version), col(v.status), col(v.fingerprint), col(v.last4),
                          col(v.revoked_at)).join(t, col(t.id) == col(v.token_id))
            ).all()
            return [(label, version, status, fp, last4, revoked_at is not None)
                    for label, version, status, fp, last4, revoked_at in rows]

    # ------------------------------------------------------------------ secret blobs (local backend)
    def put_blob(self, kind: str, owner_id: int, version: int, key_id: str, wrapped: bytes, ciphertext: bytes) -> None:
        values = {"kind": kind, "owner_id": owner_id, "version": version, "key_id": key_id, "wrapped_key": wrapped,
                  "ciphertext": ciphertext}
        with self.session() as s:
            if self._blob_if_absent is not None:
                written = self._x(s, self._blob_if_absent, values).rowcount
            elif self._x(s, _W.blob_exists, {"b_kind": kind, "b_owner_id": owner_id, "b_version": version}).first():
                written = 0
            else:
                written = self._x(s, _W.blob_insert, values).rowcount
            if not written:
                raise AlreadyExists(f"A {kind} secret for record {owner_id} version {version} exists already; "
                                    "it was not overwritten.")

    def get_blob(self, kind: str, owner_id: int, version: int) -> BlobRecord | None:
        with self.session() as s:
            row = self._x(s, _T.blob,
                                         {"kind": kind, "owner_id": owner_id, "version": version}).first()
            return queries.blob_record(row)

    def delete_blob(self, kind: str, owner_id: int, version: int) -> None:
        with self.session() as s:
            s.exec(delete(models.SecretBlobRow).where(
                col(models.SecretBlobRow.kind) == kind, col(models.SecretBlobRow.owner_id) == owner_id,
                col(models.SecretBlobRow.version) == version))

    def blobs_not_under(self, key_id: str, limit: int = 500) -> list[BlobRecord]:
        """Blobs whose data key is wrapped by another master key than ``key_id`` (for keys rotate)."""
        with self.session() as s:
            rows = s.exec(select(models.SecretBlobRow).where(col(models.SecretBlobRow.key_id) != key_id)
                          .order_by(col(models.SecretBlobRow.id)).limit(limit)).all()
            return [_blob(r) for r in rows]

    def key_ids_in_use(self) -> set[str]:
        with self.session() as s:
            blob_ids = set(s.exec(select(models.SecretBlobRow.key_id).distinct()).all())
            wrapped_ids = set(s.exec(select(models.WrappedKeyRow.key_id).distinct()).all())
            return blob_ids | wrapped_ids

    def rewrap_blob(self, blob_id: int, expected_key_id: str, key_id: str, wrapped: bytes) -> bool:
        """Compare-and-swap the wrapped data key of one blob; False if someone else changed it."""
        with self.session() as s:
            result = s.exec(update(models.SecretBlobRow)
                            .where(col(models.SecretBlobRow.id) == blob_id,
                                   col(models.SecretBlobRow.key_id) == expected_key_id)
                            .values(key_id=key_id, wrapped_key=wrapped))
            return bool(result.rowcount)

    # ------------------------------------------------------------------ audit trail
    def append_audit(self, actor: str, action: str, subject: str, details: dict[str, Any], now: datetime,
                     head_key: bytes | None = None) -> int:
        """Append one event to the hash chain, serialised with other writers by locking the head row.

        ``head_key`` (:func:`meta_tokenvault.audit.head_key`) checks the head's MAC and keys the new head. Raises
        :class:`AuditChainBroken` for a head that does not verify, or a missing head over existing events."""
        if self._audit_head_missing:
            # Make sure the head row exists *before* locking it: FOR UPDATE on a missing row locks nothing,
            # so two first appends could otherwise race (PostgreSQL).
            try:
                with self.session() as s:
                    if s.get(models.SettingRow, AUDIT_HEAD) is None:
                        last = self._x(s, _T.audit_last_seq).scalar()
                        if last:
                            raise missing_head(int(last))
                        s.add(models.SettingRow(key=AUDIT_HEAD, value=encode_head(0, GENESIS)))
            except AlreadyExists:
                pass
            self._audit_head_missing = False
        # Statements built once: bulk rotation appends several events per token. Inside transaction(), the
        # head is read (and locked, and its MAC checked) by the first event only; the events after it follow the
        # link before them, and the head (with its MAC) is written once, when the transaction ends.
        in_transaction = getattr(self._ambient, "session", None) is not None
        with self.session() as s:
            cached: _Head | None = getattr(self._ambient, "head", None) if in_transaction else None
            value: str | None = None
            if cached is not None:
                link = link_after(cached.seq, cached.hash, actor, action, subject, details, now, head_key, head=False)
            else:
                head = self._x(s, _W.head_for_update, {"b_key": AUDIT_HEAD}).first()
                if head is None:  # deleted since we looked
                    last = self._x(s, _T.audit_last_seq).scalar()
                    if last:
                        raise missing_head(int(last))
                value = head[0] if head else None
                seq, prev = self._read_head(value, head_key)
                keep = in_transaction and value is not None  # the head is written at the transaction's end
                link = link_after(seq, prev, actor, action, subject, details, now, head_key, head=not keep)
            row = {"seq": link.seq, "at": link.at, "actor": link.actor, "action": link.action, "subject": link.subject,
                   "details": link.details, "prev_hash": link.prev_hash, "hash": link.hash}
            if in_transaction:  # inserted with the transaction's other events, in one executemany (_flush_audit)
                self._ambient.audit.append(row)
            else:
                self._x(s, _W.audit_insert, row)
            if cached is None and value is None:
                self._x(s, _W.setting_insert, {"key": AUDIT_HEAD, "value": link.head})
            elif not in_transaction:
                self._x(s, _W.setting_update, {"b_key": AUDIT_HEAD, "value": link.head})
            if in_transaction:
                self._ambient.head = _Head(link.seq, link.hash, head_key, dirty=cached is not None or value is not None)
            return link.seq

    def key_audit_head(self, head_key: bytes, expected_seq: int) -> None:
        """Give the head at event ``expected_seq`` its MAC if it has none (a keyed head is checked instead).
        Raises AuditChainBroken when the head moved on since it was verified or its MAC does not match."""
        with self.session() as s:
            self._write_head(s)
            head = self._x(s, _W.head_for_update, {"b_key": AUDIT_HEAD}).first()
            if head is None:
                return  # an empty trail (verify_audit refused a missing head over events)
            seq, digest = read_head(head[0])
            if seq != expected_seq:
                raise AuditChainBroken("The audit trail changed while it was being verified.",
                                       hint="Run `tokenvault audit verify --key-head` again.")
            if "mac" in json.loads(head[0]):
                read_head(head[0], head_key)
                return
            keyed = encode_head(seq, digest, head_key)
            self._x(s, _W.setting_update, {"b_key": AUDIT_HEAD, "value": keyed})

    def list_audit(self, limit: int | None = None, subject: str | None = None) -> list[AuditEventRecord]:
        with self.session() as s:
            self._flush_audit(s)
            query = select(models.AuditEventRow).order_by(col(models.AuditEventRow.seq).desc())
            if subject is not None:
                query = query.where(col(models.AuditEventRow.subject) == subject)
            if limit is not None:
                query = query.limit(limit)
            rows = list(s.exec(query).all())
            rows.reverse()
            return [_audit(r) for r in rows]

    def verify_audit(self, head_key: bytes | None = None) -> int:
        """Check the whole chain, and the head's MAC with ``head_key``; returns the number of events.
        Raises :class:`AuditChainBroken`."""
        with self.session() as s:
            self._write_head(s)
            head_row = s.get(models.SettingRow, AUDIT_HEAD)
            prev, expected_seq, count = GENESIS, 1, 0
            for row in s.exec(select(models.AuditEventRow).order_by(col(models.AuditEventRow.id))):
                if row.seq != expected_seq:
                    raise AuditChainBroken(
                        f"Audit event #{row.seq} is out of place (expected #{expected_seq}): "
                        "an event was deleted or the trail reordered.", event_id=row.seq)
                if row.prev_hash != prev:
                    raise AuditChainBroken(
                        f"Audit event #{row.seq} does not follow the event before it: "
                        "an earlier event was deleted, edited or reordered.", event_id=row.seq)
                at = _db(row.at)
                if audit_hash(row.seq, row.prev_hash, at, row.actor, row.action, row.subject, row.details) != row.hash:
                    raise AuditChainBroken(f"Audit event #{row.seq} was edited after it was written.",
                                           event_id=row.seq)
                prev, expected_seq, count = row.hash, expected_seq + 1, count + 1
            if head_row is None and count:
                raise missing_head(count)
            head_seq, head_hash = read_head(head_row.value if head_row else None, head_key)
            if head_seq != count or head_hash != prev:
                raise AuditChainBroken(
                    f"The audit trail ends at event #{count} but its head records #{head_seq}: "
                    "the newest events were deleted.", event_id=count + 1)
            return count

    # ------------------------------------------------------------------ reminders
    def add_reminder(self, label: str, action: str, business_name: str, system_user_id: str | None,
                     payload: dict[str, Any], due_at: datetime, reason: str, now: datetime) -> int:
        """Record deferred work; an existing open reminder for the same label and action is reused."""
        with self.session() as s:
            existing = s.exec(select(models.ReminderRow).where(
                col(models.ReminderRow.label) == label, col(models.ReminderRow.action) == action,
                col(models.ReminderRow.status).in_(["waiting", "due"]))).first()
            if existing is not None:
                existing.due_at = _db(due_at)
                existing.payload = json.dumps(payload, sort_keys=True)
                existing.reason = reason
                existing.system_user_id = system_user_id
                assert existing.id is not None
                return existing.id
            row = models.ReminderRow(label=label, action=action, business_name=business_name,
                                     system_user_id=system_user_id, payload=json.dumps(payload, sort_keys=True),
                                     due_at=_db(due_at), reason=reason, created_at=_db(now))
            s.add(row)
            s.flush()
            assert row.id is not None
            return row.id

    def list_reminders(self, *, open_only: bool = False) -> list[ReminderRecord]:
        with self.session() as s:
            query = select(models.ReminderRow).order_by(col(models.ReminderRow.due_at), col(models.ReminderRow.id))
            if open_only:
                query = query.where(col(models.ReminderRow.status).in_(["waiting", "due", "running"]))
            return [_reminder(r) for r in s.exec(query)]

    def update_reminder(self, reminder_id: int, **fields: Any) -> None:
        with self.session() as s:
            row = s.get(models.ReminderRow, reminder_id)
            if row is None:
                raise NotFound(f"No reminder #{reminder_id}.", hint="See `tokenvault reminders list`.")
            for key, value in fields.items():
                setattr(row, key, as_utc(value) if isinstance(value, datetime) else value)

    def claim_reminder(self, reminder_id: int, expected_status: str, new_status: str, now: datetime | None = None,
                       stale_after: timedelta | None = None) -> bool:
        """Move a reminder between statuses only if it is still in ``expected_status`` (exactly once).

        A reminder stuck in ``running`` (its run-due died) can be re-claimed once ``stale_after`` has
        passed since it was claimed.
        """
        with self.session() as s:
            condition = col(models.ReminderRow.status) == expected_status
            if expected_status == "running" and now is not None and stale_after is not None:
                condition = condition & (col(models.ReminderRow.claimed_at) < _db(now - stale_after))
            values: dict[str, Any] = {"status": new_status}
            if now is not None:
                values["claimed_at"] = _db(now)
            result = s.exec(update(models.ReminderRow)
                            .where(col(models.ReminderRow.id) == reminder_id, condition)
                            .values(**values))
            return bool(result.rowcount)

    # ------------------------------------------------------------------ rotation journal and leases
    def start_rotation(self, token_id: int, label: str, from_version: int, compromised: bool, reason: str,
                       now: datetime, kind: str = "rotate", *, step: str = "started",
                       to_version: int | None = None) -> int:
        """Journal a new rotation (``step``/``to_version``: where it is already, when the caller journals its
        first steps in the same transaction)."""
        with self.session() as s:
            result = self._x(s, _W.rotation_insert, {
                "token_id": token_id, "label": label, "from_version": from_version, "compromised": compromised,
                "step": step, "state": "running", "reason": reason, "started_at": _db(now),
                "updated_at": _db(now), "kind": kind, "to_version": to_version})
            rotation_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            assert rotation_id is not None
            return int(rotation_id)

    def update_rotation(self, rotation_id: int, now: datetime, **fields: Any) -> None:
        with self.session() as s:  # one UPDATE statement: a rotation journals each of its steps
            result = self._x(s, _W.rotation_update, {**fields, "updated_at": _db(now),
                                                                 "b_id": rotation_id})
            if not result.rowcount:
                raise NotFound(f"No rotation #{rotation_id}.")

    def open_rotation(self, token_id: int) -> RotationRecord | None:
        with self.session() as s:
            row = self._x(s, _W.open_rotation, {"b_token_id": token_id}).first()
            return _rotation(row) if row else None

    def open_rotations(self) -> list[RotationRecord]:
        with self.session() as s:
            rows = s.exec(select(models.RotationRow).where(col(models.RotationRow.state).in_(["running", "deferred"]))
                          .order_by(col(models.RotationRow.id))).all()
            return [_rotation(r) for r in rows]

    def get_rotation(self, rotation_id: int) -> RotationRecord:
        with self.session() as s:
            row = self._x(s, _W.rotation_by_id, {"b_id": rotation_id}).first()
            if row is None:
                raise NotFound(f"No rotation #{rotation_id}.")
            return _rotation(row)

    def acquire_lease(self, resource: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take the lease on ``resource`` if free or expired (or already ours). Works across hosts."""
        expires = _db(now + ttl)
        try:
            with self.session() as s:
                self._x(s, _W.lease_insert, {"resource": resource, "owner": owner, "expires_at": expires})
            return True
        except AlreadyExists:
            pass
        with self.session() as s:
            result = s.exec(update(models.LeaseRow)
                            .where(col(models.LeaseRow.resource) == resource,
                                   (col(models.LeaseRow.expires_at) < _db(now)) | (col(models.LeaseRow.owner) == owner))
                            .values(owner=owner, expires_at=expires))
            return bool(result.rowcount)

    def take_free_lease(self, resource: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take the lease on ``resource`` only if there is no lease row for it at all; False (nothing written) when
        there is one, held, expired or ours. Never fails on the duplicate, so it can run inside a transaction."""
        if self._lease_if_absent is None:
            return self.lease_holder(resource) is None and self.acquire_lease(resource, owner, now, ttl)
        with self.session() as s:
            return bool(self._x(s, self._lease_if_absent, {"resource": resource, "owner": owner,
                                                           "expires_at": _db(now + ttl)}).rowcount)

    def release_lease(self, resource: str, owner: str) -> None:
        with self.session() as s:
            self._x(s, _W.lease_delete, {"b_resource": resource, "b_owner": owner})

    def lease_holder(self, resource: str) -> tuple[str, datetime] | None:
        with self.session() as s:
            row = self._x(s, _W.lease_by_resource, {"b_resource": resource}).first()
            return (row.owner, _req(row.expires_at)) if row else None


    # ------------------------------------------------------------------ provisioning journal, assigned WABAs
    def start_provisioning(self, kind: str, business_name: str, name: str, role: str, *, waba_ids: list[str],
                           tasks: list[str], label: str | None, scopes: list[str], expiring: bool,
                           now: datetime) -> int:
        with self.session() as s:
            row = models.ProvisioningRow(kind=kind, business_name=business_name, name=name, role=role,
                                         waba_ids=json.dumps(waba_ids), tasks=json.dumps(tasks), label=label,
                                         scopes=json.dumps(scopes), expiring=expiring, step="started",
                                         state="running", started_at=_db(now), updated_at=_db(now))
            s.add(row)
            s.flush()
            assert row.id is not None
            return row.id

    def update_provisioning(self, provisioning_id: int, now: datetime, **fields: Any) -> ProvisioningRecord:
        """Record progress; list values (``assigned``, ``waba_ids``...) are stored as JSON. Returns the new record."""
        with self.session() as s:
            row = s.get(models.ProvisioningRow, provisioning_id)
            if row is None:
                raise NotFound(f"No provisioning #{provisioning_id}.")
            for key, value in fields.items():
                setattr(row, key, json.dumps(list(value)) if isinstance(value, list | tuple) else value)
            row.updated_at = _db(now)
            s.flush()
            return _provisioning(row)

    def get_provisioning(self, provisioning_id: int) -> ProvisioningRecord:
        with self.session() as s:
            row = s.get(models.ProvisioningRow, provisioning_id)
            if row is None:
                raise NotFound(f"No provisioning #{provisioning_id}.")
            return _provisioning(row)

    def list_provisionings(self, *, business_name: str | None = None, name: str | None = None,
                           open_only: bool = False) -> list[ProvisioningRecord]:
        """Journal entries, oldest first; ``open_only``: those still running or deferred."""
        with self.session() as s:
            query = select(models.ProvisioningRow)
            if business_name is not None:
                query = query.where(col(models.ProvisioningRow.business_name) == business_name)
            if name is not None:
                query = query.where(col(models.ProvisioningRow.name) == name)
            if open_only:
                query = query.where(col(models.ProvisioningRow.state).in_(["running", "deferred"]))
            return [_provisioning(r) for r in s.exec(query.order_by(col(models.ProvisioningRow.id)))]

    def set_system_user_wabas(self, su_id: str, wabas: dict[str, list[str]], now: datetime, *,
                              replace_all: bool = False) -> None:
        """Record WABAs assigned to ``su_id`` with their tasks ([] when unknown: known tasks are kept);
        ``replace_all``: ``wabas`` is the whole list (a sync), others are forgotten."""
        with self.session() as s:
            rows = {r.waba_id: r for r in s.exec(select(models.SystemUserWabaRow).where(
                col(models.SystemUserWabaRow.system_user_id) == su_id))}
            for waba_id, tasks in wabas.items():
                row = rows.get(waba_id)
                if row is None:
                    s.add(models.SystemUserWabaRow(system_user_id=su_id, waba_id=waba_id, tasks=json.dumps(tasks),
                                                   updated_at=_db(now)))
                elif tasks:
                    row.tasks, row.updated_at = json.dumps(tasks), _db(now)
            if replace_all:
                for waba_id, row in rows.items():
                    if waba_id not in wabas:
                        s.delete(row)

    def system_user_wabas(self) -> dict[str, dict[str, list[str]]]:
        """system user id -> {WABA id: tasks} for every assignment tokenvault knows of."""
        out: dict[str, dict[str, list[str]]] = {}
        with self.session() as s:
            for row in s.exec(select(models.SystemUserWabaRow).order_by(col(models.SystemUserWabaRow.waba_id))):
                out.setdefault(row.system_user_id, {})[row.waba_id] = list(json.loads(row.tasks))
        return out


@dataclass(frozen=True, slots=True)
class _Head:
    """The audit head as a transaction left it: the last event's seq and hash and the MAC key of its append;
    ``dirty``: not written yet (see :meth:`SqlStore._write_head`)."""

    seq: int
    hash: str
    key: bytes | None = field(repr=False)
    dirty: bool


class _W:
    """Statements of the writes a rotation repeats, built once (building a statement costs more than running
    it); executed with parameters. The columns an UPDATE sets are the parameters given, other than ``b_*``."""

    _settings = models.SettingRow.__table__  # type: ignore[attr-defined]
    _versions = models.TokenVersionRow.__table__  # type: ignore[attr-defined]
    _rotations = models.RotationRow.__table__  # type: ignore[attr-defined]
    head_for_update = select(_settings.c.value).where(_settings.c.key == bindparam("b_key")).with_for_update()
    setting_insert = insert(_settings)
    setting_update = update(_settings).where(_settings.c.key == bindparam("b_key"))
    audit_insert = insert(models.AuditEventRow.__table__)  # type: ignore[attr-defined]
    version_update = update(_versions).where(_versions.c.token_id == bindparam("b_token_id"),
                                             _versions.c.version == bindparam("b_version"))
    rotation_update = update(_rotations).where(_rotations.c.id == bindparam("b_id"))
    _tokens = models.TokenRow.__table__  # type: ignore[attr-defined]
    _leases = leases = models.LeaseRow.__table__  # type: ignore[attr-defined]
    _blobs = blobs = models.SecretBlobRow.__table__  # type: ignore[attr-defined]
    # ... and the statements a rotation's reads and inserts repeat (the ORM cost more than the statement)
    rotation_insert = insert(_rotations)
    rotation_by_id = sa_select(_rotations).where(_rotations.c.id == bindparam("b_id"))
    open_rotation = (sa_select(_rotations).where(_rotations.c.token_id == bindparam("b_token_id"),
                                              # (not IN: a list is rendered per execution)
                                              or_(_rotations.c.state == "running", _rotations.c.state == "deferred"))
                     .order_by(_rotations.c.id.desc()).limit(1))
    version_by_number = sa_select(_versions).where(_versions.c.token_id == bindparam("b_token_id"),
                                                _versions.c.version == bindparam("b_version"))
    max_version = sa_select(func.max(_versions.c.version)).where(_versions.c.token_id == bindparam("b_token_id"))
    version_insert = insert(_versions)
    current_version_update = update(_tokens).where(_tokens.c.id == bindparam("b_id"))
    version_status_update = update(_versions).where(_versions.c.token_id == bindparam("b_token_id"),
                                                    _versions.c.version == bindparam("b_version"),
                                                    _versions.c.status == bindparam("b_from"))
    lease_by_resource = sa_select(_leases.c.owner, _leases.c.expires_at).where(
        _leases.c.resource == bindparam("b_resource"))
    lease_insert = insert(_leases)
    lease_delete = delete(_leases).where(_leases.c.resource == bindparam("b_resource"),
                                         _leases.c.owner == bindparam("b_owner"))
    blob_exists = sa_select(_blobs.c.id).where(_blobs.c.kind == bindparam("b_kind"),
                                            _blobs.c.owner_id == bindparam("b_owner_id"),
                                            _blobs.c.version == bindparam("b_version"))
    blob_insert = insert(_blobs)


class _T:
    """:mod:`meta_tokenvault.queries`' statements the store runs, as ``text()`` built once."""

    token_by_label = text(queries.TOKEN_BY_LABEL)
    versions_of_token = text(queries.VERSIONS_OF_TOKEN)
    blob = text(queries.BLOB)
    audit_last_seq = text(queries.AUDIT_LAST_SEQ)


def _insert_if_absent(table: Any, dialect: str) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` into ``table`` (SQLite, PostgreSQL), built once; None elsewhere."""
    if dialect == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing()
    return None


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            path = _sqlite_path(url)
            if path is not None and "?" not in url:
                # a plain file: opened as the fast path opens it (WAL, synchronous=FULL, immutable on a
                # read-only folder: meta_tokenvault.sqlitedb)
                engine = create_engine(url, creator=partial(sqlitedb.connect, path))
            else:  # in memory, or a URL with its own options: as given
                engine = create_engine(url, connect_args={"timeout": sqlitedb.BUSY_TIMEOUT_S,
                                                             "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                # Let SQLAlchemy's "begin" below issue BEGIN IMMEDIATE: writers serialise up front,
                # so read-modify-write (audit head, leases) cannot interleave between processes.
                dbapi_conn.isolation_level = None
                dbapi_conn.execute("PRAGMA foreign_keys=ON")
                dbapi_conn.execute(f"PRAGMA busy_timeout={int(sqlitedb.BUSY_TIMEOUT_S * 1000)}")
                dbapi_conn.execute("PRAGMA synchronous=FULL")  # (sqlitedb.connect sets it too) every commit durable

            driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Any) -> None:
                # Through the driver (SQLAlchemy's execution costs more than the statement); its error wrapped
                # the way SQLAlchemy wraps it, so the store's one error table applies (locked, read-only...).
                try:
                    conn.connection.driver_connection.execute("BEGIN IMMEDIATE")
                except driver_error as exc:
                    raise sa_exc.DBAPIError.instance("BEGIN IMMEDIATE", None, exc, driver_error, hide_parameters=True,
                                                     dialect=conn.dialect) from None

            return engine
        return create_engine(url, pool_pre_ping=True)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise DatabaseUnavailable(f"Cannot use the database URL {_safe_url(url)}: {exc}.",
                                  hint="Check TOKENVAULT_DB_URL (sqlite:///path or postgresql://...); "
                                       "PostgreSQL needs `pip install tokenvault[postgres]`.") from None


# ---------------------------------------------------------------------- row -> record
def _business(row: models.BusinessRow) -> BusinessRecord:
    assert row.id is not None
    return BusinessRecord(id=row.id, name=row.name, business_id=row.business_id, app_id=row.app_id,
                          created_at=_req(row.created_at))


def _system_user(row: models.SystemUserRow, business: models.BusinessRow) -> SystemUserRecord:
    if row.manual_created_time is not None:
        created, source = _req(row.manual_created_time), AgeSource.MANUAL
    elif row.created_time is not None:
        created, source = _req(row.created_time), AgeSource.GRAPH
    else:
        created, source = _req(row.first_seen_at), AgeSource.FIRST_SEEN
    return SystemUserRecord(id=row.id, name=row.name, role=row.role, business_name=business.name,
                            created_at=created, age_source=source, app_installed=row.app_installed)


def _version_row(token_id: int, version: int, fields: dict[str, Any]) -> models.TokenVersionRow:
    return models.TokenVersionRow(**_version_values(token_id, version, fields))


def _version_values(token_id: int, version: int, fields: dict[str, Any]) -> dict[str, Any]:
    """A version's column values, as stored (JSON lists, enum values, UTC datetimes)."""
    data = dict(fields)
    for key in ("scopes", "waba_ids"):
        data[key] = json.dumps(list(data.get(key, ())))
    if "debug_summary" in data and not isinstance(data["debug_summary"], str):
        data["debug_summary"] = json.dumps(data["debug_summary"], sort_keys=True)
    for key in ("status", "source"):
        if isinstance(data.get(key), (TokenStatus, TokenSource)):
            data[key] = data[key].value
    for key in ("created_at", "expires_at", "verified_at", "revoked_at", "data_access_expires_at"):
        if key in data:
            data[key] = _db_opt(data[key])
    return {**data, "token_id": token_id, "version": version}


def _version(row: Any) -> TokenVersionRecord:  # an ORM row or a Core row
    return TokenVersionRecord(
        version=row.version, status=TokenStatus(row.status), source=TokenSource(row.source),
        fingerprint=row.fingerprint, last4=row.last4, created_at=_req(row.created_at),
        expires_at=_aware(row.expires_at), verified_at=_aware(row.verified_at), revoked_at=_aware(row.revoked_at),
        backend=row.backend, system_user_id=row.system_user_id, scopes=tuple(json.loads(row.scopes)),
        waba_ids=tuple(json.loads(row.waba_ids)),
    )


def _blob(row: models.SecretBlobRow) -> BlobRecord:
    assert row.id is not None
    return BlobRecord(id=row.id, kind=row.kind, owner_id=row.owner_id, version=row.version, key_id=row.key_id,
                      wrapped_key=bytes(row.wrapped_key), ciphertext=bytes(row.ciphertext))


def _audit(row: models.AuditEventRow) -> AuditEventRecord:
    assert row.id is not None
    return AuditEventRecord(id=row.seq, at=_req(row.at), actor=row.actor, action=row.action, subject=row.subject,
                            details=json.loads(row.details), prev_hash=row.prev_hash, hash=row.hash)


def _reminder(row: models.ReminderRow) -> ReminderRecord:
    assert row.id is not None
    return ReminderRecord(id=row.id, label=row.label, action=row.action, business_name=row.business_name,
                          system_user_id=row.system_user_id, payload=json.loads(row.payload), due_at=_req(row.due_at),
                          status=row.status, reason=row.reason, created_at=_req(row.created_at),
                          notified_at=_aware(row.notified_at), done_at=_aware(row.done_at), attempts=row.attempts,
                          last_error=row.last_error)


def _provisioning(row: models.ProvisioningRow) -> ProvisioningRecord:
    assert row.id is not None
    return ProvisioningRecord(
        id=row.id, kind=row.kind, business_name=row.business_name, name=row.name, role=row.role,
        waba_ids=tuple(json.loads(row.waba_ids)), tasks=tuple(json.loads(row.tasks)), label=row.label,
        scopes=tuple(json.loads(row.scopes)), expiring=row.expiring, system_user_id=row.system_user_id,
        created_by_us=row.created_by_us, installed=row.installed, assigned=tuple(json.loads(row.assigned)),
        step=row.step, state=row.state, error=row.error, started_at=_req(row.started_at),
        updated_at=_req(row.updated_at))


def _rotation(row: Any) -> RotationRecord:  # an ORM row or a Core row
    assert row.id is not None
    return RotationRecord(id=row.id, token_id=row.token_id, label=row.label, from_version=row.from_version,
                          to_version=row.to_version, compromised=row.compromised, step=row.step, state=row.state,
                          reason=row.reason, started_at=_req(row.started_at), updated_at=_req(row.updated_at),
                          error=row.error, kind=row.kind or "rotate")
