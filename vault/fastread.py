"""The fast read path: reveal, resolve, show and list tokens of a local SQLite store without SQLAlchemy.

``tokenvault token reveal`` and ``tokenvault exec`` are run often, by scripts and service managers, and
their cost is start-up: SQLAlchemy and sqlmodel alone take several hundred milliseconds to import. This
path reads the same database through the standard library's :mod:`sqlite3` instead.

One source of truth
-------------------
Only the storage calls differ; everything else is the code the full path runs:

* the use cases are :class:`~meta_tokenvault.service.TokenManager`'s own ``reveal``, ``resolve``, ``show_token`` and
  ``list_tokens`` (same checks, messages and audit actions), run on :class:`FastStore` instead of
  :class:`~meta_tokenvault.adapters.store_sql.SqlStore`;
* decryption is :class:`~meta_tokenvault.adapters.secrets_local.LocalBackend` with the key provider built by
  :func:`meta_tokenvault.wiring.build_key_provider`: the same AES-GCM associated data is checked, so a tampered or
  swapped row fails the same way (exit 4);
* the SQL is :mod:`meta_tokenvault.queries`' (SqlStore runs the very same statements), whose tables and columns the
  tests check against :mod:`meta_tokenvault.models`;
* audit events are computed by :func:`meta_tokenvault.audit.next_link`, the function SqlStore uses, so the hash
  chain cannot fork;
* configuration, backend and key-provider choice are :mod:`meta_tokenvault.config` and :mod:`meta_tokenvault.wiring`'s.

When it is used
---------------
:func:`open_fast` returns ``None`` - use :func:`meta_tokenvault.wiring.build_manager` - unless this is the plain
case: a SQLite store (``sqlite:///path``, the file exists), at exactly :data:`meta_tokenvault.queries.SCHEMA_VERSION`
(an older database has a migration pending, a newer one is refused by the full path), secrets in the
``local`` backend, and the ``file`` or ``env`` key provider (set or recorded by init). PostgreSQL, the
Vault backend, the OS keyring and Vault Transit always take the full path. A :mod:`sqlite3` error at any
point raises :class:`FastPathUnavailable` (nothing was written: the audit append is one transaction),
and the caller runs the full path, which reports the problem the usual way.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from . import queries
from .audit import AUDIT_HEAD, next_link
from .queries import BlobRecord
from .types import Secret, TokenRecord

if TYPE_CHECKING:
    from .adapters.store_sql import SqlStore
    from .config import Settings
    from .service import TokenManager

#: Key providers whose keys are read locally without a heavy import (keyring and Transit are not).
FAST_KEY_PROVIDERS = ("file", "env")
_BUSY_TIMEOUT_MS = 30_000  # as SqlStore's engine: wait for a writer rather than fail

_T = TypeVar("_T")


class FastPathUnavailable(Exception):  # noqa: N818 - a signal to the caller, never shown to anyone
    """The fast path cannot finish (a :mod:`sqlite3` error): run the full path instead. Nothing was written."""


def sqlite_file(url: str) -> Path | None:
    """The file of a plain ``sqlite:///path`` URL; None for anything else (PostgreSQL, memory, options...)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix):]
    if not path or path == ":memory:":
        return None
    return Path(path)


