"""The token reads, written once: SQL text and the functions that turn its rows into records.

Both stores run exactly these statements: :class:`~meta_tokenvault.adapters.store_sql.SqlStore` through SQLAlchemy's
``text()`` (SQLite or PostgreSQL), and the fast read path of :mod:`meta_tokenvault.fastread` through the standard
library's ``sqlite3`` (no SQLAlchemy import: ``token reveal`` and ``exec`` start fast). The parameters are
named (``:label``), a style both accept; the SQL is plain enough for SQLite and PostgreSQL alike.

The tables and columns are named once, in :data:`TABLES` and the ``*_COLUMNS`` tuples; the SQL is built
from them, and the tests check every one of them against the table definitions of :mod:`meta_tokenvault.models`
and :data:`SCHEMA_VERSION` against :data:`meta_tokenvault.migrations.LATEST`. A schema change therefore fails the
tests until these queries follow it; at run time the fast path refuses a database whose schema version
is not :data:`SCHEMA_VERSION` (and the full path takes over).

Stdlib only.
"""
# ruff: noqa: S608 - the SQL is assembled from the constant table and column names below, never from input;
# every value is a bound parameter.

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache

from .errors import NotFound
from .records import record
from .types import TOKEN_JSON, Provenance, TokenRecord, TokenSource, TokenStatus, TokenVersionRecord, as_utc

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

#: The schema version these statements are written for (:data:`meta_tokenvault.migrations.LATEST`; a test checks).
SCHEMA_VERSION = 4

#: alias -> table name (the ``__tablename__`` of the meta_tokenvault.models tables).
TABLES: dict[str, str] = {
    "t": "tv_token",
    "b": "tv_business",
    "v": "tv_token_version",
    "k": "tv_secret_blob",
    "s": "tv_setting",
    "a": "tv_audit_event",
    "m": "tv_schema_version",
    "w": "tv_wrapped_key",
}

#: A version's fields, in the order :func:`version_record` reads them.
VERSION_COLUMNS: tuple[tuple[str, str], ...] = tuple(("v", c) for c in (
    "version", "status", "source", "fingerprint", "last4", "created_at", "expires_at", "verified_at",
    "revoked_at", "backend", "system_user_id", "scopes", "waba_ids"))
#: A token with its current version and business, in the order :func:`token_record` reads them.
TOKEN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("t", "id"), ("t", "label"), ("t", "max_age_days"), ("b", "name"), ("b", "business_id"),
    *(("v", c) for c in ("version", "status", "source", "system_user_id", "app_id", "scopes", "waba_ids",
                         "created_at", "expires_at", "fingerprint", "last4", "verified_at", "backend")),
    ("t", "on_invalid"), ("v", "data_access_expires_at"),
)
BLOB_COLUMNS: tuple[tuple[str, str], ...] = tuple(("k", c) for c in (
    "id", "kind", "owner_id", "version", "key_id", "wrapped_key", "ciphertext"))
#: The audit event's columns, named like the fields of :class:`meta_tokenvault.audit.AuditLink`.
AUDIT_COLUMNS: tuple[tuple[str, str], ...] = tuple(("a", c) for c in (
    "seq", "at", "actor", "action", "subject", "details", "prev_hash", "hash"))
#: Every (alias, column) a statement here names, for the tests against meta_tokenvault.models.
REFERENCED: tuple[tuple[str, str], ...] = (
    *TOKEN_COLUMNS, *VERSION_COLUMNS, *BLOB_COLUMNS, *AUDIT_COLUMNS,
    ("t", "business_pk"), ("t", "current_version"), ("b", "id"), ("v", "id"), ("v", "token_id"),
    ("s", "key"), ("s", "value"), ("m", "version"), ("w", "purpose"), ("w", "key_id"), ("w", "wrapped"),
)


def _cols(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f'{alias}."{name}"' for alias, name in columns)


def _names(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f'"{name}"' for _alias, name in columns)


def _t(alias: str) -> str:
    return f"{TABLES[alias]} {alias}"


_TOKEN_FROM = (f"FROM {_t('t')} JOIN {_t('b')} ON b.id = t.business_pk "
               f"LEFT JOIN {_t('v')} ON v.token_id = t.id AND v.version = t.current_version")

#: One token by label; the version columns are NULL while the token has no version yet (a reserved id).
TOKEN_BY_LABEL = f"SELECT {_cols(TOKEN_COLUMNS)} {_TOKEN_FROM} WHERE t.label = :label"
#: Every token that has a current version, ordered by label: one pass, no query per token.
ALL_TOKENS = f"SELECT {_cols(TOKEN_COLUMNS)} {_TOKEN_FROM} WHERE v.id IS NOT NULL ORDER BY t.label"
#: Every version of one token, newest first.
VERSIONS_OF_TOKEN = (f"SELECT {_cols(VERSION_COLUMNS)} FROM {_t('v')} WHERE v.token_id = :token_id "
                     "ORDER BY v.version DESC")
