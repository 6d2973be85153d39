"""Detect death: ask Meta's debug_token about stored tokens and record the answer.

Tokens die outside tokenvault: Meta invalidates a token found in public code (GitHub secret scanning), an admin
revokes one in Business Settings, a system user loses its role. :func:`verify_many` checks tokens (all the
active ones for ``token verify --all``; those not checked within ``verify_interval`` for ``run-due``) with the
app token, ``concurrency`` at a time (the Graph client keeps the app's rate limit); each answer is recorded on
the token's current version (``verified_at``, what Meta said, expiry, ``data_access_expires_at``). A token Meta
says is not valid becomes ``invalidated``: audited, notified, and reissued by the next ``run-due`` unless its
policy is ``on_invalid = alert``.

The writes of concurrent checks share their commits and are written behind (:class:`~.rotate.GroupCommit`):
no check waits for a commit; all are durable before :func:`verify_many` returns.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import VaultError
from ..types import Secret, SecretKind, SecretRef, TokenRecord, TokenStatus
from .checks import check_fields, record_invalidated, say
from .rotate import GroupCommit

if TYPE_CHECKING:
    from ..context import VaultContext
    from ..ports.graph import AppCredentials


@dataclass(frozen=True)
class Check:
    """One token's check. ``valid`` None: Meta could not be asked (``error`` says why; nothing recorded)."""

    label: str
    version: int
    valid: bool | None
    status: str
    error: str | None = None
    expires_at: datetime | None = None
    data_access_expires_at: datetime | None = None
    newly_invalidated: bool = False

    def as_json(self) -> dict[str, object]:
        return {"label": self.label, "version": self.version, "valid": self.valid, "status": self.status,
                "error": self.error,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "data_access_expires_at": self.data_access_expires_at.isoformat()
                if self.data_access_expires_at else None}


def verify_many(ctx: VaultContext, records: Sequence[TokenRecord], *, concurrency: int = 8,
                progress: Callable[[Check], None] | None = None, notify: bool = True,
                group: GroupCommit | None = None) -> list[Check]:
    """debug_token each of ``records`` (their current versions), ``concurrency`` at a time; one :class:`Check`
    per record, in order. Records every answer; marks an invalid active token ``invalidated`` (audited, and
    notified unless ``notify`` is false). A failed call (Meta down, rate limit past the retries) is reported in
    its Check and changes nothing. Never raises for one token's failure. ``group``: the group commit to share
    (with rotations running at the same time)."""
    from concurrent.futures import ThreadPoolExecutor

    group = group or GroupCommit(ctx.store)
    apps: dict[str, AppCredentials] = {}
    apps_lock = threading.Lock()

    def app_of(business: str) -> AppCredentials:
        with apps_lock:
            app = apps.get(business)
        if app is None:
            app = ctx.app_credentials(ctx.store.get_business(business))
            with apps_lock:
                apps.setdefault(business, app)
        return app

    def one(record: TokenRecord, secret: Secret | VaultError) -> Check:
        try:
            if isinstance(secret, VaultError):
                raise secret
            info = ctx.graph.debug_token(secret, app_of(record.business_name))
            now = ctx.now()
            fields = check_fields(info, now, record.status)
            dies = fields.get("status") is TokenStatus.INVALIDATED

            def write() -> None:
                ctx.store.update_version(record.id, record.version, **fields)
                ctx.audit("token.verify", record.label, version=record.version, valid=info.is_valid)
                if dies:
                    record_invalidated(ctx, record, info)
            group.run_behind(write, tag=record.label)  # nobody waits for it: written behind, drained below
            status = TokenStatus.INVALIDATED.value if dies else record.status.value
            check = Check(record.label, record.version, info.is_valid, status, info.error_message,
                          info.expires_at if info.is_valid else record.expires_at,
                          info.data_access_expires_at if info.is_valid else record.data_access_expires_at,
                          newly_invalidated=dies)
        except VaultError as exc:
            check = Check(record.label, record.version, None, record.status.value, exc.message, record.expires_at,
                          record.data_access_expires_at)
        if progress is not None:
            progress(check)
        return check

    def read(chunk: Sequence[TokenRecord]) -> list[Secret | VaultError]:
        """The tokens of ``chunk``, read in one transaction (one lock on SQLite, not one per token)."""
        out: list[Secret | VaultError] = []
        with ctx.store.transaction():
            for record in chunk:
                try:
                    out.append(ctx.secrets.get(SecretRef(SecretKind.TOKEN, record.id, record.version, record.label)))
                except VaultError as exc:
                    out.append(exc)
        return out

    workers = max(1, concurrency)
    size = max(16, 4 * workers)
    ahead = threading.BoundedSemaphore(8 * size)  # tokens read but not yet checked: memory stays bounded

    def run(record: TokenRecord, secret: Secret | VaultError) -> Check:
        try:
            return one(record, secret)
        finally:
            ahead.release()

    futures = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="verify") as pool:
        for at in range(0, len(records), size):
            chunk = records[at:at + size]
            for _ in chunk:
                ahead.acquire()
            futures += [pool.submit(run, r, secret) for r, secret in zip(chunk, read(chunk), strict=True)]
        checks = [f.result() for f in futures]
    unrecorded = {tag: error for tag, error in group.drain()}
    if unrecorded:  # Meta answered, but the answer could not be recorded: as if not checked
        checks = [replace(c, valid=None, newly_invalidated=False, error=f"the answer was not recorded: "
                          f"{getattr(unrecorded[c.label], 'message', unrecorded[c.label])}")
                  if c.label in unrecorded else c for c in checks]
    if notify:
        dead = [c for c in checks if c.newly_invalidated]
        say(ctx, "invalidated", [c.label for c in dead],
            lambda label: f"Meta says {label} is no longer valid "
                          f"({next(c.error for c in dead if c.label == label) or 'no reason given'}). "
                          "tokenvault run-due reissues it through an eligible admin system user unless its policy is "
                          "on_invalid=alert; until then there is no working token for it.")
    return checks


__all__ = ["Check", "verify_many"]