class FastStore:
    """The reads (and the one audit append) of :class:`~meta_tokenvault.adapters.store_sql.SqlStore` that reveal,
    resolve, show and list need, on :mod:`sqlite3`, with the statements of :mod:`meta_tokenvault.queries`.

    Same method names and signatures as SqlStore's (a test compares them), so :class:`TokenManager` and
    :class:`LocalBackend` run on it unchanged. Every :class:`sqlite3.Error` becomes
    :class:`FastPathUnavailable`.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    @classmethod
    def connect(cls, path: Path) -> FastStore | None:
        """Open ``path`` read-write without creating it; None when it does not exist or cannot be opened."""
        if not path.is_file():
            return None
        try:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=_BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
        except sqlite3.Error:
            return None
        return cls(conn, path)

    @property
    def display_url(self) -> str:
        return f"sqlite:///{self.path}"

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise FastPathUnavailable(f"{type(exc).__name__}: {exc}") from None

    def _one(self, sql: str, params: Mapping[str, Any]) -> Any:
        with self._errors():
            return self.conn.execute(sql, params).fetchone()

    def schema_version(self) -> int:
        """The database's schema version (0 when it has no tokenvault schema)."""
        try:
            row = self.conn.execute(queries.SCHEMA_VERSION_QUERY).fetchone()
        except sqlite3.OperationalError:  # no tv_schema_version table
            return 0
        return int(row[0] or 0) if row else 0

    def get_setting(self, key: str) -> str | None:
        row = self._one(queries.SETTING, {"key": key})
        return None if row is None else str(row[0])

    def get_token(self, label: str, *, with_history: bool = False) -> TokenRecord:
        with self._errors():
            row = self.conn.execute(queries.TOKEN_BY_LABEL, {"label": label}).fetchone()
            versions = (self.conn.execute(queries.VERSIONS_OF_TOKEN, {"token_id": row[0]}).fetchall()
                        if with_history and row is not None else [])
        return queries.token_from_rows(label, row, versions)

    def list_tokens(self) -> list[TokenRecord]:
        with self._errors():
            return queries.token_records(self.conn.execute(queries.ALL_TOKENS))

    def get_blob(self, kind: str, owner_id: int, version: int) -> BlobRecord | None:
        return queries.blob_record(self._one(queries.BLOB, {"kind": kind, "owner_id": owner_id, "version": version}))

    def append_audit(self, actor: str, action: str, subject: str, details: dict[str, Any], now: datetime) -> int:
        """Append one event to the hash chain: ``BEGIN IMMEDIATE`` serialises it with every other writer
        (SqlStore's sessions begin the same way), the link is :func:`meta_tokenvault.audit.next_link`'s."""
        with self._errors():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                head = self.conn.execute(queries.SETTING, {"key": AUDIT_HEAD}).fetchone()
                link = next_link(head[0] if head else None, actor, action, subject, details, now)
                self.conn.execute(queries.AUDIT_INSERT, {
                    "seq": link.seq, "at": queries.sqlite_datetime(link.at), "actor": link.actor,
                    "action": link.action, "subject": link.subject, "details": link.details,
                    "prev_hash": link.prev_hash, "hash": link.hash})
                self.conn.execute(queries.SETTING_UPDATE if head else queries.SETTING_INSERT,
                                  {"key": AUDIT_HEAD, "value": link.head})
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            return link.seq


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
    TOKENVAULT_BACKEND, a malformed TOKENVAULT_MASTER_KEY), exactly as the full path would; writes nothing.
    """
    env = os.environ if environ is None else environ
    path = sqlite_file(settings.database_url)
    store = FastStore.connect(path) if path is not None else None
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
    if backend != "local" or provider not in FAST_KEY_PROVIDERS:
        store.close()
        return None
    from .adapters.secrets_local import LocalBackend
    from .ports.clock import SystemClock
    from .service import TokenManager
    from .wiring import default_actor

    keys = build_key_provider(settings, provider, env)
    as_sql = _as_sql_store(store)
    manager = TokenManager(store=as_sql, secrets=LocalBackend(as_sql, keys), keys=keys, clock=SystemClock(),
                           actor=default_actor())
    return FastReader(store, manager)


def _as_sql_store(store: FastStore) -> SqlStore:
    """FastStore where a SqlStore is typed: it has the methods reveal/resolve/show/list call, with the same
    signatures (tests/test_fastread.py checks both), and nothing else is ever called on it here."""
    return cast("SqlStore", store)


def run_or_fall_back(fast: Callable[[FastReader], _T], full: Callable[[], _T], reader: FastReader | None) -> _T:
    """``fast(reader)`` when there is a reader and it can finish, else ``full()``. Closes the reader."""
    if reader is None:
        return full()
    try:
        with reader:
            return fast(reader)
    except FastPathUnavailable:
        return full()


__all__ = ["FAST_KEY_PROVIDERS", "FastPathUnavailable", "FastReader", "FastStore", "open_fast",
           "run_or_fall_back", "sqlite_file"]
