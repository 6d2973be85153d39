"""The fast read path: reveal, resolve, show and list tokens without SQLAlchemy, hvac or typer.

``tokenvault token reveal`` and ``tokenvault exec`` are run often, by scripts and service managers, and
their cost is start-up: SQLAlchemy and sqlmodel alone take several hundred milliseconds to import, hvac and
requests as much again. This path reads the same database through the driver directly - the standard
library's :mod:`sqlite3`, or psycopg2 for PostgreSQL - and a Vault KV v2 secret over :mod:`http.client`.

One source of truth
-------------------
Only the storage and transport calls differ; everything else is the code the full path runs:

* the use cases are :class:`~meta_tokenvault.service.TokenManager`'s own ``reveal``, ``resolve``, ``show_token`` and
  ``list_tokens`` (same checks, messages and audit actions), run on :class:`FastStore` / :class:`PgFastStore`
  instead of :class:`~meta_tokenvault.adapters.store_sql.SqlStore`;
* decryption is :class:`~meta_tokenvault.adapters.secrets_local.LocalBackend` with the key provider built by
  :func:`meta_tokenvault.wiring.build_key_provider` (file, env or keyring): the same AES-GCM associated data is
  checked, so a tampered or swapped row fails the same way (exit 4);
* a Vault read is :class:`~meta_tokenvault.adapters.secrets_hashicorp.HashicorpBackend`'s own ``get`` (paths, version
  and ownership checks, messages) on :class:`~meta_tokenvault.adapters.hashicorp_light.LightKvClient`, which answers
  only a plain 200; anything else goes to the full path and hvac's one error table;
* the SQL is :mod:`meta_tokenvault.queries`' (SqlStore runs the very same statements), whose tables and columns the
  tests check against :mod:`meta_tokenvault.models`;
* audit events are computed by :func:`meta_tokenvault.audit.next_link` (over
  :func:`~meta_tokenvault.audit.link_after`, which SqlStore uses), so the hash chain cannot fork;
* configuration, backend and key-provider choice are :mod:`meta_tokenvault.config` and :mod:`meta_tokenvault.wiring`'s.

When it is used
---------------
:func:`open_fast` returns ``None`` - use :func:`meta_tokenvault.wiring.build_manager` - unless: the store is a SQLite
file that exists (``sqlite:///path``) or a ``postgresql[+psycopg2]://`` database that answers, at exactly
:data:`meta_tokenvault.queries.SCHEMA_VERSION` (an older database has a migration pending, a newer one is refused by
the full path); secrets in the ``local`` backend, or the ``vault`` backend with a token (not AppRole) and an
``http(s)://`` address; and the ``file``, ``env`` or ``keyring`` key provider (set or recorded by init).
Vault Transit, AppRole and other drivers always take the full path. A driver error, or any Vault answer but
a 200, raises :class:`FastPathUnavailable` (nothing was written: the audit append is one transaction, made
after the read), and the caller runs the full path, which reports the problem the usual way.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from . import queries, sqlitedb
from .audit import AUDIT_HEAD, missing_head, next_link
from .fallback import FastPathUnavailable
from .queries import BlobRecord
from .types import Secret, TokenRecord

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from .adapters.store_sql import SqlStore
    from .config import Settings
    from .ports.secrets import SecretBackend
    from .service import TokenManager
    _T = TypeVar("_T")

#: Key providers the fast path builds (with :func:`meta_tokenvault.wiring.build_key_provider`, as the full path does):
#: keys read locally, or through the ``keyring`` package alone. Vault Transit needs hvac: full path.
FAST_KEY_PROVIDERS = ("file", "env", "keyring")
#: Secret backends the fast path reads: sealed blobs in the store, or one KV v2 read over http.client.
FAST_BACKENDS = ("local", "vault")


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URL; None for anything else (PostgreSQL, memory, options...)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix):]
    if not path or path == ":memory:":
        return None
    return Path(path)


class _DriverErrors:
    """The context manager of :meth:`FastStore._errors` (a class: ``contextlib`` is not otherwise on the
    start-up path)."""

    __slots__ = ("errors",)

    def __init__(self, errors: tuple[type[BaseException], ...]) -> None:
        self.errors = errors

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and isinstance(exc, self.errors):
            raise FastPathUnavailable(f"{type(exc).__name__}: {exc}") from None


class FastStore:
    """The reads (and the one audit append) of :class:`~meta_tokenvault.adapters.store_sql.SqlStore` that reveal,
    resolve, show and list need, on :mod:`sqlite3`, with the statements of :mod:`meta_tokenvault.queries`.

    Same method names and signatures as SqlStore's (a test compares them), so :class:`TokenManager` and
    :class:`LocalBackend` run on it unchanged. Every driver error becomes :class:`FastPathUnavailable`.
    :class:`PgFastStore` is the same on psycopg2; the two differ only in the hooks below.
    """

    _driver_errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
    _begin = "BEGIN IMMEDIATE"  # SqlStore's sessions begin the same way: writers serialise up front
    _audit_head = queries.SETTING

    def __init__(self, conn: Any, path: Path | None, *, display_url: str | None = None) -> None:
        self.conn = conn
        self.path = path
        self._display_url = display_url

    @classmethod
    def connect(cls, path: Path) -> FastStore | None:
        """Open ``path`` read-write without creating it; None when it does not exist or cannot be opened."""
        if not path.is_file():
            return None
        try:  # as SqlStore's engine opens it: WAL, synchronous=FULL, a read-only folder (meta_tokenvault.sqlitedb)
            conn = sqlitedb.connect(path)
        except sqlite3.Error:
            return None
        return cls(conn, path)

    @property
    def display_url(self) -> str:
        return self._display_url or f"sqlite:///{self.path}"

    def close(self) -> None:
        self.conn.close()

    def _errors(self) -> _DriverErrors:
        """``with self._errors():`` turns a driver error into :class:`FastPathUnavailable`."""
        return _DriverErrors(self._driver_errors)

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Run ``sql`` (a :mod:`meta_tokenvault.queries` statement, ``:name`` parameters); the cursor."""
        return self.conn.execute(sql, params or {})

    def _stored_at(self, at: datetime) -> Any:
        """An audit event's time as the full path stores it (SQLAlchemy's text form on SQLite)."""
        return queries.sqlite_datetime(at)

    def _one(self, sql: str, params: Mapping[str, Any]) -> Any:
        with self._errors():
            return self._execute(sql, params).fetchone()

    def schema_version(self) -> int:
        """The database's schema version (0 when it has no tokenvault schema). One statement: a table that is
        not there (or not readable) is the driver's error, and 0 - on PostgreSQL too, where the table is found
        through ``search_path`` as SQLAlchemy's ``has_table`` finds it for the full path (autocommit: the
        error ends no transaction), without a catalog query first (a fresh server process spends ~3 ms on
        ``information_schema``)."""
        try:
            row = self._execute(queries.SCHEMA_VERSION_QUERY).fetchone()
        except self._driver_errors:  # no tv_schema_version table
            return 0
        return int(row[0] or 0) if row else 0

    def get_setting(self, key: str) -> str | None:
        row = self._one(queries.SETTING, {"key": key})
        return None if row is None else str(row[0])

    def get_wrapped_key(self, purpose: str) -> tuple[str, bytes] | None:
        row = self._one(queries.WRAPPED_KEY, {"purpose": purpose})
        return None if row is None else (str(row[0]), bytes(row[1]))

    def get_token(self, label: str, *, with_history: bool = False) -> TokenRecord:
        with self._errors():
            row = self._execute(queries.TOKEN_BY_LABEL, {"label": label}).fetchone()
            versions = (self._execute(queries.VERSIONS_OF_TOKEN, {"token_id": row[0]}).fetchall()
                        if with_history and row is not None else [])
        return queries.token_from_rows(label, row, versions)

    def list_tokens(self) -> list[TokenRecord]:
        with self._errors():
            return queries.token_records(self._execute(queries.ALL_TOKENS))

    def list_tokens_json(self) -> list[str]:
        with self._errors():
            return queries.token_json_lines(self._execute(queries.ALL_TOKENS))

    def get_blob(self, kind: str, owner_id: int, version: int) -> BlobRecord | None:
        return queries.blob_record(self._one(queries.BLOB, {"kind": kind, "owner_id": owner_id, "version": version}))

    def append_audit(self, actor: str, action: str, subject: str, details: dict[str, Any], now: datetime,
                     head_key: bytes | None = None) -> int:
        """Append one event to the hash chain in one transaction, serialised with every other writer as
        SqlStore serialises it (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: the head row ``FOR UPDATE``); the
        link is :func:`meta_tokenvault.audit.next_link`'s (which checks the head's MAC with ``head_key``); a
        missing head over existing events is :func:`meta_tokenvault.audit.missing_head`. A chain without its head
        row yet is left to the full path on PostgreSQL (SqlStore creates it before locking it)."""
        with self._errors():
            self._execute(self._begin)
            try:
                head = self._execute(self._audit_head, {"key": AUDIT_HEAD}).fetchone()
                if head is None:
                    last = self._execute(queries.AUDIT_LAST_SEQ).fetchone()
                    if last and last[0]:
                        raise missing_head(int(last[0]))
                    if self._audit_head is not queries.SETTING:
                        raise FastPathUnavailable("the audit chain has no head row yet")
                link = next_link(head[0] if head else None, actor, action, subject, details, now, head_key)
                self._execute(queries.AUDIT_INSERT, {
                    "seq": link.seq, "at": self._stored_at(link.at), "actor": link.actor,
                    "action": link.action, "subject": link.subject, "details": link.details,
                    "prev_hash": link.prev_hash, "hash": link.hash})
                self._execute(queries.SETTING_UPDATE if head else queries.SETTING_INSERT,
                              {"key": AUDIT_HEAD, "value": link.head})
                self._execute("COMMIT")
            except BaseException:
                self._execute("ROLLBACK")
                raise
            return link.seq


