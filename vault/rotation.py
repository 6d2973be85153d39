"""Revoke-and-reissue rotation as a journaled, resumable state machine.

Normal (zero downtime; the active token always works)::

    started → minting → stored → verified → promoted → old_revoked → done

Compromised (the leaked token dies first)::

    started → compromised_revoked → minting → stored → verified → promoted → done

Each step is recorded in ``tv_rotation`` *before* the next is taken and every step is safe to
repeat, so a process killed anywhere is finished by ``run-due`` or the next ``token rotate``.
A token minted at Meta is written to the secret backend (as a *pending* version) before any other
call is made. A database lease on ``rotate:<token id>`` (not a file lock: it holds across hosts that
share PostgreSQL) makes sure two rotations of one token never both mint; the loser gets
:class:`~vault.errors.RotationInProgress` (exit 8). When minting is blocked by Meta's seven-day rule the
rotation is parked as *deferred* with a reminder dated when the window opens.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import Deferred, RotationInProgress, TokenInvalid, VaultError
from .minting import Minter
from .types import SecretKind, SecretRef, TokenRecord, TokenSource, TokenStatus

if TYPE_CHECKING:
    from .adapters.store_sql import RotationRecord
    from .service import TokenManager

LEASE_TTL = timedelta(minutes=10)
STEPS = ("started", "compromised_revoked", "minting", "stored", "verified", "promoted", "old_revoked", "done")
_HOST = socket.gethostname()

# A hook for crash tests: TOKENVAULT_TEST_CRASH_AFTER=<step> makes the process SIGKILL itself right
# after that step is journaled. Only honoured together with TOKENVAULT_TEST_MODE=1.
_CRASH_ENV = "TOKENVAULT_TEST_CRASH_AFTER"


def lease_owner() -> str:
    return f"{_HOST}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


def lease_is_stale(owner: str) -> bool:
    """A lease held by a dead process on this host can be taken over at once (no need to wait for expiry)."""
    try:
        host, pid, _ = owner.split("|")
    except ValueError:
        return False
    if host != _HOST:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


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

    def as_json(self) -> dict[str, object]:
        return {"label": self.label, "state": self.state, "from_version": self.from_version,
                "to_version": self.to_version, "compromised": self.compromised, "message": self.message,
                "opens_at": self.opens_at, "reminder_id": self.reminder_id}


class Rotator:
    def __init__(self, manager: TokenManager) -> None:
        self.m = manager
        self.minter = Minter(manager)

    # ------------------------------------------------------------------ entry points
    def rotate(self, label: str, *, compromised: bool = False, reason: str = "",
               expected_version: int | None = None) -> RotationOutcome:
        """Rotate ``label`` (or resume its open rotation). Raises Deferred (exit 7) / RotationInProgress (8).

        ``expected_version`` (policy rotation): if another process rotated the token since the caller
        looked, nothing is done (the outcome's state is ``skipped``), so two schedulers never rotate twice.
        """
        record = self.m.store.get_token(label)
        owner = self._lock(record)
        try:
            record = self.m.store.get_token(label)  # re-read under the lock
            open_rotation = self.m.store.open_rotation(record.id)
            if expected_version is not None and open_rotation is None and record.version != expected_version:
                return RotationOutcome(label, "skipped", expected_version, record.version, compromised,
                                       "already rotated by another process")
            if open_rotation is None:
                rotation_id = self.m.store.start_rotation(record.id, label, record.version, compromised, reason,
                                                          self.m.now())
                self.m.audit("rotation.start", label, rotation=rotation_id, from_version=record.version,
                             compromised=compromised, reason=reason)
            else:
                rotation_id = open_rotation.id
                if compromised and not open_rotation.compromised and open_rotation.step in ("started", "minting") \
                        and not self._new_version_stored(open_rotation):
                    self.m.store.update_rotation(rotation_id, self.m.now(), compromised=True, step="started")
                self.m.audit("rotation.resume", label, rotation=rotation_id, step=open_rotation.step)
            return self._run(rotation_id)
        finally:
            self.m.store.release_lease(_resource(record.id), owner)

    def resume(self, rotation_id: int) -> RotationOutcome:
        """Continue an open rotation (crashed or deferred) from its journaled step."""
        rotation = self.m.store.get_rotation(rotation_id)
        record = self.m.store.get_token(rotation.label)
        owner = self._lock(record)
        try:
            self.m.audit("rotation.resume", rotation.label, rotation=rotation_id, step=rotation.step)
            return self._run(rotation_id)
        finally:
            self.m.store.release_lease(_resource(record.id), owner)

    def rotate_many(self, labels: Sequence[str], *, compromised: bool = False, reason: str = "",
                    concurrency: int = 4,
                    progress: Callable[[RotationOutcome], None] | None = None) -> list[RotationOutcome]:
        """Rotate several tokens with bounded concurrency; one outcome per label (errors do not stop others)."""
        from concurrent.futures import ThreadPoolExecutor

        def one(label: str) -> RotationOutcome:
            try:
                outcome = self.rotate(label, compromised=compromised, reason=reason)
            except Deferred as exc:
                outcome = RotationOutcome(label, "deferred", 0, None, compromised, exc.message,
                                          exc.opens_at.isoformat() if exc.opens_at else None, exc.reminder_id)
            except VaultError as exc:
                outcome = RotationOutcome(label, "failed", 0, None, compromised, exc.message)
            if progress is not None:
                progress(outcome)
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            return list(pool.map(one, labels))

    # ------------------------------------------------------------------ the machine
    def _lock(self, record: TokenRecord) -> str:
        owner = lease_owner()
        resource = _resource(record.id)
        if self.m.store.acquire_lease(resource, owner, self.m.now(), LEASE_TTL):
            return owner
        holder = self.m.store.lease_holder(resource)
        if holder is not None and lease_is_stale(holder[0]):
            self.m.store.release_lease(resource, holder[0])
            if self.m.store.acquire_lease(resource, owner, self.m.now(), LEASE_TTL):
                return owner
        until = f" (lease until {holder[1]:%H:%M:%S} UTC)" if holder else ""
        raise RotationInProgress(f"Another rotation of {record.label} is under way{until}; nothing was minted.",
                                 hint="Wait for it to finish; if it crashed, `tokenvault run-due` resumes it "
                                      "once its lease expires.")

    def _run(self, rotation_id: int) -> RotationOutcome:
        while True:
            rotation = self.m.store.get_rotation(rotation_id)
            if rotation.state == "done":
                return self._outcome(rotation, "done")
            step = rotation.step
            handler = getattr(self, f"_step_{step}")
            next_step, changes = handler(rotation)
            self.m.store.update_rotation(rotation_id, self.m.now(), step=next_step,
                                         state="done" if next_step == "done" else "running", **changes)
            self.m.audit(f"rotation.{next_step}", rotation.label, rotation=rotation_id,
                         to_version=changes.get("to_version", rotation.to_version))
            _maybe_crash(next_step)

    def _outcome(self, rotation: RotationRecord, state: str) -> RotationOutcome:
        return RotationOutcome(rotation.label, state, rotation.from_version, rotation.to_version,
                               rotation.compromised)

    def _refs(self, rotation: RotationRecord) -> tuple[SecretRef, SecretRef | None]:
        old = SecretRef(SecretKind.TOKEN, rotation.token_id, rotation.from_version, rotation.label)
        new = (SecretRef(SecretKind.TOKEN, rotation.token_id, rotation.to_version, rotation.label)
               if rotation.to_version is not None else None)
        return old, new

    def _new_version_stored(self, rotation: RotationRecord) -> bool:
        _, new = self._refs(rotation)
        return new is not None and self.m.secrets.exists(new)

    def _step_started(self, rotation: RotationRecord) -> tuple[str, dict[str, Any]]:
        if not rotation.compromised:
            return "minting", {"to_version": self.m.store.max_version(rotation.token_id) + 1}
        old_ref, _ = self._refs(rotation)
        record = self.m.store.get_token(rotation.label)
        biz = self.m.store.get_business(record.business_name)
        version = self.m.store.version_record(rotation.token_id, rotation.from_version)
        if version.revoked_at is None:
            old_secret = self.m.secrets.get(old_ref)
            # The leaked token may be the only token we hold: revoke with the business admin token as caller.
            self.m._revoke_at_meta(biz, old_secret, caller=self.m.admin_token(biz))
        self.m.store.update_version(rotation.token_id, rotation.from_version, status=TokenStatus.COMPROMISED,
                                    revoked_at=version.revoked_at or self.m.now())
        return "compromised_revoked", {}

    def _step_compromised_revoked(self, rotation: RotationRecord) -> tuple[str, dict[str, Any]]:
        return "minting", {"to_version": self.m.store.max_version(rotation.token_id) + 1}

    def _step_minting(self, rotation: RotationRecord) -> tuple[str, dict[str, Any]]:
        _, new_ref = self._refs(rotation)
        assert new_ref is not None and rotation.to_version is not None
        record = self.m.store.get_token(rotation.label)
        old = self.m.store.version_record(rotation.token_id, rotation.from_version)
        if self.m.secrets.exists(new_ref):  # minted and stored before a crash: finish recording it
            secret = self.m.secrets.get(new_ref)
            system_user_id = old.system_user_id
        else:
            biz = self.m.store.get_business(record.business_name)
            try:
                minted = self.minter.mint(biz, tuple(old.scopes), expiring=old.expires_at is not None)
            except Deferred as exc:
                raise self._defer(rotation, record, exc) from None
            secret, system_user_id = minted.secret, minted.system_user_id
            self.m.secrets.put(new_ref, secret, {"business": biz.name, "system_user_id": system_user_id,
                                                  "app_id": biz.app_id, "scopes": ",".join(old.scopes),
                                                  "fingerprint": self.m.fingerprint(secret)})
        if self.m.store.max_version(rotation.token_id) < rotation.to_version:
            self.m.store.add_version(rotation.token_id, rotation.to_version, {
                "status": TokenStatus.PENDING, "source": TokenSource.ROTATED, "system_user_id": system_user_id,
                "app_id": record.provenance.app_id, "scopes": list(old.scopes), "waba_ids": list(old.waba_ids),
                "fingerprint": self.m.fingerprint(secret), "last4": secret.last4, "created_at": self.m.now(),
                "backend": self.m.secrets.name}, make_current=False)
        return "stored", {}

    def _step_stored(self, rotation: RotationRecord) -> tuple[str, dict[str, Any]]:
        from .service import _debug_summary

        _, new_ref = self._refs(rotation)
        assert new_ref is not None and rotation.to_version is not None
        record = self.m.store.get_token(rotation.label)
        biz = self.m.store.get_business(record.business_name)
        info = self.m.graph.debug_token(self.m.secrets.get(new_ref), self.m.app_credentials(biz))
        if not info.is_valid or (info.app_id and info.app_id != biz.app_id):
            self.m.store.update_version(rotation.token_id, rotation.to_version, status=TokenStatus.REVOKED,
                                        debug_summary=_debug_summary(info))
            self.m.store.update_rotation(rotation.id, self.m.now(), state="failed",
                                         error="new token did not verify")
            raise TokenInvalid(f"The newly minted token for {rotation.label} did not verify with debug_token "
                               f"({info.error_message or 'wrong app'}); the current token was kept.")
        fields: dict[str, Any] = {"verified_at": self.m.now(), "debug_summary": _debug_summary(info),
                                  "expires_at": info.expires_at}
        if info.scopes:
            fields["scopes"] = list(info.scopes)
        if info.waba_ids:
            fields["waba_ids"] = list(info.waba_ids)
        self.m.store.update_version(rotation.token_id, rotation.to_version, **fields)
        return "verified", {}

    def _step_verified(self, rotation: RotationRecord) -> tuple[str, dict[str, Any]]:
        assert rotation.to_version is not None
        old_status = TokenStatus.COMPROMISED if rotation.compromised else TokenStatus.RETIRED
        self.m.store.promote(rotation.token_id, rotation.to_version, rotation.from_version, old_status)
        return ("done" if rotation.compromised else "promoted"), {}

    def _step_promoted(self, rotation: RotationRecord) -> tuple[str, dict[str, Any]]:
        old_ref, new_ref = self._refs(rotation)
        assert new_ref is not None
        old = self.m.store.version_record(rotation.token_id, rotation.from_version)
        if old.revoked_at is None:
            record = self.m.store.get_token(rotation.label)
            biz = self.m.store.get_business(record.business_name)
            # Meta's sequence: the new token is the caller that revokes the old one.
            self.m._revoke_at_meta(biz, self.m.secrets.get(old_ref), caller=self.m.secrets.get(new_ref))
            self.m.store.update_version(rotation.token_id, rotation.from_version, status=TokenStatus.REVOKED,
                                        revoked_at=self.m.now())
        return "old_revoked", {}

    def _step_old_revoked(self, rotation: RotationRecord) -> tuple[str, dict[str, Any]]:
        return "done", {}

    def _defer(self, rotation: RotationRecord, record: TokenRecord, exc: Deferred) -> Deferred:
        now = self.m.now()
        opens_at = exc.opens_at or now + timedelta(days=1)
        reminder_id = self.m.store.add_reminder(
            rotation.label, "rotate", record.business_name, None,
            {"rotation_id": rotation.id, "compromised": rotation.compromised}, opens_at, exc.message, now)
        self.m.store.update_rotation(rotation.id, now, state="deferred", error=exc.message)
        self.m.audit("rotation.deferred", rotation.label, rotation=rotation.id, opens_at=opens_at.isoformat(),
                     reminder=reminder_id)
        gap = (" The leaked token is already revoked: there is NO working token for "
               f"{rotation.label} until then." if rotation.compromised else
               " The current token stays active meanwhile.")
        self.m.notifier.notify(f"tokenvault: rotation of {rotation.label} deferred",
                               f"{exc.message}{gap} tokenvault run-due finishes it when the window opens.")
        return Deferred(f"Rotation of {rotation.label} deferred until {opens_at:%Y-%m-%d %H:%M} UTC: "
                        f"{exc.message}{gap}", opens_at=opens_at, reminder_id=reminder_id,
                        hint=f"Reminder #{reminder_id} recorded; run `tokenvault run-due` from cron/systemd and it "
                             "completes the rotation once an admin system user is eligible.")


def _resource(token_id: int) -> str:
    return f"rotate:{token_id}"


def _maybe_crash(step: str) -> None:
    if os.environ.get("TOKENVAULT_TEST_MODE") == "1" and os.environ.get(_CRASH_ENV) == step:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["STEPS", "RotationOutcome", "Rotator"]
