"""Ordered schema migrations. Each migration runs once, in order, inside one transaction, and is
recorded in ``tv_schema_version``. Never edit a released migration: add the next one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select

from . import models

Migration = Callable[[Connection], None]


def _v1_initial_schema(conn: Connection) -> None:
    """Version 1: every table of :mod:`meta_tokenvault.models` as first released."""
    tables = [
        models.SettingRow,
        models.WrappedKeyRow,
        models.BusinessRow,
        models.SystemUserRow,
        models.TokenRow,
        models.TokenVersionRow,
        models.SecretBlobRow,
        models.AuditEventRow,
        models.ReminderRow,
        models.RotationRow,
        models.LeaseRow,
    ]
    for table in tables:
        table.__table__.create(conn, checkfirst=False)  # type: ignore[attr-defined]


#: (table, index name) added by version 2; the indexes themselves are defined on the tables in meta_tokenvault.models.
V2_INDEXES = [
    (models.AuditEventRow, "ix_tv_audit_event_subject_seq"),
    (models.ReminderRow, "ix_tv_reminder_status_due_at"),
    (models.RotationRow, "ix_tv_rotation_state"),
]


def _v2_read_indexes(conn: Connection) -> None:
    """Version 2: indexes for reads that scanned a whole table at scale: one subject's audit events, the
    open reminders by due date, the open rotations.

    ``checkfirst``: version 1 creates the tables as meta_tokenvault.models defines them today, indexes included, so a
    database created fresh has them already; one created by an older tokenvault gets them here.
    """
    for table, name in V2_INDEXES:
        index = next(i for i in table.__table__.indexes if i.name == name)  # type: ignore[attr-defined]
        index.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1_initial_schema),
    (2, _v2_read_indexes),
]
LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    """The schema version of the database (0 for an empty database)."""
    if not inspect(conn).has_table(models.SchemaVersion.__tablename__):
        return 0
    versions = conn.execute(select(models.SchemaVersion.version)).scalars().all()  # type: ignore[call-overload]
    return max(versions, default=0)


def migrate(conn: Connection) -> list[int]:
    """Apply every pending migration in order; returns the versions applied.

    Raises ``RuntimeError`` when the database is newer than this tokenvault (refuse, don't guess).
    """
    version = current_version(conn)
    if version > LATEST:
        raise RuntimeError(f"database schema version {version} is newer than this tokenvault ({LATEST})")
    if version == 0:
        models.SchemaVersion.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
    applied = []
    for number, migration in MIGRATIONS:
        if number <= version:
            continue
        migration(conn)
        conn.execute(
            models.SchemaVersion.__table__.insert().values(  # type: ignore[attr-defined]
                version=number, applied_at=datetime.now(UTC)
            )
        )
        applied.append(number)
    return applied