class PgFastStore(FastStore):
    """:class:`FastStore` on PostgreSQL through psycopg2 directly (the driver SqlStore's engine uses), in
    autocommit mode with explicit transactions; the same :mod:`meta_tokenvault.queries` statements, their ``:name``
    parameters written ``%(name)s`` for the driver."""

    _begin = "BEGIN"
    _audit_head = queries.SETTING + " FOR UPDATE"

    def __init__(self, conn: Any, display_url: str, errors: tuple[type[BaseException], ...]) -> None:
        super().__init__(conn, None, display_url=display_url)
        self._driver_errors = errors

    @classmethod
    def connect_url(cls, url: str) -> PgFastStore | None:
        """Connect as SQLAlchemy's psycopg2 dialect would for ``url``; None when this is not a plain
        ``postgresql[+psycopg2]://`` URL, psycopg2 is missing or the connection fails (the full path reports)."""
        args = pg_connect_args(url)
        if args is None:
            return None
        try:
            psycopg2 = _import_psycopg2()
        except ImportError:
            return None
        try:
            conn = psycopg2.connect(**args)
            conn.autocommit = True
        except psycopg2.Error:
            return None
        return cls(conn, _safe_pg_url(url), (psycopg2.Error,))

    def _execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        cursor = self.conn.cursor()
        cursor.execute(_pg_sql(sql), params or None)
        return cursor

    def _stored_at(self, at: datetime) -> Any:
        return at  # as SqlStore passes it: the driver adapts the datetime



