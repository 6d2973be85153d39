"""Revoke-and-reissue rotation as a journaled, resumable state machine.

Normal (zero downtime; the active token always works)::

    started → minting → stored → verified → promoted → old_revoked → done

Compromised (the leaked token dies first)::

    started → compromised_revoked → minting → stored → verified → promoted → done

Two other *kinds* run the same machine (``tv_rotation.kind``), without the revocation:

* ``refresh``: a 60-day token is exchanged for a new one (``fb_exchange_token``) in the ``minting`` step; the
  old one keeps working until its own expiry, so nothing is revoked: ``… verified → done``. When Meta refuses
  the exchange, the rotation becomes a normal one (kind ``rotate``) in the same step: minted through an
  eligible admin (or deferred with a reminder), the old token revoked as usual.
* ``reissue``: the token is dead at Meta already (``invalidated``); a new one is minted and promoted, nothing
  is left to revoke: ``… verified → done``.

Each step is recorded in ``tv_rotation`` *before* the next is taken and every step is safe to
repeat, so a process killed anywhere is finished by ``run-due`` or the next ``token rotate``.
A token minted at Meta is written to the secret backend (as a *pending* version) before any other
call is made. A database lease on ``rotate:<token id>`` (not a file lock: it holds across hosts that
share PostgreSQL) makes sure two rotations of one token never both mint; the loser gets
:class:`~meta_tokenvault.errors.RotationInProgress` (exit 8). When minting is blocked by Meta's seven-day rule the
rotation is parked as *deferred* with a reminder dated when the window opens.

Cost per rotation, which bulk rotation multiplies by thousands: three Graph calls (mint, debug_token,
revoke) and one database transaction per journaled step, holding that step's writes, its journal entry
and its audit event. Concurrent rotations share their commits (:class:`GroupCommit`): one commit, hence
one fsync, for every step that is ready at the same time. Within a rotation the journal, the versions and
the secrets it minted are kept in memory (the lease makes this process their only writer), and a bulk run
reads each business's app secret and admin token once.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..context import debug_summary, test_crash
from ..errors import Deferred, InvalidRequest, NotFound, PermissionMissing, RotationInProgress, TokenInvalid, VaultError
from ..leases import lease_owner, take_lease
from ..types import (
    BusinessRecord,
    RotationRecord,
    Secret,
    SecretKind,
    SecretRef,
    SystemUserRecord,
    TokenRecord,
    TokenSource,
    TokenStatus,
    as_utc,
)
from .mint import Minter, MintResult

if TYPE_CHECKING:
    from ..adapters.store_sql import SqlStore
    from ..context import VaultContext
    from ..ports.graph import AppCredentials
    from ..types import TokenVersionRecord

LEASE_TTL = timedelta(minutes=10)
KINDS = ("rotate", "refresh", "reissue")
STEPS = ("started", "compromised_revoked", "minting", "stored", "verified", "promoted", "old_revoked", "done")


@dataclass(frozen=True)
class RotationOutcome:
    label: str
    state: str  # done | deferred | failed | skipped
    from_version: int
    to_version: int | None
    compromised: bool
    message: str = ""
    opens_at: str | None = None
    reminder_id: int | None = None
    kind: str = "rotate"  # what it ended as: a refresh Meta refused ends as a rotation

    def as_json(self) -> dict[str, object]:
        return {"label": self.label, "state": self.state, "from_version": self.from_version,
                "to_version": self.to_version, "compromised": self.compromised, "message": self.message,
                "opens_at": self.opens_at, "reminder_id": self.reminder_id, "kind": self.kind}


_T = TypeVar("_T")


class _Signal:
    """What a group commit's waiter needs of ``threading.Event`` (``set``, ``wait``), as one lock held until
    set: an Event is a Condition over a lock, and a rotation makes five of them. ``set`` may come twice (a waiter
    handed the lead is set again when its own write is committed); ``wait`` returns at once once set."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        with suppress(RuntimeError):  # set already
            self._lock.release()

    def wait(self) -> None:
        self._lock.acquire()
        with suppress(RuntimeError):  # set again meanwhile: it stays set (released) all the same
            self._lock.release()


@dataclass(eq=False)
class _Pending(Generic[_T]):
    work: Callable[[], _T]
    behind: bool = False  # nobody waits for it (write-behind)
    tag: str = ""  # whose write it is (a label), for drain()
    after: Callable[[], None] | None = None  # run by the committing thread once it is durable
    ready: _Signal = field(default_factory=_Signal)
    lead: bool = False
    result: _T | None = None
    error: BaseException | None = None

    def outcome(self) -> _T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set whenever error is None


