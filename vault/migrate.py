"""Moving every secret from one secret backend to the other (``tokenvault backend migrate``).

What moves: every version of every token (history included, not only the current version) and
each business's app secret and admin token; the list comes from the metadata store, never from
a backend's listing, so nothing that the store does not know about is touched.

The order of work is what makes it crash-safe:

1. **copy and verify** each secret: read it from the source, put it to the target, read it back
   from the target and compare (constant time). A target that already holds the same value
   (an earlier, interrupted run) is skipped; one that holds another value stops everything with
   :class:`~meta_tokenvault.errors.IntegrityError`. Only the target is written in this phase.
2. **switch**, only once every secret verified: each token version's ``backend`` field, then the
   store's ``backend`` setting (the commit point: :mod:`meta_tokenvault.wiring` reads the configured backend
   from it). Until that last write the source is untouched and still the configured backend; an
   interrupted run is resumed by running it again.
3. **purge** (optional), only after the switch: each source copy is destroyed once the target has
   been re-read and found identical, so a purge that is interrupted is finished by running again.

Secret values never reach the audit trail, the progress callback, the report or an exception:
those carry labels, kinds, versions and counts only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from .context import test_crash
from .errors import AlreadyExists, Conflict, IntegrityError, NotFound, UsageError
from .types import Secret, SecretKind, SecretRef

if TYPE_CHECKING:
    from .ports.secrets import SecretBackend
    from .service import TokenManager

BACKEND_SETTING = "backend"
LEASE = "backend:migrate"
LEASE_TTL = timedelta(hours=1)
# A writer that ran while we copied (run-due on another host) may add versions; we re-read the
# store this many times before giving up instead of switching with a secret left behind.
_MAX_CATCH_UP = 5

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``; phase is ``"copy"`` or ``"purge"``. Never given a value."""


@dataclass(frozen=True, slots=True)
class MigrationItem:
    """One secret to move: where it belongs, the provenance the target may show, and its token id."""

    ref: SecretRef
    metadata: dict[str, str]
    token_id: int | None = None  # None for business secrets (they have no version row)
    recorded_backend: str | None = None

    @property
    def describe(self) -> str:
        """A label for messages: ``token prod v2`` / ``app_secret of acme`` (never a value)."""
        if self.ref.kind is SecretKind.TOKEN:
            return f"token {self.ref.name} v{self.ref.version}"
        return f"{self.ref.kind.value} of business {self.ref.name}"


@dataclass
class MigrationReport:
    """What a run did. ``switched`` is True once the store records ``target`` as the backend."""

    source: str
    target: str
    total: int = 0
    copied: int = 0
    already: int = 0
    missing: list[str] = field(default_factory=list)
    relabelled: int = 0
    switched: bool = False
    was_current: bool = False
    purged: int = 0

    def as_json(self) -> dict[str, object]:
        return {"source": self.source, "target": self.target, "total": self.total, "copied": self.copied,
                "already_in_target": self.already, "missing_in_source": list(self.missing),
                "versions_relabelled": self.relabelled, "switched": self.switched,
                "already_on_target": self.was_current, "purged": self.purged}


def recorded_backend(manager: TokenManager) -> str | None:
    """The backend the store says holds its secrets (``None`` for stores from before it was recorded)."""
    return manager.store.get_setting(BACKEND_SETTING) or None