def _import_psycopg2() -> Any:
    """``import psycopg2``, without the :mod:`ssl` module its C extension imports at load time.

    psycopg2 imports ``ssl`` only so that Python sets up OpenSSL's locking callbacks, and then tells libpq not
    to (``PQinitOpenSSL(1, 0)``); when ``ssl`` cannot be imported it leaves that to libpq, its documented
    fallback. Since OpenSSL 1.1 neither has anything to set up (OpenSSL locks by itself; libpq's TLS
    connections are its own either way), while ``ssl`` and the ``socket``/``selectors`` it pulls cost ~8 ms,
    half of psycopg2's import. The full path (SQLAlchemy) imports psycopg2 as usual."""
    import sys

    if "psycopg2" in sys.modules or "ssl" in sys.modules:
        import psycopg2

        return psycopg2
    sys.modules["ssl"] = None  # type: ignore[assignment]  # `import ssl` raises ImportError meanwhile
    try:
        import psycopg2
    finally:
        if sys.modules.get("ssl", 0) is None:
            del sys.modules["ssl"]
    return psycopg2


_PARAM = r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)"  # compiled on first use: PostgreSQL only


@lru_cache(maxsize=64)
def _pg_sql(sql: str) -> str:
    """A :mod:`meta_tokenvault.queries` statement in psycopg2's parameter style (``:name`` -> ``%(name)s``)."""
    return re.sub(_PARAM, r"%(\1)s", sql)


def pg_connect_args(url: str) -> dict[str, Any] | None:
    """psycopg2 connect arguments of a ``postgresql://`` / ``postgresql+psycopg2://`` URL, as SQLAlchemy's
    psycopg2 dialect builds them (user, password, host, port, dbname, then the query's parameters);
    None for any other URL, or one with repeated query parameters (multiple hosts: the full path)."""
    from urllib.parse import parse_qsl, unquote, urlsplit

    scheme, sep, _rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgresql+psycopg2"):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        return None
    if parts.fragment or len({k for k, _ in query}) != len(query):
        return None
    args: dict[str, Any] = {}
    if parts.username:
        args["user"] = unquote(parts.username)
    if parts.password is not None:
        args["password"] = unquote(parts.password)
    if parts.hostname:
        args["host"] = unquote(parts.hostname)
    if port is not None:
        args["port"] = port
    if parts.path.strip("/"):
        args["dbname"] = unquote(parts.path.lstrip("/"))
    args.update(query)
    return args