#: The sealed blob of one (kind, owner, version).
BLOB = (f"SELECT {_cols(BLOB_COLUMNS)} FROM {_t('k')} "
        "WHERE k.kind = :kind AND k.owner_id = :owner_id AND k.version = :version")
SETTING = f'SELECT s."value" FROM {_t("s")} WHERE s."key" = :key'
SETTING_INSERT = f'INSERT INTO {TABLES["s"]} ("key", "value") VALUES (:key, :value)'
SETTING_UPDATE = f'UPDATE {TABLES["s"]} SET "value" = :value WHERE "key" = :key'
SCHEMA_VERSION_QUERY = f"SELECT max(m.version) FROM {_t('m')}"
WRAPPED_KEY = f'SELECT w."key_id", w."wrapped" FROM {_t("w")} WHERE w."purpose" = :purpose'
AUDIT_LAST_SEQ = f"SELECT max(a.seq) FROM {_t('a')}"
AUDIT_INSERT = (f"INSERT INTO {TABLES['a']} ({_names(AUDIT_COLUMNS)}) "
                f"VALUES ({', '.join(':' + name for _alias, name in AUDIT_COLUMNS)})")


@record(frozen=True, slots=True)
class BlobRecord:
    """A sealed secret as stored by the local backend."""

    id: int
    kind: str
    owner_id: int
    version: int
    key_id: str
    wrapped_key: bytes
    ciphertext: bytes


# ---------------------------------------------------------------------------------------------- errors
def token_not_found(label: str) -> NotFound:
    return NotFound(f"No token labelled {label!r}.", hint="See `tokenvault token list`.")


def no_version_yet(label: str) -> NotFound:
    return NotFound(f"Token {label!r} has no stored version yet.")


# ---------------------------------------------------------------------------------------------- rows -> records
_STATUS: dict[str, TokenStatus] = {s.value: s for s in TokenStatus}
_SOURCE: dict[str, TokenSource] = {s.value: s for s in TokenSource}


_parse = datetime.fromisoformat


def when(value: datetime | str | None) -> datetime | None:
    """A stored datetime as aware UTC. SQLite gives text (SQLAlchemy's ``YYYY-MM-DD HH:MM:SS.ffffff``, no
    offset), PostgreSQL a naive ``datetime``; both hold UTC."""
    if value is None:
        return None
    if type(value) is str:  # the hot case (a list of 100,000 tokens parses 300,000 of these)
        return _utc_text(value)
    return as_utc(value)  # type: ignore[arg-type]


def _when_req(value: datetime | str) -> datetime:
    if type(value) is str:
        return _utc_text(value)
    return as_utc(value)  # type: ignore[arg-type]


def _utc_text(value: str) -> datetime:
    """Stored text (UTC, no offset) as an aware datetime: parsed with its offset appended, which is ~6x
    faster than parsing then ``replace(tzinfo=UTC)`` (and gives the same ``UTC`` tzinfo)."""
    try:
        return _parse(value + "+00:00")
    except ValueError:  # text that carries an offset of its own
        return as_utc(_parse(value))


#: The order :func:`token_record` passes TokenRecord's and Provenance's fields in (tested against the classes).
RECORD_FIELDS = ("id", "label", "business_name", "status", "version", "source", "provenance", "created_at",
                 "expires_at", "fingerprint", "last4", "verified_at", "backend", "max_age_days", "history",
                 "on_invalid", "data_access_expires_at")
PROVENANCE_FIELDS = ("business_id", "system_user_id", "app_id", "scopes", "waba_ids")


@lru_cache(maxsize=4096)
def _strings(raw: str) -> tuple[str, ...]:
    """A JSON list column as a tuple (cached: many tokens share their scopes and WABA ids)."""
    return tuple(json.loads(raw))


def token_record(row: Sequence[Any], history: Sequence[TokenVersionRecord] = ()) -> TokenRecord:
    """A :data:`TOKEN_COLUMNS` row (with a version) as a :class:`TokenRecord`."""
    (token_id, label, max_age_days, business_name, business_id, version, status, source, system_user_id,
     app_id, scopes, waba_ids, created_at, expires_at, fingerprint, last4, verified_at, backend, on_invalid,
     data_access_expires_at) = row
    # positional, in the order of RECORD_FIELDS / PROVENANCE_FIELDS (a test checks it is the classes' own):
    # ~40% faster than keywords for a frozen dataclass of 17 fields, 100,000 times in `token list --json`
    return TokenRecord(
        token_id, label, business_name, _STATUS[status], version, _SOURCE[source],
        Provenance(business_id, system_user_id, app_id, _strings(scopes), _strings(waba_ids)),
        _utc_text(created_at) if type(created_at) is str else _when_req(created_at),
        None if expires_at is None else when(expires_at), fingerprint, last4,
        None if verified_at is None else when(verified_at), backend, max_age_days, tuple(history),
        on_invalid or COLUMN_DEFAULTS["on_invalid"],
        None if data_access_expires_at is None else when(data_access_expires_at),
    )