class BackendMigrator:
    """Moves every secret of ``manager``'s store from ``source`` to ``target`` (see the module doc).

    ``source`` must be the backend the store currently uses (normally ``manager.secrets``);
    ``target`` the other one. ``progress(phase, done, total)`` is called after each secret.
    """

    def __init__(self, manager: TokenManager, source: SecretBackend, target: SecretBackend, *,
                 progress: Progress | None = None) -> None:
        if source.name == target.name:
            raise UsageError(f"Source and target are both the {source.name!r} backend.",
                             hint="Name the other backend: `tokenvault backend migrate --to local|vault`.")
        self.manager = manager
        self.store = manager.store
        self.source = source
        self.target = target
        self.progress = progress

    # ------------------------------------------------------------------ what to move
    def items(self) -> list[MigrationItem]:
        """Every secret the store knows about: business secrets first, then token versions oldest first.

        Oldest first matters for Vault, whose KV version N can only be written after N-1.
        """
        found: list[MigrationItem] = []
        for biz in self.store.list_businesses():
            meta = {"business": biz.name, "business_id": biz.business_id, "app_id": biz.app_id}
            for kind in (SecretKind.APP_SECRET, SecretKind.ADMIN_TOKEN):
                for number in range(1, self.manager.business_secret_version(biz, kind) + 1):
                    ref = SecretRef(kind, biz.id, number, biz.name)
                    if number == 1 or self.source.exists(ref):  # a refused replacement leaves a gap
                        found.append(MigrationItem(ref, meta))
        businesses = {b.name: b for b in self.store.list_businesses()}
        for token in self.store.list_tokens():
            record = self.store.get_token(token.label, with_history=True)
            owner = businesses.get(record.business_name)
            for version in sorted(record.history, key=lambda v: v.version):
                # KV refuses empty custom_metadata values (a token without WABA ids): leave those out
                meta = {key: value for key, value in {
                    "business": record.business_name,
                    "business_id": owner.business_id if owner else record.provenance.business_id,
                    "system_user_id": version.system_user_id, "app_id": record.provenance.app_id,
                    "scopes": ",".join(version.scopes), "waba_ids": ",".join(version.waba_ids),
                    "fingerprint": version.fingerprint,
                }.items() if value}
                found.append(MigrationItem(SecretRef(SecretKind.TOKEN, record.id, version.version, record.label),
                                           meta, token_id=record.id, recorded_backend=version.backend))
        return found

    # ------------------------------------------------------------------ the run
    def run(self, *, purge_source: bool = False) -> MigrationReport:
        """Copy, verify, switch, then (optionally) purge. Safe to interrupt and to run again.

        When the store already records ``target``, nothing is copied (the source may be stale):
        stale version labels are repaired, and with ``purge_source`` the source copies that the
        target holds identically are destroyed.

        Raises :class:`IntegrityError` when the target holds a different value (nothing switched),
        :class:`~meta_tokenvault.errors.BackendUnavailable` when either backend fails (nothing switched if
        it happens before the switch), :class:`Conflict` when another migration is running.
        """
        owner = self._lock()
        try:
            return self._run(purge_source)
        finally:
            self.store.release_lease(LEASE, owner)

    def _lock(self) -> str:
        from .leases import lease_owner, take_lease

        owner = lease_owner()
        taken, holder = take_lease(self.store, LEASE, owner, self.manager.now(), LEASE_TTL)
        if taken:
            return owner
        raise Conflict(f"Another backend migration is running ({holder[0] if holder else 'unknown'}).",
                       hint="Wait for it to finish; one abandoned on another host can be resumed after its lease "
                            "expires.")

    def _run(self, purge_source: bool) -> MigrationReport:
        report = MigrationReport(source=self.source.name, target=self.target.name)
        current = recorded_backend(self.manager)
        if current == self.target.name:
            report.was_current = True
            items = self.items()
            report.total = len(items)
        else:
            items = self._copy_all(report)
            report.relabelled = self._relabel(items)
            # audited before the switch: a crash right after the switch must not leave a migration that
            # never reached the audit trail (one between the two is recorded twice, which is the safe side)
            self.manager.audit("backend.migrate", "backend", source=self.source.name, target=self.target.name,
                               total=report.total, copied=report.copied, already=report.already,
                               missing=len(report.missing))
            # the commit point: from here on wiring configures the target
            self.store.set_setting(BACKEND_SETTING, self.target.name)
            test_crash("migrate.switched")
            report.switched = True
        if report.was_current:
            report.relabelled = self._relabel(items)
        if purge_source:
            report.purged = self._purge(items)
            self.manager.audit("backend.purge", "backend", source=self.source.name, target=self.target.name,
                               purged=report.purged)
        return report

    def _copy_all(self, report: MigrationReport) -> list[MigrationItem]:
        done: set[tuple[str, int, int]] = set()
        items: list[MigrationItem] = []
        for _ in range(_MAX_CATCH_UP):
            items = self.items()
            pending = [i for i in items if _key(i.ref) not in done]
            if not pending:
                break
            report.total = len(items)
            for item in pending:
                self._copy(item, report)
                done.add(_key(item.ref))
                test_crash(f"migrate.copied:{len(done)}")
                self._tick("copy", len(done), report.total)
        else:
            raise Conflict("Secrets kept being added while migrating; nothing was switched.",
                           hint="Stop other tokenvault processes (run-due timers, other hosts), then run it again.")
        return items

    def _copy(self, item: MigrationItem, report: MigrationReport) -> None:
        """Put one secret to the target and prove the target returns exactly it."""
        try:
            value = self.source.get(item.ref)
        except NotFound:
            # destroyed in the source (e.g. after revocation): nothing to lose, unless only the target has it
            if self.target.exists(item.ref):
                report.already += 1
            else:
                report.missing.append(item.describe)
            return
        try:
            self.target.put(item.ref, value, item.metadata)
            report.copied += 1
        except AlreadyExists:
            report.already += 1  # an earlier run (or another writer) stored it: verified just below
        self._verify(item, value, "copied")

    def _verify(self, item: MigrationItem, value: Secret, what: str) -> None:
        try:
            stored = self.target.get(item.ref)
        except NotFound:
            raise IntegrityError(
                f"The {self.target.name} backend does not return {item.describe} after it was {what}; "
                "nothing was switched.",
                hint=f"The {self.target.name} backend dropped or refused it; check its state and run again.",
            ) from None
        if stored != value:  # Secret.__eq__ compares in constant time
            raise IntegrityError(
                f"The {self.target.name} backend holds a different value for {item.describe}; "
                "nothing was switched and nothing was overwritten.",
                hint=f"Another tool wrote to the {self.target.name} backend; inspect it, remove the stray "
                     "value (or use another Vault prefix), then run the migration again.",
            )

    def _relabel(self, items: list[MigrationItem]) -> int:
        changed = 0
        for item in items:
            if item.token_id is not None and item.recorded_backend != self.target.name:
                self.store.update_version(item.token_id, item.ref.version, backend=self.target.name)
                changed += 1
                test_crash(f"migrate.relabelled:{changed}")
        return changed

    def _purge(self, items: list[MigrationItem]) -> int:
        """Destroy each source copy that the target holds identically; returns how many were destroyed."""
        purged = 0
        for n, item in enumerate(items, 1):
            if self.source.exists(item.ref):
                try:
                    value = self.source.get(item.ref)
                except NotFound:
                    value = None
                if value is not None:
                    self._verify(item, value, "switched to")
                    self.source.destroy(item.ref)
                    purged += 1
                    test_crash(f"migrate.purged:{purged}")
            self._tick("purge", n, len(items))
        return purged

    def _tick(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)


def _key(ref: SecretRef) -> tuple[str, int, int]:
    return ref.kind.value, ref.owner_id, ref.version


def backend_counts(manager: TokenManager) -> dict[str, int]:
    """How many token versions each backend holds, according to the store's version rows."""
    counts: dict[str, int] = {}
    for token in manager.store.list_tokens():
        for version in manager.store.get_token(token.label, with_history=True).history:
            counts[version.backend] = counts.get(version.backend, 0) + 1
    return counts


__all__ = ["BACKEND_SETTING", "BackendMigrator", "MigrationItem", "MigrationReport", "backend_counts",
           "recorded_backend"]