def _safe_pg_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class FastReader:
    """What the fast path offers: :class:`TokenManager`'s reads on a :class:`FastStore`.

    Satisfies :class:`meta_tokenvault.inject.TokenSource` (``show_token``, ``resolve``). Each method may raise
    :class:`FastPathUnavailable` besides the usual :class:`~meta_tokenvault.errors.VaultError`\\ s.
    """

    def __init__(self, store: FastStore, manager: TokenManager) -> None:
        self.store = store
        self.manager = manager

    def reveal(self, label: str, *, version: int | None = None, purpose: str = "reveal") -> Secret:
        return self.manager.reveal(label, version=version, purpose=purpose)

    def resolve(self, label: str, *, allow_inactive: bool = False,
                purpose: str = "read") -> tuple[TokenRecord, Secret]:
        return self.manager.resolve(label, allow_inactive=allow_inactive, purpose=purpose)

    def show_token(self, label: str) -> TokenRecord:
        return self.manager.show_token(label)

    def list_tokens(self) -> list[TokenRecord]:
        return self.manager.list_tokens()

    def list_tokens_json(self) -> list[str]:
        return self.manager.list_tokens_json()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> FastReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FastReader({self.store.display_url!r})"


def open_fast(settings: Settings, *, environ: Mapping[str, str] | None = None,
              explicit_backend: str | None = None) -> FastReader | None:
    """A :class:`FastReader` for ``settings``, or None when the full path must be used (see the module doc).

    Makes the choices :func:`meta_tokenvault.wiring.build_manager` makes, with its functions: the backend
    (:func:`~meta_tokenvault.wiring.choose_backend`: ``explicit_backend`` or TOKENVAULT_BACKEND > the store's record >
    settings) and the key provider (setting > init's record). Raises what those raise (e.g. a contradicting
    TOKENVAULT_BACKEND, a malformed TOKENVAULT_MASTER_KEY, a home others can write), exactly as the full path
    would; writes nothing.
    """
    from .safety import check_settings, no_core_dumps

    check_settings(settings)  # the full path's checks, before the database is opened
    no_core_dumps()  # as build_manager: keys and tokens may now be in memory
    env = os.environ if environ is None else environ
    url = settings.database_url
    path = sqlite_file(url)
    store = FastStore.connect(path) if path is not None else PgFastStore.connect_url(url)
    if store is None:
        return None
    try:
        return _wire(store, settings, env, explicit_backend)
    except FastPathUnavailable:
        store.close()
        return None
    except BaseException:
        store.close()
        raise


def _wire(store: FastStore, settings: Settings, env: Mapping[str, str],
          explicit_backend: str | None) -> FastReader | None:
    from .wiring import build_key_provider, choose_backend

    with store._errors():
        if store.schema_version() != queries.SCHEMA_VERSION:
            store.close()
            return None
    backend = choose_backend(settings, store.get_setting("backend") or None,
                             explicit=explicit_backend or env.get("TOKENVAULT_BACKEND"))
    provider = settings.key_provider or store.get_setting("key_provider")
    if backend not in FAST_BACKENDS or provider not in FAST_KEY_PROVIDERS:
        store.close()
        return None
    light = None
    if backend == "vault":
        from .adapters.hashicorp_light import LightKvClient

        light = LightKvClient.from_settings(settings, env)
        if light is None:  # AppRole, an address hvac would refuse...: the full path decides and reports
            store.close()
            return None
    from .ports.clock import SystemClock
    from .service import TokenManager
    from .wiring import default_actor

    keys = build_key_provider(settings, provider, env)  # before the backend, as build_manager builds them
    as_sql = _as_sql_store(store)
    secrets: SecretBackend
    if light is not None:
        from .adapters.secrets_hashicorp import HashicorpBackend

        secrets = HashicorpBackend(light, mount=settings.vault_mount, prefix=settings.vault_prefix)
    else:
        from .adapters.secrets_local import LocalBackend

        secrets = LocalBackend(as_sql, keys)
    manager = TokenManager(store=as_sql, secrets=secrets, keys=keys, clock=SystemClock(), actor=default_actor())
    return FastReader(store, manager)


def _as_sql_store(store: FastStore) -> SqlStore:
    """FastStore where a SqlStore is typed: it has the methods reveal/resolve/show/list call, with the same
    signatures (tests/test_fastread.py checks both), and nothing else is ever called on it here."""
    return store  # type: ignore[return-value]


def run_or_fall_back(fast: Callable[[FastReader], _T], full: Callable[[], _T], reader: FastReader | None) -> _T:
    """``fast(reader)`` when there is a reader and it can finish, else ``full()``. Closes the reader."""
    if reader is None:
        return full()
    try:
        with reader:
            return fast(reader)
    except FastPathUnavailable:
        return full()


__all__ = ["FAST_BACKENDS", "FAST_KEY_PROVIDERS", "FastPathUnavailable", "FastReader", "FastStore", "PgFastStore",
           "open_fast", "pg_connect_args", "run_or_fall_back", "sqlite_file"]