class gc_paused:  # noqa: N801 - used as a function: ``with gc_paused():``
    """Pause the cyclic garbage collector while many objects are built at once (rows, records, JSON):
    100,000 tokens otherwise trigger repeated full collections, a quarter of ``token list``'s time. Nothing
    built in such a block forms a reference cycle, so nothing is left for the collector to find. (A class,
    not a :func:`contextlib.contextmanager`: ``contextlib`` is not otherwise on the start-up path.)"""

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()


def token_records(rows: Iterable[Sequence[Any]]) -> list[TokenRecord]:
    """Many :data:`ALL_TOKENS` rows (a cursor is consumed here) as records, with :func:`gc_paused`."""
    with gc_paused():
        return [token_record(row) for row in rows]


# ---------------------------------------------------------------------------------------------- rows -> JSON
#: Columns whose empty value (NULL) the record reads as a default (:func:`token_record`, and the JSON text).
COLUMN_DEFAULTS: dict[str, str] = {"on_invalid": "reissue"}

#: kind (:data:`meta_tokenvault.types.JSON_KINDS`) -> how a :data:`TOKEN_COLUMNS` cell ``{v}`` becomes the JSON
#: text that :func:`token_record`, :meth:`TokenRecord.as_json` and the encoder give for it. What does not fit
#: (a NULL where a record has a value, a status not in TokenStatus, a time that does not parse...) raises,
#: and that row takes the record path, which writes (or raises) what it always did.
_CELL_JSON: dict[str, str] = {
    "str": "S({v})",  # encode_basestring_ascii: a TypeError for anything but a str
    "int": "({v} if type({v}) is int else X())",  # an int's text is its repr, as json writes it
    "enum": "{enum}[{v}]",  # the value's JSON text; KeyError for an unknown one, as TokenStatus[...] would
    "strings": "L({v})",
    "time": "T({v})",
    "time?": '("null" if {v} is None else T({v}))',
}
_ENUMS: dict[str, dict[str, Any]] = {"status": _STATUS, "source": _SOURCE}


def _not_this_path() -> Any:
    raise TypeError("not a plain value: the record path writes it")


def _time_json(value: Any) -> str:
    """A stored time's JSON text, as the record gives it: :func:`token_record`'s parse (:func:`_utc_text`
    for text, :func:`when` otherwise), then :meth:`TokenRecord.as_json`'s ISO text in UTC."""
    if type(value) is str:  # SQLite's text, the hot case: _utc_text without the call
        try:
            moment = _parse(value + "+00:00")
        except ValueError:
            moment = _utc_text(value)
    else:
        moment = _when_req(value)  # None: AttributeError, as the record's _when_req raises (the record path)
    return '"' + (moment.isoformat() if moment.tzinfo is UTC else as_utc(moment).isoformat()) + '"'


_token_json: Any = None


def _compile_token_json() -> Any:
    """:func:`token_json`'s body from :data:`meta_tokenvault.types.TOKEN_JSON`: each key's text, then its field's
    cell (the :data:`TOKEN_COLUMNS` column of the field's name) through :data:`_CELL_JSON`; one f-string."""
    global _token_json  # noqa: PLW0603 - compiled once, on first use
    from .jsontext import encode_string, one_line_encoder

    names = [name for _alias, name in TOKEN_COLUMNS]
    if len(set(names)) != len(names):
        raise RuntimeError("TOKEN_COLUMNS names a column twice: say which one each JSON field reads")
    encode = one_line_encoder()

    @lru_cache(maxsize=4096)
    def strings_json(raw: str) -> str:
        return encode(list(_strings(raw)))

    namespace: dict[str, Any] = {"S": encode_string, "L": strings_json, "T": _time_json, "X": _not_this_path,
                                 **{f"D_{name}": v for name, v in COLUMN_DEFAULTS.items()},
                                 **{f"E_{name}": {k: encode_string(k) for k in e} for name, e in _ENUMS.items()}}
    parts = []
    for key, attr, kind in TOKEN_JSON:
        if not key.isidentifier():  # written into the f-string's source as it is
            raise RuntimeError(f"TOKEN_JSON key {key!r}: a plain name is expected")
        column = attr.rsplit(".", 1)[-1]
        cell = f"c{names.index(column)}"
        if column in COLUMN_DEFAULTS:
            cell = f"({cell} or D_{column})"
        parts.append(f'"{key}": {{{_CELL_JSON[kind].format(v=cell, enum=f"E_{column}")}}}')
    source = (f"def token_json(row):\n    {', '.join(f'c{i}' for i in range(len(names)))}, = row\n"
              f"    return f'{{{{{', '.join(parts)}}}}}'\n")
    exec(compile(source, "<queries.token_json>", "exec"), namespace)  # noqa: S102 - source built from constants
    _token_json = namespace["token_json"]
    return _token_json


