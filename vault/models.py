"""The metadata store's tables (sqlmodel), as of the latest schema version; every change is an ordered
migration in :mod:`meta_tokenvault.migrations`, never ``create_all`` on an existing database.

Nothing here ever holds a secret value: ``SecretBlob`` holds AES-GCM ciphertext and the wrapped
data key; token rows hold a keyed fingerprint and the last four characters at most.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


class SchemaVersion(SQLModel, table=True):
    __tablename__ = "tv_schema_version"

    version: int = Field(primary_key=True)
    applied_at: datetime


class SettingRow(SQLModel, table=True):
    """Small named values: the key provider chosen by init, the audit head, the fingerprint key."""

    __tablename__ = "tv_setting"

    key: str = Field(primary_key=True, max_length=64)
    value: str


class WrappedKeyRow(SQLModel, table=True):
    """Internal keys (e.g. the fingerprint key) wrapped by the master key."""

    __tablename__ = "tv_wrapped_key"

    purpose: str = Field(primary_key=True, max_length=32)
    key_id: str = Field(max_length=128)
    wrapped: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class BusinessRow(SQLModel, table=True):
    __tablename__ = "tv_business"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True, max_length=128)
    business_id: str = Field(max_length=64)
    app_id: str = Field(max_length=64)
    created_at: datetime
    secrets_version: int = 1


class SystemUserRow(SQLModel, table=True):
    __tablename__ = "tv_system_user"

    id: str = Field(primary_key=True, max_length=64)
    business_pk: int = Field(foreign_key="tv_business.id", index=True)
    name: str = Field(max_length=256)
    role: str = Field(max_length=32)
    created_time: datetime | None = None
    manual_created_time: datetime | None = None
    first_seen_at: datetime
    app_installed: bool = False
    synced_at: datetime


class TokenRow(SQLModel, table=True):
    __tablename__ = "tv_token"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(index=True, unique=True, max_length=128)
    business_pk: int = Field(foreign_key="tv_business.id", index=True)
    current_version: int
    max_age_days: int | None = None
    created_at: datetime


class TokenVersionRow(SQLModel, table=True):
    __tablename__ = "tv_token_version"
    __table_args__ = (UniqueConstraint("token_id", "version", name="uq_token_version"),)

    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(foreign_key="tv_token.id", index=True)
    version: int
    status: str = Field(max_length=16)
    source: str = Field(max_length=16)
    system_user_id: str = Field(max_length=64)
    app_id: str = Field(max_length=64)
    scopes: str = "[]"  # JSON list
    waba_ids: str = "[]"  # JSON list
    fingerprint: str = Field(max_length=64, index=True)
    last4: str = Field(max_length=4)
    created_at: datetime
    expires_at: datetime | None = None
    verified_at: datetime | None = None
    debug_summary: str = "{}"  # JSON: what debug_token last said (never the token)
    revoked_at: datetime | None = None
    backend: str = Field(max_length=16)


class SecretBlobRow(SQLModel, table=True):
    """Ciphertext of the local backend, bound by associated data to (kind, owner_id, version)."""

    __tablename__ = "tv_secret_blob"
    __table_args__ = (UniqueConstraint("kind", "owner_id", "version", name="uq_secret_blob"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)
    owner_id: int
    version: int
    key_id: str = Field(max_length=128, index=True)
    wrapped_key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    ciphertext: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class AuditEventRow(SQLModel, table=True):
    __tablename__ = "tv_audit_event"
    # v2: the events of one subject, newest first (`audit list --label`) without a scan of the whole trail
    __table_args__ = (Index("ix_tv_audit_event_subject_seq", "subject", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(index=True, unique=True)
    at: datetime
    actor: str = Field(max_length=128)
    action: str = Field(max_length=64)
    subject: str = Field(max_length=256)
    details: str = "{}"
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


class ReminderRow(SQLModel, table=True):
    __tablename__ = "tv_reminder"
    # v2: open reminders by due date (`run-due`, `reminders list`)
    __table_args__ = (Index("ix_tv_reminder_status_due_at", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=128, index=True)
    action: str = Field(max_length=16)  # generate | rotate | refresh
    business_name: str = Field(max_length=128)
    system_user_id: str | None = Field(default=None, max_length=64)
    payload: str = "{}"  # JSON: scopes, expiring, compromised, reason...
    due_at: datetime
    status: str = Field(default="waiting", max_length=16)  # waiting | due | done | failed
    reason: str = ""
    created_at: datetime
    notified_at: datetime | None = None
    claimed_at: datetime | None = None
    done_at: datetime | None = None
    attempts: int = 0
    last_error: str | None = None


class RotationRow(SQLModel, table=True):
    """The rotation journal: each step recorded before it is taken (see meta_tokenvault.rotation)."""

    __tablename__ = "tv_rotation"
    # v2: the open rotations (`run-due` resumes them) among every rotation ever journaled
    __table_args__ = (Index("ix_tv_rotation_state", "state"),)

    id: int | None = Field(default=None, primary_key=True)
    token_id: int = Field(foreign_key="tv_token.id", index=True)
    label: str = Field(max_length=128)
    from_version: int
    to_version: int | None = None
    compromised: bool = False
    step: str = Field(max_length=32)
    state: str = Field(max_length=16)  # running | done | deferred | failed
    reason: str = ""
    started_at: datetime
    updated_at: datetime
    error: str | None = None


class LeaseRow(SQLModel, table=True):
    """A lease on a resource (e.g. ``rotate:<token id>``): the primary key makes it exclusive across
    processes and hosts sharing the database; an expired lease may be taken over."""

    __tablename__ = "tv_lease"

    resource: str = Field(primary_key=True, max_length=128)
    owner: str = Field(max_length=128)
    expires_at: datetime
