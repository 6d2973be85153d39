"""How tokenvault opens a SQLite database file: one function for the full store and the fast path.

:func:`connect` is what :class:`~meta_tokenvault.adapters.store_sql.SqlStore`'s engine (its ``creator``) and
:class:`~meta_tokenvault.fastread.FastStore` open a ``sqlite:///path`` store with, so both get the same settings:

* **WAL journal mode**, set on a connection that can write (:func:`ensure_wal`). The mode is recorded in the
  file, so a new database gets it when it is created (once migrated: SqlStore.open) and an existing one at its
  next write-capable open; it is a no-op afterwards. A commit in WAL mode appends the changed pages to
  ``-wal`` and fsyncs once, where the rollback journal wrote every page twice with two or three fsyncs.
* **synchronous=FULL** on every connection: the WAL is fsynced at every commit, so a commit that returned is
  durable across a power loss (NORMAL, WAL's usual companion, would only sync at checkpoints).
* The ``-wal`` and ``-shm`` files SQLite creates get the database file's mode (0600: the store creates the file
  private from birth), whatever the umask.
* A database in WAL mode in a folder this process cannot write (a read-only mount), with no ``-wal``/``-shm``
  beside it, is opened ``immutable`` (read-only): see :func:`_read_only_wal`.

Standard library only (the fast path imports it).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

BUSY_TIMEOUT_S = 30.0  # wait for another process's write lock rather than fail
_WAL_SWITCH_TIMEOUT_MS = 2_000  # switching to WAL needs the database to itself; otherwise it is done next time
_WAL_FORMAT = b"\x02\x02"  # the header's read/write format versions (bytes 18-19) of a database in WAL mode


def connect(path: Path, *, timeout: float | None = None) -> sqlite3.Connection:
    """Open the existing database file ``path`` (never create it) for the store: read-write when possible,
    autocommit (``isolation_level=None``: the callers issue ``BEGIN IMMEDIATE`` themselves), usable from any
    thread, ``synchronous=FULL``, switched to WAL when it can be written (:func:`ensure_wal`).

    ``timeout``: how long to wait for another process's lock (default :data:`BUSY_TIMEOUT_S`, read at the call).
    Raises :class:`sqlite3.Error` as :func:`sqlite3.connect` does (the callers translate it)."""
    timeout = BUSY_TIMEOUT_S if timeout is None else timeout
    uri = path.resolve().as_uri()
    if _read_only_wal(path):
        return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout, isolation_level=None,
                               check_same_thread=False)
    # mode=rw: never create the file (the store creates it 0600 first); SQLite opens it read-only by itself
    # when it cannot be written, and a write then fails as "attempt to write a readonly database".
    conn = sqlite3.connect(f"{uri}?mode=rw", uri=True, timeout=timeout, isolation_level=None,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA synchronous=FULL")
        switch_to_wal(conn, path, timeout)
    except BaseException:
        conn.close()
        raise
    return conn


def switch_to_wal(conn: sqlite3.Connection, path: Path, timeout: float = BUSY_TIMEOUT_S) -> bool:
    """:func:`ensure_wal` on ``conn`` (a connection to ``path``) when this process can write the file and its
    folder and the file is not empty; True when the database is in WAL mode afterwards. An empty file is left
    alone: it is a store ``init`` is making (SqlStore.open calls this again once it is migrated), or one that was
    truncated, which the store reports as such rather than writing a header into it."""
    if not (os.access(path.parent, os.W_OK) and os.access(path, os.W_OK) and path.stat().st_size > 0):
        return False
    return ensure_wal(conn, timeout)


def ensure_wal(conn: sqlite3.Connection, timeout: float = BUSY_TIMEOUT_S) -> bool:
    """Put the database of ``conn`` in WAL mode if it is not already (the mode is stored in the file); True when
    it is in WAL mode afterwards. A no-op on a database already in WAL mode. The switch needs the database to
    itself: when another connection holds it past a short wait, or the file cannot be written, the database
    keeps its mode (it works the same, only slower) and the next write-capable open tries again."""
    row = conn.execute("PRAGMA journal_mode").fetchone()
    if row is not None and str(row[0]).lower() == "wal":
        return True
    try:
        conn.execute(f"PRAGMA busy_timeout={_WAL_SWITCH_TIMEOUT_MS}")
        row = conn.execute("PRAGMA journal_mode=WAL").fetchone()
    except sqlite3.OperationalError:  # locked by another process, or read-only after all
        return False
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    return row is not None and str(row[0]).lower() == "wal"


def _read_only_wal(path: Path) -> bool:
    """True when ``path`` must be opened ``immutable=1`` to be read at all.

    A WAL database is read through its ``-shm`` index; SQLite deletes ``-wal`` and ``-shm`` when the last
    connection closes cleanly (after copying every committed page into the main file), and cannot open the
    database - even read-only - when they are missing and it cannot create them (a read-only folder).
    ``immutable=1`` tells SQLite the file cannot change: it reads the main file without locks and ignores any
    ``-wal``. That is only correct when the main file holds every committed transaction and nobody writes it
    meanwhile, hence the conditions, all required:

    * this process cannot write the folder (a read-only mount, or a folder without write permission): nothing
      this process opens can write the database, and it could not create the ``-shm``, so the plain open fails;
    * the file is in WAL mode (a database with a rollback journal reads fine read-only, with its locks);
    * neither ``-wal`` nor ``-shm`` exists: no connection anywhere has the database open (in WAL mode each
      connection keeps them until the last one closes), and no crash left committed transactions in a ``-wal``
      that immutable would ignore. With either present the plain read-only open is used (SQLite reads the
      ``-wal`` through them, or reports the error, never a stale database).

    What is left: a writer through another, writable mount of the same folder that opens the database after this
    check. This process then reads the database as it was (what the writer commits later is not seen, as if read
    just before), unless that writer also checkpoints pages into the main file while this process is reading
    (at its close, or after ~1,000 pages): such a read can fail as corrupt or mix old and new pages. The
    read-only connection writes nothing, so the file itself is never harmed; the window is one command's reads.
    Every write from this process fails as read-only, as it would without WAL.
    """
    folder = path.parent
    if os.access(folder, os.W_OK):
        return False
    try:
        with open(path, "rb") as file:
            header = file.read(20)
    except OSError:
        return False
    if header[18:20] != _WAL_FORMAT:
        return False
    return not (folder / f"{path.name}-wal").exists() and not (folder / f"{path.name}-shm").exists()
