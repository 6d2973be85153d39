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
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, delete, event, func, insert, text, update
from sqlalchemy import exc as sa_exc
from sqlmodel import Session, col, select

from .. import migrations, models, queries
from ..audit import AUDIT_HEAD, GENESIS, audit_hash, next_link, read_head
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
    SystemUserRecord,
    TokenRecord,
    TokenSource,
    TokenStatus,
    TokenVersionRecord,
    as_utc,
)


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


@dataclass(frozen=True, slots=True)
class ReminderRecord:
    id: int
    label: str
    action: str
    business_name: str
    system_user_id: str | None
    payload: dict[str, Any]
    due_at: datetime
    status: str
    reason: str
    created_at: datetime
    notified_at: datetime | None
    done_at: datetime | None
    attempts: int
    last_error: str | None

    def as_json(self, now: datetime) -> dict[str, object]:
        status = self.status
        if status == "waiting" and as_utc(self.due_at) <= as_utc(now):
            status = "due"
        return {
            "id": self.id,
            "label": self.label,
            "action": self.action,
            "business": self.business_name,
            "system_user_id": self.system_user_id,
            "due_at": as_utc(self.due_at).isoformat(),
            "status": status,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class RotationRecord:
    id: int
    token_id: int
    label: str
    from_version: int
    to_version: int | None
    compromised: bool
    step: str
    state: str
    reason: str
    started_at: datetime
    updated_at: datetime
    error: str | None


class SqlStore:
    """The MetadataStore port on SQLAlchemy. Thread-safe (one engine, a session per call)."""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine
        self._audit_head_missing = True
        self._ambient = threading.local()  # this thread's open transaction() session, if any
        # SQLite has one writer at a time and every transaction here begins IMMEDIATE: this process's threads
        # queue on a lock rather than in SQLite's busy handler (which sleeps up to 100 ms between tries).
        self._serial = threading.RLock() if engine.dialect.name == "sqlite" else None

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
        self.engine.dispose()

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
                ambient.expunge_all()  # the next call reads rows afresh, as in a session of its own
                return
            with self._serial or nullcontext(), Session(self.engine, expire_on_commit=False) as session, \
                    session.begin():
                yield session
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, self.url) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every store call made inside (on this thread) joins ONE transaction: one commit at the end, or
        everything rolled back on an error. Nested, it is a savepoint: an error inside undoes only what the
        inner block wrote, and the outer transaction goes on (a failed call spoils the transaction up to the
        nearest savepoint, so nest one around calls whose errors are caught, such as acquire_lease). It holds
        the write lock until the end: keep network calls out of it."""
        ambient: Session | None = getattr(self._ambient, "session", None)
        if ambient is not None:
            try:
                with ambient.begin_nested():
                    yield
            except sa_exc.SQLAlchemyError as exc:
                raise _translate(exc, self.url) from None
            return
        with self.session() as s:
            self._ambient.session = s
            try:
                yield
            finally:
                self._ambient.session = None

    def schema_version(self) -> int:
        try:
            with self.engine.connect() as conn:
                return migrations.current_version(conn)
        except sa_exc.SQLAlchemyError as exc:
            raise _translate(exc, self.url) from None

    # ------------------------------------------------------------------ settings and wrapped keys
    def get_setting(self, key: str) -> str | None:
        with self.session() as s:
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

    def reserve_token_id(self, label: str, business_pk: int, now: datetime, max_age_days: int | None = None) -> int:
        """Create the token row with no version yet (current_version 0) so a secret can be bound to its id."""
        with self.session() as s:
            if s.exec(select(models.TokenRow.id).where(col(models.TokenRow.label) == label)).first() is not None:
                raise AlreadyExists(f"A token labelled {label!r} exists already; nothing was overwritten.",
                                    hint="Choose another label, or replace it with `tokenvault token rotate`.")
            token = models.TokenRow(label=label, business_pk=business_pk, current_version=0,
                                    max_age_days=max_age_days, created_at=_db(now))
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
            s.add(_version_row(token_id, version, fields))
            if make_current:
                token = s.get(models.TokenRow, token_id)
                assert token is not None
                token.current_version = version

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
            result = s.connection().execute(_W.version_update, {**values, "b_token_id": token_id,
                                                                "b_version": version})
            if not result.rowcount:
                raise NotFound(f"Token id {token_id} has no version {version}.")

    def promote(self, token_id: int, new_version: int, old_version: int | None, old_status: TokenStatus) -> None:
        """In one transaction: ``new_version`` becomes current and active, ``old_version`` gets ``old_status``."""
        with self.session() as s:
            token = s.get(models.TokenRow, token_id)
            assert token is not None
            token.current_version = new_version
            for row in s.exec(select(models.TokenVersionRow).where(col(models.TokenVersionRow.token_id) == token_id)):
                if row.version == new_version:
                    row.status = TokenStatus.ACTIVE.value
                elif old_version is not None and row.version == old_version and row.status == TokenStatus.ACTIVE.value:
                    row.status = old_status.value

    def set_max_age(self, token_id: int, days: int | None) -> None:
        with self.session() as s:
            token = s.get(models.TokenRow, token_id)
            assert token is not None
            token.max_age_days = days

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
            conn = s.connection()
            row = conn.execute(text(queries.TOKEN_BY_LABEL), {"label": label}).first()
            versions = (conn.execute(text(queries.VERSIONS_OF_TOKEN), {"token_id": row[0]}).all()
                        if with_history and row is not None else ())
            return queries.token_from_rows(label, row, versions)

    def list_tokens(self) -> list[TokenRecord]:
        """Every token with a current version, by label: one query, rows straight to records (no ORM objects)."""
        with self.session() as s:
            return queries.token_records(s.connection().execute(text(queries.ALL_TOKENS)))

    def version_record(self, token_id: int, version: int) -> TokenVersionRecord:
        with self.session() as s:
            row = s.exec(select(models.TokenVersionRow).where(
                col(models.TokenVersionRow.token_id) == token_id,
                col(models.TokenVersionRow.version) == version)).first()
            if row is None:
                raise NotFound(f"Token id {token_id} has no version {version}.")
            return _version(row)

    def max_version(self, token_id: int) -> int:
        with self.session() as s:
            value = s.exec(select(func.max(models.TokenVersionRow.version)).where(
                col(models.TokenVersionRow.token_id) == token_id)).first()
            return int(value or 0)

    def find_by_fingerprint(self, fingerprint: str) -> list[tuple[str, int]]:
        with self.session() as s:
            rows = s.exec(
                select(models.TokenRow.label, models.TokenVersionRow.version)
                .join(models.TokenRow, col(models.TokenRow.id) == models.TokenVersionRow.token_id)
                .where(col(models.TokenVersionRow.fingerprint) == fingerprint)
            ).all()
            return [(label, version) for label, version in rows]

    # ------------------------------------------------------------------ secret blobs (local backend)
    def put_blob(self, kind: str, owner_id: int, version: int, key_id: str, wrapped: bytes, ciphertext: bytes) -> None:
        with self.session() as s:
            exists = s.exec(select(models.SecretBlobRow.id).where(
                col(models.SecretBlobRow.kind) == kind, col(models.SecretBlobRow.owner_id) == owner_id,
                col(models.SecretBlobRow.version) == version)).first()
            if exists is not None:
                raise AlreadyExists(f"A {kind} secret for record {owner_id} version {version} exists already; "
                                    "it was not overwritten.")
            s.add(models.SecretBlobRow(kind=kind, owner_id=owner_id, version=version, key_id=key_id,
                                       wrapped_key=wrapped, ciphertext=ciphertext))

    def get_blob(self, kind: str, owner_id: int, version: int) -> BlobRecord | None:
        with self.session() as s:
            row = s.connection().execute(text(queries.BLOB),
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
    def append_audit(self, actor: str, action: str, subject: str, details: dict[str, Any], now: datetime) -> int:
        """Append one event to the hash chain, serialised with other writers by locking the head row."""
        if self._audit_head_missing:
            # Make sure the head row exists *before* locking it: FOR UPDATE on a missing row locks nothing,
            # so two first appends could otherwise race (PostgreSQL).
            try:
                with self.session() as s:
                    if s.get(models.SettingRow, AUDIT_HEAD) is None:
                        s.add(models.SettingRow(key=AUDIT_HEAD, value=json.dumps({"seq": 0, "hash": GENESIS})))
            except AlreadyExists:
                pass
            self._audit_head_missing = False
        with self.session() as s:  # statements built once: bulk rotation appends several events per token
            conn = s.connection()
            head = conn.execute(_W.head_for_update, {"b_key": AUDIT_HEAD}).first()
            link = next_link(head[0] if head else None, actor, action, subject, details, now)
            conn.execute(_W.audit_insert, {"seq": link.seq, "at": link.at, "actor": link.actor, "action": link.action,
                                           "subject": link.subject, "details": link.details,
                                           "prev_hash": link.prev_hash, "hash": link.hash})
            if head is None:
                conn.execute(_W.setting_insert, {"key": AUDIT_HEAD, "value": link.head})
            else:
                conn.execute(_W.setting_update, {"b_key": AUDIT_HEAD, "value": link.head})
            return link.seq

    def list_audit(self, limit: int | None = None, subject: str | None = None) -> list[AuditEventRecord]:
        with self.session() as s:
            query = select(models.AuditEventRow).order_by(col(models.AuditEventRow.seq).desc())
            if subject is not None:
                query = query.where(col(models.AuditEventRow.subject) == subject)
            if limit is not None:
                query = query.limit(limit)
            rows = list(s.exec(query).all())
            rows.reverse()
            return [_audit(r) for r in rows]

    def verify_audit(self) -> int:
        """Check the whole chain; returns the number of events. Raises :class:`AuditChainBroken`."""
        with self.session() as s:
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
            head_seq, head_hash = read_head(head_row.value if head_row else None)
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
                       now: datetime) -> int:
        with self.session() as s:
            row = models.RotationRow(token_id=token_id, label=label, from_version=from_version,
                                     compromised=compromised, step="started", state="running", reason=reason,
                                     started_at=_db(now), updated_at=_db(now))
            s.add(row)
            s.flush()
            assert row.id is not None
            return row.id

    def update_rotation(self, rotation_id: int, now: datetime, **fields: Any) -> None:
        with self.session() as s:  # one UPDATE statement: a rotation journals each of its steps
            result = s.connection().execute(_W.rotation_update, {**fields, "updated_at": _db(now),
                                                                 "b_id": rotation_id})
            if not result.rowcount:
                raise NotFound(f"No rotation #{rotation_id}.")

    def open_rotation(self, token_id: int) -> RotationRecord | None:
        with self.session() as s:
            row = s.exec(select(models.RotationRow).where(
                col(models.RotationRow.token_id) == token_id,
                col(models.RotationRow.state).in_(["running", "deferred"]))
                .order_by(col(models.RotationRow.id).desc())).first()
            return _rotation(row) if row else None

    def open_rotations(self) -> list[RotationRecord]:
        with self.session() as s:
            rows = s.exec(select(models.RotationRow).where(col(models.RotationRow.state).in_(["running", "deferred"]))
                          .order_by(col(models.RotationRow.id))).all()
            return [_rotation(r) for r in rows]

    def get_rotation(self, rotation_id: int) -> RotationRecord:
        with self.session() as s:
            row = s.get(models.RotationRow, rotation_id)
            if row is None:
                raise NotFound(f"No rotation #{rotation_id}.")
            return _rotation(row)

    def acquire_lease(self, resource: str, owner: str, now: datetime, ttl: timedelta) -> bool:
        """Take the lease on ``resource`` if free or expired (or already ours). Works across hosts."""
        expires = _db(now + ttl)
        try:
            with self.session() as s:
                s.add(models.LeaseRow(resource=resource, owner=owner, expires_at=expires))
            return True
        except AlreadyExists:
            pass
        with self.session() as s:
            result = s.exec(update(models.LeaseRow)
                            .where(col(models.LeaseRow.resource) == resource,
                                   (col(models.LeaseRow.expires_at) < _db(now)) | (col(models.LeaseRow.owner) == owner))
                            .values(owner=owner, expires_at=expires))
            return bool(result.rowcount)

    def release_lease(self, resource: str, owner: str) -> None:
        with self.session() as s:
            s.exec(delete(models.LeaseRow).where(
                col(models.LeaseRow.resource) == resource, col(models.LeaseRow.owner) == owner))

    def lease_holder(self, resource: str) -> tuple[str, datetime] | None:
        with self.session() as s:
            row = s.get(models.LeaseRow, resource)
            return (row.owner, _req(row.expires_at)) if row else None


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


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

            @event.listens_for(engine, "connect")
            def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
                # Let SQLAlchemy's "begin" below issue BEGIN IMMEDIATE: writers serialise up front,
                # so read-modify-write (audit head, leases) cannot interleave between processes.
                dbapi_conn.isolation_level = None
                dbapi_conn.execute("PRAGMA foreign_keys=ON")
                dbapi_conn.execute("PRAGMA busy_timeout=30000")

            @event.listens_for(engine, "begin")
            def _sqlite_begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

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
    data = dict(fields)
    for key in ("scopes", "waba_ids"):
        data[key] = json.dumps(list(data.get(key, ())))
    if "debug_summary" in data and not isinstance(data["debug_summary"], str):
        data["debug_summary"] = json.dumps(data["debug_summary"], sort_keys=True)
    for key in ("status", "source"):
        if isinstance(data.get(key), (TokenStatus, TokenSource)):
            data[key] = data[key].value
    for key in ("created_at", "expires_at", "verified_at", "revoked_at"):
        if key in data:
            data[key] = _db_opt(data[key])
    return models.TokenVersionRow(token_id=token_id, version=version, **data)


def _version(row: models.TokenVersionRow) -> TokenVersionRecord:
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


def _rotation(row: models.RotationRow) -> RotationRecord:
    assert row.id is not None
    return RotationRecord(id=row.id, token_id=row.token_id, label=row.label, from_version=row.from_version,
                          to_version=row.to_version, compromised=row.compromised, step=row.step, state=row.state,
                          reason=row.reason, started_at=_req(row.started_at), updated_at=_req(row.updated_at),
                          error=row.error)
