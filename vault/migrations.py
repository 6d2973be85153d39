"""Ordered schema migrations. Each migration runs once, in order, inside one transaction, and is
recorded in ``tv_schema_version``. Never edit a released migration: add the next one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select

from . import models

Migration = Callable[[Connection], None]


def _v1_initial_schema(conn: Connection) -> None:
    """Version 1: every table of :mod:`vault.models` as first released."""
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


MIGRATIONS: list[tuple[int, Migration]] = [
    (1, _v1_initial_schema),
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
