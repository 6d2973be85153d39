"""Small value types shared by the service, the ports and the adapters.

This module is deliberately light (stdlib only) so that hot paths such as
``tokenvault exec`` can use it without importing SQLAlchemy. The database tables
live in :mod:`meta_tokenvault.models`; stores hand out these plain records instead of ORM rows.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import UTC, datetime

from .records import field, record

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any


@record(frozen=True, slots=True)
class Availability:
    """Whether a key provider or secret backend can work here, and if not, why (keyring's habit).
    :mod:`meta_tokenvault.ports.keys` exports it with the port."""

    ok: bool
    reason: str = ""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (the only kind tokenvault stores)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    """``value`` in ISO 8601, in UTC (naive values are taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is UTC:
        return value.isoformat()
    return as_utc(value).isoformat()


@record(frozen=True, slots=True)
class Secret:
    """A secret string that will not print.

    ``repr``/``str`` show at most the last four characters; reading the value is the
    deliberate call :meth:`reveal`. Equality compares values in constant time.
    """

    _value: str = field(repr=False)

    def reveal(self) -> str:
        """Return the secret value. Call only where the value must leave the process."""
        return self._value

    @property
    def last4(self) -> str:
        return self._value[-4:] if len(self._value) >= 8 else ""

    def __repr__(self) -> str:
        return f"Secret('…{self.last4}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        import hmac

        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str | tuple[object, ...]:  # never pickle a secret into a temp file or queue by accident
        raise TypeError("Secret values cannot be pickled")


class SecretKind(str, enum.Enum):
    """What a stored secret is; part of the associated data that binds its ciphertext."""

    TOKEN = "token"
    APP_SECRET = "app_secret"
    ADMIN_TOKEN = "admin_token"


@record(frozen=True, slots=True)
class SecretRef:
    """Where a secret belongs: the record it is bound to (kind, owner id, version).

    ``name`` is the human label (the token label, or the business name) used by
    backends that have paths (Vault). ``owner_id`` is the stable database id.
    """

    kind: SecretKind
    owner_id: int
    version: int
    name: str

    def associated_data(self) -> bytes:
        """The AES-GCM associated data: a ciphertext opens only for this exact record *under this name*.

        The name (token label / business name) is bound too, so a database writer who swaps two tokens'
        labels gets an integrity error, not the other token. Names never contain ``|`` (labels are
        validated), and tokenvault never renames a record.
        """
        return f"tokenvault/v2|{self.kind.value}|{self.owner_id}|{self.version}|{self.name}".encode()


class TokenStatus(str, enum.Enum):
    ACTIVE = "active"
    PENDING = "pending"
    RETIRED = "retired"
    REVOKED = "revoked"
    COMPROMISED = "compromised"
    INVALIDATED = "invalidated"  # Meta says it is dead (revoked in Business Settings, invalidated after a leak)


class TokenSource(str, enum.Enum):
    GENERATED = "generated"
    IMPORTED = "imported"
    ROTATED = "rotated"
    PROVISIONED = "provisioned"  # minted by `tokenvault provision` for the system user it set up
    REFRESHED = "refreshed"  # a 60-day token exchanged for a new one (fb_exchange_token)


@record(frozen=True, slots=True)
class Provenance:
    """Who produced a token: business, system user, app, scopes, WABAs."""

    business_id: str
    system_user_id: str
    app_id: str
    scopes: tuple[str, ...] = ()
    waba_ids: tuple[str, ...] = ()


@record(frozen=True, slots=True)
class TokenVersionRecord:
    """One version of a token (the current one or an older one)."""

    version: int
    status: TokenStatus
    source: TokenSource
    fingerprint: str
    last4: str
    created_at: datetime
    expires_at: datetime | None
    verified_at: datetime | None
    revoked_at: datetime | None
    backend: str
    system_user_id: str
    scopes: tuple[str, ...]
    waba_ids: tuple[str, ...]


@record(frozen=True, slots=True)
class TokenRecord:
    """A labelled token and its current version's metadata (never the value)."""

    id: int
    label: str
    business_name: str
    status: TokenStatus
    version: int
    source: TokenSource
    provenance: Provenance
    created_at: datetime
    expires_at: datetime | None
    fingerprint: str
    last4: str
    verified_at: datetime | None
    backend: str
    max_age_days: int | None = None
    history: Sequence[TokenVersionRecord] = ()
    on_invalid: str = "reissue"  # what run-due does when Meta invalidates it: reissue | alert
    data_access_expires_at: datetime | None = None  # debug_token's data_access_expires_at (None: not known)

    def as_json(self) -> dict[str, object]:
        """The contract's ``token show --json`` object: the keys, fields and kinds of :data:`TOKEN_JSON`."""
        return (_token_as_json or _compile_token_as_json())(self)  # type: ignore[no-any-return]


#: The JSON object of a token (``token show --json``, each element of ``token list --json``, ``export``'s
#: metadata): its keys in order, the :class:`TokenRecord` field each is read from (``provenance.*``: the
#: :class:`Provenance`'s) and the kind of value (:data:`JSON_KINDS`). The one definition of that shape:
#: :meth:`TokenRecord.as_json` is compiled from it, and so is the rows-to-text path of ``token list --json``
#: (:func:`meta_tokenvault.queries.token_json_lines`, which reads each field from the column of its name).
TOKEN_JSON: tuple[tuple[str, str, str], ...] = (
    ("label", "label", "str"),
    ("status", "status", "enum"),
    ("version", "version", "int"),
    ("source", "source", "enum"),
    ("business_id", "provenance.business_id", "str"),
    ("system_user_id", "provenance.system_user_id", "str"),
    ("app_id", "provenance.app_id", "str"),
    ("scopes", "provenance.scopes", "strings"),
    ("waba_ids", "provenance.waba_ids", "strings"),
    ("created_at", "created_at", "time"),
    ("expires_at", "expires_at", "time?"),
    ("fingerprint", "fingerprint", "str"),
    ("last4", "last4", "str"),
    ("verified_at", "verified_at", "time?"),
    ("backend", "backend", "str"),
    ("data_access_expires_at", "data_access_expires_at", "time?"),
    ("on_invalid", "on_invalid", "str"),
)

#: kind -> how a record's value ``{v}`` becomes its JSON value (a Python expression): an enum its value, a
#: tuple a list, a time its ISO text in UTC (``None``: JSON's null).
JSON_KINDS: dict[str, str] = {
    "str": "{v}",
    "int": "{v}",
    "enum": "{v}._value_",
    "strings": "list({v})",
    "time": "({v}.isoformat() if {v}.tzinfo is UTC else _iso({v}))",
    "time?": "(None if {v} is None else {v}.isoformat() if {v}.tzinfo is UTC else _iso({v}))",
}

_token_as_json: Any = None


def _compile_token_as_json() -> Any:
    """:meth:`TokenRecord.as_json`'s body from :data:`TOKEN_JSON`: one dict display, each value read once
    into a local (compiled on first use: ``reveal`` and ``exec`` never need it)."""
    global _token_as_json  # noqa: PLW0603 - compiled once, on first use
    reads = [f"    v{i} = self.{attr}" for i, (_key, attr, _kind) in enumerate(TOKEN_JSON)]
    items = [f"        {key!r}: {JSON_KINDS[kind].format(v=f'v{i}')},"
             for i, (key, _attr, kind) in enumerate(TOKEN_JSON)]
    source = "\n".join(["def as_json(self):", *reads, "    return {", *items, "    }"])
    namespace: dict[str, Any] = {"UTC": UTC, "_iso": _iso}
    exec(compile(source, "<TokenRecord.as_json>", "exec"), namespace)  # noqa: S102 - source built from TOKEN_JSON
    _token_as_json = namespace["as_json"]
    return _token_as_json


@record(frozen=True, slots=True)
class BusinessRecord:
    """A business: its name, Meta business id and app id (the app secret and admin token are sealed apart)."""

    id: int
    name: str
    business_id: str
    app_id: str
    created_at: datetime


class AgeSource(str, enum.Enum):
    GRAPH = "graph"
    FIRST_SEEN = "first_seen"
    MANUAL = "manual"


@record(frozen=True, slots=True)
class SystemUserRecord:
    """A system user of a business, and how its age (the seven-day rule) is known."""

    id: str
    name: str
    role: str
    business_name: str
    created_at: datetime
    age_source: AgeSource
    app_installed: bool


@record(frozen=True, slots=True)
class AuditEventRecord:
    """One event of the hash-chained audit trail."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, object]
    prev_hash: str
    hash: str


@record(frozen=True, slots=True)
class ReminderRecord:
    """A reminder of something to do by hand (an action Meta allows only later, or only in the UI)."""

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


@record(frozen=True, slots=True)
class ProvisioningRecord:
    """One ``system-users create`` / ``provision`` run in the provisioning journal: what was asked, what is done."""

    id: int
    kind: str  # create_system_user | provision
    business_name: str
    name: str
    role: str
    waba_ids: tuple[str, ...]
    tasks: tuple[str, ...]
    label: str | None
    scopes: tuple[str, ...]
    expiring: bool
    system_user_id: str | None
    created_by_us: bool
    installed: bool
    assigned: tuple[str, ...]
    step: str
    state: str
    error: str | None
    started_at: datetime
    updated_at: datetime

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "kind": self.kind, "business": self.business_name, "name": self.name,
                "role": self.role, "system_user_id": self.system_user_id, "created": self.created_by_us,
                "app_installed": self.installed, "waba_ids": list(self.waba_ids), "tasks": list(self.tasks),
                "assigned": list(self.assigned), "label": self.label, "scopes": list(self.scopes),
                "expiring": self.expiring, "step": self.step, "state": self.state, "error": self.error,
                "started_at": as_utc(self.started_at).isoformat(), "updated_at": as_utc(self.updated_at).isoformat()}


@record(frozen=True, slots=True)
class RotationRecord:
    """One rotation, refresh or reissue in the rotation journal: its step and state."""

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
    kind: str = "rotate"  # rotate (revoke-and-reissue) | refresh (fb_exchange_token) | reissue (old one is dead)