class GroupCommit:
    """Group commit: the store writes of many threads, committed in one transaction.

    :meth:`run` hands a function doing store calls (never network calls) to whichever thread is committing;
    every function that arrives while a commit is under way goes into the next one, so N rotations at the
    same step pay one commit (one fsync) instead of N. A function's error (raised in its own thread) undoes
    only its writes: the batch is first run without savepoints; if one fails, nothing of it is written and it
    is run again with each function in a savepoint. :meth:`run` returns once the commit holding the function is
    durable, so "recorded before the next step is taken" still holds per rotation.

    ``behind=True`` (write-behind) returns at once instead, for writes nothing waits on (a rotation's last
    journal entries, after its last call to Meta): they are committed in order with the others, and
    :meth:`drain` waits for them and returns their errors.
    """

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._queue: list[_Pending[Any]] = []
        self._behind: list[_Pending[Any]] = []
        self._leading = False
        self.commits = 0  # transactions committed (for reports and tests)
        self.writes = 0  # functions run in them
        self.retried = 0  # batches run again one savepoint each (one of their functions failed)

    def run(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` in the next commit; returns its result once that commit is durable."""
        item: _Pending[_T] = _Pending(work)
        if self._submit(item):
            item.ready.wait()
            if not item.lead:
                return item.outcome()
        self._lead()
        return item.outcome()

    def run_behind(self, work: Callable[[], object], *, after: Callable[[], None] | None = None,
                   tag: str = "") -> None:
        """Write-behind: ``work`` goes into the next commit and this returns at once (unless no commit is under
        way: then this thread commits it). ``after`` runs in the committing thread once it is durable."""
        item: _Pending[object] = _Pending(work, behind=True, tag=tag, after=after)
        if not self._submit(item):
            self._lead()

    def _submit(self, item: _Pending[Any]) -> bool:
        """Queue ``item``; True when a commit is under way (its thread takes it), False: the caller leads."""
        with self._lock:
            self._queue.append(item)
            if item.behind:
                self._behind.append(item)
            busy = self._leading
            self._leading = True
        return busy

    def drain(self) -> list[tuple[str, BaseException]]:
        """Wait for every write-behind commit (including those queued meanwhile by ``after`` callbacks);
        returns ``(tag, error)`` for each one that failed (its writes were not recorded)."""
        errors: list[tuple[str, BaseException]] = []
        while True:
            with self._lock:
                pending, self._behind = self._behind, []
            if not pending:
                return errors
            for item in pending:
                item.ready.wait()
            errors += [(item.tag, item.error) for item in pending if item.error is not None]

    def _lead(self) -> None:
        again = True
        while again:
            with self._lock:
                batch, self._queue = self._queue, []
            committed = False
            try:
                self._commit(batch)
                committed = True
            finally:
                for item in batch:
                    item.lead = False
                    item.ready.set()
                with self._lock:
                    waiting = next((i for i in self._queue if not i.behind), None)
                    if waiting is not None:  # hand over: the oldest waiting thread commits the next batch
                        waiting.lead = True
                        waiting.ready.set()
                    # only write-behind work left, which no thread waits for: commit it too
                    again = committed and waiting is None and bool(self._queue)
                    self._leading = again or waiting is not None

    def _commit(self, batch: list[_Pending[Any]]) -> None:
        try:
            if len(batch) == 1 or not self._together(batch):
                with self._store.transaction():
                    if len(batch) == 1:  # alone: its error rolls back the transaction, no savepoint needed
                        batch[0].result = batch[0].work()
                    for item in batch if len(batch) > 1 else ():
                        try:
                            with self._store.transaction():  # a savepoint
                                item.result = item.work()
                        except Exception as exc:  # noqa: BLE001 - delivered to the thread that asked
                            item.error = exc
            self.commits += 1
            self.writes += len(batch)
        except BaseException as exc:  # the commit failed: nothing of this batch was written
            for item in batch:
                if item.error is None:
                    item.error, item.result = exc, None
            if not isinstance(exc, Exception):
                raise
        for item in batch:
            if item.error is None and item.after is not None:
                item.after()

    def _together(self, batch: list[_Pending[Any]]) -> bool:
        """The usual case, first: the whole batch in one transaction without a savepoint each (a savepoint
        costs more than most of the writes in it). If any function fails, nothing of the batch is written and
        this returns False: the batch is run again, each function in its own savepoint (the functions are
        store work only, so running them again is safe)."""
        try:
            with self._store.transaction():
                for item in batch:
                    item.result = item.work()
        except Exception:  # noqa: BLE001 - rolled back; the savepoint path finds whose error it is
            for item in batch:
                item.result = None
            self.retried += 1
            return False
        return True


@dataclass(frozen=True)
class _Business:
    """What the Graph calls of a rotation need about its business, read (and decrypted) once."""

    record: BusinessRecord
    app: AppCredentials = field(repr=False)
    admin: Secret = field(repr=False)


@dataclass(frozen=True)
class _Begun:
    record: TokenRecord
    rotation: RotationRecord | None  # None: skipped (rotated by another process since the caller looked), or held
    new: bool
    old: TokenVersionRecord | None = None
    old_secret: Secret | None = field(default=None, repr=False)
    held: bool = False  # someone holds the lease (nothing was written)


@dataclass
class _Work:
    """What a rotation knows in memory (its lease makes this process the only writer of its rows)."""

    record: TokenRecord
    fresh: bool  # started by this call: nothing of it can be stored yet
    old: TokenVersionRecord | None = None
    owner: str | None = None  # the lease, until released
    leased_at: datetime | None = None  # when the lease was last taken or renewed (the manager's clock)
    old_secret: Secret | None = field(default=None, repr=False)
    new_secret: Secret | None = field(default=None, repr=False)


@dataclass
class _Next:
    """What a step handler hands back: the next step, the journal's changes, and the step's store writes
    (committed together with the journal entry). ``before`` runs just ahead of that commit, outside the
    transaction (a write to a remote secret backend); ``guard`` wraps both (minting: a token that cannot be
    kept is revoked at Meta)."""

    step: str
    changes: dict[str, Any] = field(default_factory=dict)
    write: Callable[[], None] | None = None
    before: Callable[[], None] | None = None
    guard: AbstractContextManager[None] | None = None
    join_next: bool = False  # the next step calls nobody: both journal entries go into one commit
    behind: bool = False  # after the last call to Meta: written behind (see GroupCommit.run_behind)


class Rotator:
    """Runs rotations for one context. One Rotator may serve many threads (:meth:`rotate_many`); it keeps
    each business's app credentials and admin token for its lifetime (one bulk run, one ``run-due``)."""

    def __init__(self, ctx: VaultContext) -> None:
        self.ctx = ctx
        self.minter = Minter(ctx)
        self.group = GroupCommit(ctx.store)
        self._businesses: dict[str, _Business] = {}
        self._admins: dict[str, list[SystemUserRecord]] = {}  # business name -> Minter.candidates
        self._businesses_lock = threading.Lock()
        self._bulk = False  # inside rotate_many: each rotation's write-behind is settled at the end, not by it

    # ------------------------------------------------------------------ entry points
    def rotate(self, label: str, *, compromised: bool = False, reason: str = "",
               expected_version: int | None = None, kind: str = "rotate") -> RotationOutcome:
        """Rotate ``label`` (or resume its open rotation). Raises Deferred (exit 7) / RotationInProgress (8).

        ``expected_version`` (policy rotation): if another process rotated the token since the caller
        looked, nothing is done (the outcome's state is ``skipped``), so two schedulers never rotate twice.
        ``kind``: ``rotate``, ``refresh`` or ``reissue`` (see the module's docstring).
        """
        outcome = self._rotate(label, compromised, reason, expected_version, kind)
        self._settle()
        return outcome

    def _settle(self) -> None:
        """Outside a bulk run: wait until the journal's write-behind is durable; raise what failed."""
        if not self._bulk:
            for _, error in self.group.drain():
                raise error

    def _rotate(self, label: str, compromised: bool, reason: str, expected_version: int | None,
                kind: str = "rotate") -> RotationOutcome:
        if kind not in KINDS:
            raise ValueError(f"unknown rotation kind {kind!r}")
        owner = lease_owner()
        begin = self._begin(label, owner, compromised, reason, expected_version, kind)
        try:  # the usual case, one commit: the lease (nobody holds one) and the journal up to the first step
            begun: _Begun | None = self.group.run(lambda: begin(True))
        except NotFound:
            raise
        except VaultError:
            begun = None  # another host took the lease at the same moment (PostgreSQL)
        if begun is None or begun.held:  # a lease exists: held, expired, or left by a dead process
            record = begun.record if begun is not None else self.ctx.store.get_token(label)
            self._lock(record, owner)
            try:
                begun = self.group.run(lambda: begin(False))
            except BaseException:
                self._unlock(record, owner)
                raise
        assert begun is not None
        record = begun.record
        work = _Work(record, fresh=begun.new, old=begun.old, owner=owner, old_secret=begun.old_secret)
        try:
            rotation = begun.rotation
            if rotation is None:
                return RotationOutcome(label, "skipped", expected_version or 0, record.version, compromised,
                                       "already rotated by another process")
            if begun.new:
                test_crash(rotation.step)
                return self._run(rotation, work)
            open_rotation = rotation
            upgrade = (compromised and not open_rotation.compromised and open_rotation.step in ("started", "minting")
                       and not self._new_version_stored(open_rotation))

            def resume() -> RotationRecord:
                if upgrade:
                    self.ctx.store.update_rotation(open_rotation.id, self.ctx.now(), compromised=True, step="started")
                self.ctx.audit("rotation.resume", label, rotation=open_rotation.id, step=open_rotation.step)
                return self.ctx.store.get_rotation(open_rotation.id)

            return self._run(self.group.run(resume), work)
        finally:
            if work.owner is not None:
                self._unlock(record, work.owner)

    def _begin(self, label: str, owner: str, compromised: bool, reason: str,
               expected_version: int | None, kind: str = "rotate") -> Callable[[bool], _Begun]:
        """The store work that opens a rotation, for one commit: the token read; with ``take_lease``, its lease
        if no one holds one (else ``held``: the caller takes it the careful way); then, under the lease, the
        open rotation, or a new one journaled up to its first step (``minting``, or ``started`` when
        compromised), with what its first steps read (the current version; on the local backend its secret).
        """
        def begin(take_lease: bool) -> _Begun:
            store, now = self.ctx.store, self.ctx.now()
            record = store.get_token(label)
            if take_lease and not store.take_free_lease(_resource(record.id), owner, now, LEASE_TTL):
                return _Begun(record, None, new=False, held=True)
            open_rotation = store.open_rotation(record.id)
            if open_rotation is not None:
                return _Begun(record, open_rotation, new=False)
            if expected_version is not None and record.version != expected_version:
                return _Begun(record, None, new=False)
            # "started" needs no call to Meta: unless compromised, the row is written at "minting" in the same
            # commit (both steps audited), and the record built here rather than read back
            step, to_version = ("started", None) if compromised else ("minting", store.max_version(record.id) + 1)
            rotation_id = store.start_rotation(record.id, label, record.version, compromised, reason, now, kind=kind,
                                               step=step, to_version=to_version)
            self.ctx.audit("rotation.start", label, rotation=rotation_id, from_version=record.version,
                         compromised=compromised, reason=reason, kind=kind)
            old = store.version_record(record.id, record.version)
            if not compromised:
                self.ctx.audit("rotation.minting", label, rotation=rotation_id, to_version=to_version)
            rotation = RotationRecord(id=rotation_id, token_id=record.id, label=label, from_version=record.version,
                                      to_version=to_version, compromised=compromised, step=step, state="running",
                                      reason=reason, started_at=as_utc(now), updated_at=as_utc(now), error=None,
                                      kind=kind)
            return _Begun(record, rotation, new=True, old=old, old_secret=self._prefetch(rotation))
        return begin

    def _prefetch(self, rotation: RotationRecord) -> Secret | None:
        """The old token, read in the same commit when the secret backend is this database (the local backend);
        None otherwise, or if it cannot be opened: it is read when needed, as before (a new token can still be
        minted and promoted when the old one's record is damaged)."""
        if not self._secrets_in_store():
            return None
        try:
            return self.ctx.secrets.get(self._refs(rotation)[0])
        except VaultError:
            return None

    def resume(self, rotation_id: int) -> RotationOutcome:
        """Continue an open rotation (crashed or deferred) from its journaled step."""
        rotation = self.ctx.store.get_rotation(rotation_id)
        record = self.ctx.store.get_token(rotation.label)
        owner = self._lock(record)
        work = _Work(record, fresh=False, owner=owner)
        try:
            self.group.run(lambda: self.ctx.audit("rotation.resume", rotation.label, rotation=rotation_id,
                                                step=rotation.step))
            outcome = self._run(self.ctx.store.get_rotation(rotation_id), work)
        finally:
            if work.owner is not None:
                self._unlock(record, work.owner)
        self._settle()
        return outcome

    def rotate_many(self, labels: Iterable[str], *, compromised: bool = False, reason: str = "",
                    concurrency: int = 4,
                    progress: Callable[[RotationOutcome], None] | None = None,
                    kind: str = "rotate",
                    expected: dict[str, int] | None = None) -> list[RotationOutcome]:
        """Rotate several tokens with bounded concurrency; one outcome per label, in the order given (an
        error does not stop the others). ``progress`` is called from the worker threads as each one ends.
        ``kind``: of every rotation; ``expected``: label -> the version the caller saw (``skipped`` if it moved).
        ``labels`` may be a generator that blocks (work found while this runs): each label starts as it comes."""
        from concurrent.futures import ThreadPoolExecutor

        def one(label: str) -> RotationOutcome:
            try:
                outcome = self._rotate(label, compromised, reason, (expected or {}).get(label), kind)
            except Deferred as exc:
                outcome = RotationOutcome(label, "deferred", 0, None, compromised, exc.message,
                                          exc.opens_at.isoformat() if exc.opens_at else None, exc.reminder_id)
            except VaultError as exc:
                outcome = RotationOutcome(label, "failed", 0, None, compromised, exc.message)
            if progress is not None:
                progress(outcome)
            return outcome

        self._bulk = True
        try:
            with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="rotate") as pool:
                outcomes = list(pool.map(one, labels))
        finally:
            self._bulk = False
            unrecorded = dict(self.group.drain())
        return [o if o.label not in unrecorded else replace(
            o, state="failed", message=f"{o.label} was rotated (the new token is active, the old one revoked at "
                                       f"Meta) but its last journal entry was not recorded: "
                                       f"{getattr(unrecorded[o.label], 'message', unrecorded[o.label])}; "
                                       "`tokenvault run-due` completes it.") for o in outcomes]

    # ------------------------------------------------------------------ the machine
    def _lock(self, record: TokenRecord, owner: str | None = None) -> str:
        owner = owner or lease_owner()
        taken, holder = take_lease(self.ctx.store, _resource(record.id), owner, self.ctx.now(), LEASE_TTL)
        if taken:
            return owner
        until = f" (lease until {holder[1]:%H:%M:%S} UTC)" if holder else ""
        raise RotationInProgress(f"Another rotation of {record.label} is under way{until}; nothing was minted.",
                                 hint="Wait for it to finish; if it crashed, `tokenvault run-due` resumes it "
                                      "once its lease expires.")

    def _keep_lease(self, rotation: RotationRecord, work: _Work) -> None:
        """Renew the lease once a third of it is spent (paced Graph calls can make one rotation long), so it
        never expires under a live rotation and no other process or host takes it over and mints too.
        Costs nothing in the common case. Raises RotationInProgress, before the next call to Meta, if the
        lease was lost anyway (this process was stopped longer than the lease)."""
        now = self.ctx.now()
        if work.owner is None or work.leased_at is None or now - work.leased_at < LEASE_TTL / 3:
            return
        owner, resource = work.owner, _resource(rotation.token_id)
        if not self.ctx.store.acquire_lease(resource, owner, now, LEASE_TTL):  # its own transaction, like _lock
            work.owner = None  # not ours any more: never release what another process holds
            raise RotationInProgress(f"The rotation of {rotation.label} lost its lease (this process was paused "
                                     "past it) and stopped before its next call to Meta; another run holds it.",
                                     hint="`tokenvault run-due` finishes the rotation; nothing minted is lost.")
        work.leased_at = now

    def _unlock(self, record: TokenRecord, owner: str) -> None:
        self.group.run(lambda: self.ctx.store.release_lease(_resource(record.id), owner))

    def _run(self, rotation: RotationRecord, work: _Work) -> RotationOutcome:
        joined: list[tuple[str, Callable[[], None]]] = []  # journal entries waiting for the same commit
        work.leased_at = work.leased_at or self.ctx.now()
        while rotation.state != "done":
            self._keep_lease(rotation, work)
            handler: Callable[[RotationRecord, _Work], _Next] = getattr(self, f"_step_{rotation.step}")
            nxt = handler(rotation, work)
            state = "done" if nxt.step == "done" else "running"
            release = work.owner if state == "done" else None  # the lease goes with the last entry
            # joined to the next step's entry, in the same commit: that entry's row update supersedes this one's
            superseded = nxt.join_next and not nxt.changes
            joined.append((nxt.step, self._journal(rotation, nxt.step, state, nxt.changes, nxt.write, release,
                                                   row=not superseded)))
            rotation = replace(rotation, step=nxt.step, state=state, **nxt.changes)
            if nxt.join_next:
                continue
            if nxt.behind:  # nothing is left that Meta or the caller waits on: the rest is written behind
                if release is not None:
                    work.owner = None  # released by the last entry, behind
                self._write_behind(rotation, work, joined)
                return self._outcome(rotation, "done")
            entries, joined = joined, []
            with nxt.guard or nullcontext():
                if nxt.before is not None:
                    nxt.before()
                self.group.run(_chain([commit for _, commit in entries]))
            if release is not None:
                work.owner = None  # released by that commit
            for step, _ in entries:
                test_crash(step)
        return self._outcome(rotation, "done")

    def _write_behind(self, rotation: RotationRecord, work: _Work,
                      entries: list[tuple[str, Callable[[], None]]]) -> None:
        """Journal ``entries`` and every step left (bookkeeping only: no call to Meta), each in a commit of its
        own, in order, without waiting: each one is queued by the thread that committed the one before."""
        while rotation.state != "done":
            handler: Callable[[RotationRecord, _Work], _Next] = getattr(self, f"_step_{rotation.step}")
            nxt = handler(rotation, work)
            assert nxt.behind and nxt.before is None and nxt.guard is None, nxt.step
            state = "done" if nxt.step == "done" else "running"
            release, work.owner = (work.owner, None) if state == "done" else (None, work.owner)
            entries.append((nxt.step, self._journal(rotation, nxt.step, state, nxt.changes, nxt.write, release)))
            rotation = replace(rotation, step=nxt.step, state=state, **nxt.changes)

        def queue(rest: list[tuple[str, Callable[[], None]]]) -> None:
            if rest:
                (step, commit), later = rest[0], rest[1:]

                def after() -> None:
                    test_crash(step)
                    queue(later)
                self.group.run_behind(commit, after=after, tag=rotation.label)
        queue(entries)

    def _journal(self, rotation: RotationRecord, next_step: str, state: str, changes: dict[str, Any],
                 write: Callable[[], None] | None, release: str | None, *, row: bool = True) -> Callable[[], None]:
        """The step's writes, its journal entry and its audit event (and the lease ``release``): one commit.
        ``row=False``: the journal row is left to the entry committed with this one, right after it."""
        def commit() -> None:
            if write is not None:
                write()
            if row:
                self.ctx.store.update_rotation(rotation.id, self.ctx.now(), step=next_step, state=state, **changes)
            self.ctx.audit(f"rotation.{next_step}", rotation.label, rotation=rotation.id,
                         to_version=changes.get("to_version", rotation.to_version))
            if release is not None:
                self.ctx.store.release_lease(_resource(rotation.token_id), release)
        return commit

    def _outcome(self, rotation: RotationRecord, state: str) -> RotationOutcome:
        return RotationOutcome(rotation.label, state, rotation.from_version, rotation.to_version,
                               rotation.compromised, kind=rotation.kind)

    def _business(self, name: str) -> _Business:
        with self._businesses_lock:
            cached = self._businesses.get(name)
        if cached is None:
            biz = self.ctx.store.get_business(name)
            cached = _Business(biz, self.ctx.app_credentials(biz), self.ctx.admin_token(biz))
            with self._businesses_lock:
                self._businesses.setdefault(name, cached)
        return cached

    def _mint(self, biz: _Business, scopes: tuple[str, ...], *, expiring: bool) -> MintResult:
        """Mint through the business's admins, listed once per Rotator (again after one had the app installed:
        the list says who still needs it)."""
        name = biz.record.name
        with self._businesses_lock:
            admins = self._admins.get(name)
        if admins is None:
            admins = self.minter.candidates(biz.record, None)
            with self._businesses_lock:
                self._admins[name] = admins
        minted: MintResult | None = None
        try:
            minted = self.minter.mint(biz.record, scopes, expiring=expiring, app=biz.app, caller=biz.admin,
                                      admins=admins)
            return minted
        finally:
            tried = admins if minted is None else \
                admins[:next(i for i, su in enumerate(admins) if su.id == minted.system_user_id) + 1]
            if not all(su.app_installed for su in tried):  # mint installed the app for one of them
                with self._businesses_lock:
                    self._admins.pop(name, None)

    def _refs(self, rotation: RotationRecord) -> tuple[SecretRef, SecretRef | None]:
        old = SecretRef(SecretKind.TOKEN, rotation.token_id, rotation.from_version, rotation.label)
        new = (SecretRef(SecretKind.TOKEN, rotation.token_id, rotation.to_version, rotation.label)
               if rotation.to_version is not None else None)
        return old, new

    def _new_version_stored(self, rotation: RotationRecord) -> bool:
        _, new = self._refs(rotation)
        return new is not None and self.ctx.secrets.exists(new)

    def _old_version(self, rotation: RotationRecord, work: _Work) -> TokenVersionRecord:
        if work.old is None:
            work.old = self.ctx.store.version_record(rotation.token_id, rotation.from_version)
        return work.old

    def _old_secret(self, rotation: RotationRecord, work: _Work) -> Secret:
        if work.old_secret is None:
            work.old_secret = self.ctx.secrets.get(self._refs(rotation)[0])
        return work.old_secret

    def _new_secret(self, rotation: RotationRecord, work: _Work) -> Secret:
        if work.new_secret is None:
            _, new_ref = self._refs(rotation)
            assert new_ref is not None
            work.new_secret = self.ctx.secrets.get(new_ref)
        return work.new_secret

    def _step_started(self, rotation: RotationRecord, work: _Work) -> _Next:
        if not rotation.compromised:
            return _Next("minting", {"to_version": self.ctx.store.max_version(rotation.token_id) + 1})
        biz = self._business(work.record.business_name)
        version = self._old_version(rotation, work)
        if version.revoked_at is None:
            # The leaked token may be the only token we hold: revoke with the business admin token as caller.
            self.ctx.revoke_at_meta(biz.record, self._old_secret(rotation, work), caller=biz.admin, app=biz.app,
                                   admin=biz.admin)
        revoked_at = version.revoked_at or self.ctx.now()
        older = self._revoke_older_live(rotation, work, biz)

        def write() -> None:
            self.ctx.store.update_version(rotation.token_id, rotation.from_version, status=TokenStatus.COMPROMISED,
                                        revoked_at=revoked_at)
            for number in older:  # kept after a refresh: as exposed as the current one, so killed with it
                self.ctx.store.update_version(rotation.token_id, number, status=TokenStatus.COMPROMISED,
                                            revoked_at=revoked_at)
                self.ctx.audit("token.revoke", rotation.label, version=number,
                               status=TokenStatus.COMPROMISED.value, reason="compromised rotation")
        return _Next("compromised_revoked", write=write)

    def _revoke_older_live(self, rotation: RotationRecord, work: _Work, biz: _Business) -> list[int]:
        """Revoke at Meta every older version that may still work (a refresh keeps the old token valid until
        its own expiry): whoever leaked the current token may hold those too. Returns their numbers. Revoking
        one Meta already refuses counts as done, so a resumed step repeats this safely."""
        now = self.ctx.now()
        history = self.ctx.store.get_token(rotation.label, with_history=True).history
        live = [v.version for v in history
                if v.version < rotation.from_version and v.revoked_at is None
                and v.status not in (TokenStatus.REVOKED, TokenStatus.COMPROMISED, TokenStatus.INVALIDATED)
                and (v.expires_at is None or v.expires_at > now)]
        for number in live:
            ref = SecretRef(SecretKind.TOKEN, rotation.token_id, number, rotation.label)
            if self.ctx.secrets.exists(ref):
                self.ctx.revoke_at_meta(biz.record, self.ctx.secrets.get(ref), caller=biz.admin, app=biz.app,
                                       admin=biz.admin)
        return live

    def _step_compromised_revoked(self, rotation: RotationRecord, work: _Work) -> _Next:
        return _Next("minting", {"to_version": self.ctx.store.max_version(rotation.token_id) + 1})

    def _step_minting(self, rotation: RotationRecord, work: _Work) -> _Next:
        _, new_ref = self._refs(rotation)
        assert new_ref is not None and rotation.to_version is not None
        to_version = rotation.to_version
        record = work.record
        old = self._old_version(rotation, work)
        in_store = self._secrets_in_store()
        nxt = _Next("stored")
        # A new rotation on the local backend cannot have stored anything yet; otherwise ask the backend
        # (which also proves a remote one is reachable before Meta mints anything).
        if not (work.fresh and in_store) and self.ctx.secrets.exists(new_ref):  # stored before a crash: record it
            secret = self._new_secret(rotation, work)
            fingerprint = self.ctx.fingerprint(secret)
            system_user_id = old.system_user_id
            put: Callable[[], None] | None = None
        else:
            biz = self._business(record.business_name)
            minted = self._exchange(rotation, work, biz, old) if rotation.kind == "refresh" else None
            if minted is None:
                if rotation.kind == "refresh":  # Meta refused the exchange: a normal rotation, journaled as one
                    nxt.changes["kind"] = "rotate"
                    rotation = replace(rotation, kind="rotate")
                try:
                    minted = self._mint(biz, tuple(old.scopes), expiring=old.expires_at is not None)
                except Deferred as exc:
                    raise self._defer(rotation, record, exc) from None
            secret, system_user_id = minted.secret, minted.system_user_id
            work.new_secret = secret
            fingerprint = self.ctx.fingerprint(secret)
            metadata = {"business": biz.record.name, "system_user_id": system_user_id, "app_id": biz.record.app_id,
                        "scopes": ",".join(old.scopes), "fingerprint": fingerprint}

            def put() -> None:
                self.ctx.secrets.put(new_ref, secret, metadata)
            nxt.guard = self._kept(minted, new_ref, record.label)
            if not in_store:  # a remote backend (Vault) is never written inside a database transaction
                nxt.before, put = put, None
        source = TokenSource.REFRESHED if rotation.kind == "refresh" else TokenSource.ROTATED
        fields = {
            "status": TokenStatus.PENDING, "source": source, "system_user_id": system_user_id,
            "app_id": record.provenance.app_id, "scopes": list(old.scopes), "waba_ids": list(old.waba_ids),
            "fingerprint": fingerprint, "last4": secret.last4, "created_at": self.ctx.now(),
            "backend": self.ctx.secrets.name}

        fresh = work.fresh  # begun by this call, under its lease: no version to_version can exist yet

        def write() -> None:  # the token, its pending version and the journal: one commit, before anything else
            if put is not None:
                put()
            if fresh or self.ctx.store.max_version(rotation.token_id) < to_version:
                self.ctx.store.add_version(rotation.token_id, to_version, fields, make_current=False)
        nxt.write = write
        return nxt

    def _exchange(self, rotation: RotationRecord, work: _Work, biz: _Business,
                  old: TokenVersionRecord) -> MintResult | None:
        """A refresh's ``minting``: exchange the current token for a new 60-day one. ``None`` when Meta refuses
        (the token was not refreshable, or is dead already): recorded, notified, and the caller mints instead.
        Transient failures and rate limits are raised: the rotation stays open and is resumed as a refresh."""
        try:
            refreshed = self.ctx.graph.refresh_token(self._old_secret(rotation, work), biz.app)
        except (TokenInvalid, InvalidRequest, PermissionMissing) as exc:
            reason = exc.message

            def record() -> None:
                self.ctx.store.update_rotation(rotation.id, self.ctx.now(), kind="rotate", error=reason)
                self.ctx.audit("refresh.failed", rotation.label, rotation=rotation.id, error=reason)
            self.group.run(record)
            self.ctx.notifier.notify(f"tokenvault: refresh of {rotation.label} failed",
                                     f"Meta refused to refresh {rotation.label}: {reason} tokenvault is rotating it "
                                     "through an eligible admin system user instead.")
            return None
        return MintResult(refreshed.token, old.system_user_id, biz.app)

    @contextmanager
    def _kept(self, minted: MintResult, ref: SecretRef, label: str) -> Iterator[None]:
        """Storing a token Meta just minted: if that fails, the token is revoked at Meta (never left valid
        and unknown) and whatever part of it was stored is destroyed (never resumed with a dead token)."""
        try:
            with self.minter.keep_or_revoke(minted, label):
                yield
        except BaseException:
            self.ctx.discard(ref)
            raise

    def _step_stored(self, rotation: RotationRecord, work: _Work) -> _Next:

        assert rotation.to_version is not None
        to_version = rotation.to_version
        biz = self._business(work.record.business_name)
        info = self.ctx.graph.debug_token(self._new_secret(rotation, work), biz.app)
        if not info.is_valid or (info.app_id and info.app_id != biz.record.app_id):
            self.ctx.store.update_version(rotation.token_id, to_version, status=TokenStatus.REVOKED,
                                        debug_summary=debug_summary(info))
            self.ctx.store.update_rotation(rotation.id, self.ctx.now(), state="failed",
                                         error="new token did not verify")
            raise TokenInvalid(f"The newly minted token for {rotation.label} did not verify with debug_token "
                               f"({info.error_message or 'wrong app'}); the current token was kept.")
        fields: dict[str, Any] = {"verified_at": self.ctx.now(), "debug_summary": debug_summary(info),
                                  "expires_at": info.expires_at,
                                  "data_access_expires_at": info.data_access_expires_at}
        if info.scopes:
            fields["scopes"] = list(info.scopes)
        if info.waba_ids:
            fields["waba_ids"] = list(info.waba_ids)

        def write() -> None:
            self.ctx.store.update_version(rotation.token_id, to_version, **fields)
        # verified -> promoted calls nobody: one commit for both (compromised: promoted is "done", kept apart)
        return _Next("verified", write=write, join_next=not rotation.compromised)

    def _step_verified(self, rotation: RotationRecord, work: _Work) -> _Next:
        assert rotation.to_version is not None
        to_version = rotation.to_version
        old_status = TokenStatus.COMPROMISED if rotation.compromised else TokenStatus.RETIRED

        def write() -> None:  # an invalidated old version keeps its status (promote changes an active one only)
            self.ctx.store.promote(rotation.token_id, to_version, rotation.from_version, old_status)
        # refresh: the old token works until its own expiry; reissue: it is dead already. Nothing to revoke, so
        # nothing waits for this commit: written behind (a crash before it is durable resumes from "stored").
        renewal = rotation.kind != "rotate" and not rotation.compromised
        return _Next("done" if rotation.compromised or renewal else "promoted", write=write, behind=renewal)

    def _step_promoted(self, rotation: RotationRecord, work: _Work) -> _Next:
        old = self._old_version(rotation, work)
        if old.revoked_at is not None:
            return _Next("old_revoked", behind=True)
        biz = self._business(work.record.business_name)
        # Meta's sequence: the new token is the caller that revokes the old one.
        self.ctx.revoke_at_meta(biz.record, self._old_secret(rotation, work), caller=self._new_secret(rotation, work),
                               app=biz.app, admin=biz.admin)
        revoked_at = self.ctx.now()

        def write() -> None:
            self.ctx.store.update_version(rotation.token_id, rotation.from_version, status=TokenStatus.REVOKED,
                                        revoked_at=revoked_at)
        return _Next("old_revoked", write=write, behind=True)

    def _step_old_revoked(self, rotation: RotationRecord, work: _Work) -> _Next:
        return _Next("done", behind=True)

    def _secrets_in_store(self) -> bool:
        """Whether the secret backend writes to this metadata store (the local backend) rather than over a
        network (Vault): only then can a secret join a step's transaction."""
        return getattr(self.ctx.secrets, "store", None) is self.ctx.store

    def _defer(self, rotation: RotationRecord, record: TokenRecord, exc: Deferred) -> Deferred:
        now = self.ctx.now()
        opens_at = exc.opens_at or now + timedelta(days=1)
        reminder_id = self.ctx.store.add_reminder(
            rotation.label, "rotate", record.business_name, None,
            {"rotation_id": rotation.id, "compromised": rotation.compromised}, opens_at, exc.message, now)
        self.ctx.store.update_rotation(rotation.id, now, state="deferred", error=exc.message)
        self.ctx.audit("rotation.deferred", rotation.label, rotation=rotation.id, opens_at=opens_at.isoformat(),
                     reminder=reminder_id)
        gap = (" The leaked token is already revoked: there is NO working token for "
               f"{rotation.label} until then." if rotation.compromised else
               f" The token is dead at Meta: there is NO working token for {rotation.label} until then."
               if rotation.kind == "reissue" else " The current token stays active meanwhile.")
        title = f"tokenvault: {'reissue' if rotation.kind == 'reissue' else 'rotation'} of {rotation.label} deferred"
        expires = record.expires_at
        if expires is not None and rotation.kind != "reissue" and not rotation.compromised and expires <= opens_at:
            title = f"tokenvault: {rotation.label} expires before it can be renewed"
            gap += (f" It expires {expires:%Y-%m-%d %H:%M} UTC, before then: generate a token by hand in Business "
                    f"Settings and `tokenvault token import` it, or it stops working.")
        self.ctx.notifier.notify(title, f"{exc.message}{gap} tokenvault run-due finishes it when the window opens.")
        return Deferred(f"Rotation of {rotation.label} deferred until {opens_at:%Y-%m-%d %H:%M} UTC: "
                        f"{exc.message}{gap}", opens_at=opens_at, reminder_id=reminder_id,
                        hint=f"Reminder #{reminder_id} recorded; run `tokenvault run-due` from cron/systemd and it "
                             "completes the rotation once an admin system user is eligible.")


def _resource(token_id: int) -> str:
    return f"rotate:{token_id}"


def _chain(commits: list[Callable[[], None]]) -> Callable[[], None]:
    if len(commits) == 1:
        return commits[0]

    def chained() -> None:
        for commit in commits:
            commit()
    return chained


__all__ = ["KINDS", "STEPS", "RotationOutcome", "Rotator"]