def token_json(row: Sequence[Any]) -> str:
    """The JSON text of an :data:`ALL_TOKENS` row's token: ``encode(token_record(row).as_json())`` with the
    encoder of :mod:`meta_tokenvault.jsontext`, byte for byte, without building the record or its dict."""
    try:
        return (_token_json or _compile_token_json())(row)  # type: ignore[no-any-return]
    except Exception:  # noqa: BLE001 - a cell the plain path does not take: the record path, as always
        from .jsontext import one_line_encoder

        return one_line_encoder()(token_record(row).as_json())


_CHUNK = 1000  # rows read (and texts written) at a time


def token_json_lines(rows: Iterable[Sequence[Any]]) -> list[str]:
    """Many :data:`ALL_TOKENS` rows (a cursor is consumed here) as their tokens' JSON texts (:func:`token_json`:
    what ``token list --json`` prints, one per line), with :func:`gc_paused`. Read a thousand rows at a time:
    100,000 rows are never all held at once (a third of the time was the kernel's, paging their memory in)."""
    fast = _token_json or _compile_token_json()
    fetchmany = getattr(rows, "fetchmany", None)  # a DB-API cursor or a SQLAlchemy result: a chunk at a time
    chunks: Iterable[Sequence[Sequence[Any]]] = (iter(lambda: fetchmany(_CHUNK), []) if fetchmany is not None
                                                 else (list(rows),))
    lines: list[str] = []
    with gc_paused():
        for chunk in chunks:
            done = len(lines)
            try:
                lines += map(fast, chunk)
            except Exception:  # noqa: BLE001 - a row needs the record path: this chunk's rows go one by one
                del lines[done:]
                lines += map(token_json, chunk)
    return lines


def version_record(row: Sequence[Any]) -> TokenVersionRecord:
    """A :data:`VERSION_COLUMNS` row as a :class:`TokenVersionRecord`."""
    (version, status, source, fingerprint, last4, created_at, expires_at, verified_at, revoked_at, backend,
     system_user_id, scopes, waba_ids) = row
    return TokenVersionRecord(
        version=version, status=_STATUS[status], source=_SOURCE[source], fingerprint=fingerprint, last4=last4,
        created_at=_when_req(created_at), expires_at=when(expires_at), verified_at=when(verified_at),
        revoked_at=when(revoked_at), backend=backend, system_user_id=system_user_id, scopes=_strings(scopes),
        waba_ids=_strings(waba_ids),
    )


def token_from_rows(label: str, row: Sequence[Any] | None,
                    versions: Iterable[Sequence[Any]] = ()) -> TokenRecord:
    """The :data:`TOKEN_BY_LABEL` row of ``label`` (and, for history, its :data:`VERSIONS_OF_TOKEN` rows) as a
    record. Raises NotFound when there is no such token, or when it has no version yet."""
    if row is None:
        raise token_not_found(label)
    if row[5] is None:  # the LEFT JOIN found no current version
        raise no_version_yet(label)
    return token_record(row, [version_record(v) for v in versions])


def blob_record(row: Sequence[Any] | None) -> BlobRecord | None:
    """A :data:`BLOB_COLUMNS` row (PostgreSQL gives ``memoryview`` for bytes) as a :class:`BlobRecord`."""
    if row is None:
        return None
    blob_id, kind, owner_id, version, key_id, wrapped_key, ciphertext = row
    return BlobRecord(id=blob_id, kind=kind, owner_id=owner_id, version=version, key_id=key_id,
                      wrapped_key=bytes(wrapped_key), ciphertext=bytes(ciphertext))


def sqlite_datetime(value: datetime) -> str:
    """``value`` as SQLAlchemy stores a DateTime in SQLite (UTC, no offset, microseconds): for writes made
    without SQLAlchemy, so that both paths store, read and hash identical values."""
    return as_utc(value).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


__all__ = [
    "ALL_TOKENS", "AUDIT_INSERT", "AUDIT_LAST_SEQ", "BLOB", "SCHEMA_VERSION", "SETTING", "TABLES", "TOKEN_BY_LABEL",
    "VERSIONS_OF_TOKEN", "WRAPPED_KEY", "BlobRecord", "blob_record", "sqlite_datetime", "token_from_rows",
    "token_json", "token_json_lines", "token_record", "version_record", "when",
]
