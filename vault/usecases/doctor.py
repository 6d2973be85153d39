"""``doctor``: what is configured, what works, and how to fix what doesn't."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import VaultError
from ..policy import countdown, refresh_due
from ..types import TokenStatus
from . import audit_trail

if TYPE_CHECKING:
    from ..context import VaultContext
    from ..types import TokenRecord


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # not ok, but nothing is broken yet (doctor's exit status ignores it)


def doctor(ctx: VaultContext) -> list[DoctorCheck]:
    """What is configured, what works, and how to fix what doesn't. Never raises for a failed check."""
    checks: list[DoctorCheck] = []
    try:
        version = ctx.store.schema_version()
        checks.append(DoctorCheck("database", True, f"{ctx.store.display_url} (schema v{version})"))
        checks += journal_checks(ctx)
    except VaultError as exc:
        checks.append(DoctorCheck("database", False, exc.message, exc.hint))
    avail = ctx.keys.availability()
    checks.append(DoctorCheck(f"key provider ({ctx.keys.name})", avail.ok, avail.reason or "available",
                              "" if avail.ok else "See docs/key-providers.md"))
    try:
        ctx.fingerprint_key()
        checks.append(DoctorCheck("master key", True, f"opens this store (key {ctx.keys.current_key_id()})"))
    except VaultError as exc:
        checks.append(DoctorCheck("master key", False, exc.message, exc.hint))
    try:
        if ctx.store.get_setting("key_rotation_target"):
            checks.append(DoctorCheck("master key rotation", False, "an interrupted `keys rotate` left some "
                                      "secrets under the old key (all of them are readable)",
                                      "Run `tokenvault keys rotate` again to finish it"))
    except VaultError:
        pass  # the database check above already says what is wrong
    backend = ctx.secrets.availability()
    checks.append(DoctorCheck(f"secret backend ({ctx.secrets.name})", backend.ok, backend.reason or "available"))
    try:
        count = audit_trail.verify(ctx)
        checks.append(DoctorCheck("audit trail", True, f"{count} events, chain intact"))
    except VaultError as exc:
        checks.append(DoctorCheck("audit trail", False, exc.message, exc.hint))
    try:
        tokens = ctx.store.list_tokens()
        bad = [t.label for t in tokens if t.status is not TokenStatus.ACTIVE]
        detail = f"{len(tokens)} tokens" + (f"; not active: {', '.join(bad)}" if bad else "")
        checks.append(DoctorCheck("tokens", not bad, detail,
                                  "Rotate them with `tokenvault token rotate`" if bad else ""))
        checks += renewal_checks(ctx, tokens)
    except VaultError as exc:
        checks.append(DoctorCheck("tokens", False, exc.message, exc.hint))
    return checks


def journal_checks(ctx: VaultContext) -> list[DoctorCheck]:
    """SQLite's journal mode: WAL (each commit one sequential write; readers never wait for the writer), or the
    rollback journal SQLite keeps when it could not switch (another process held the database, the folder or
    file is read-only, or the filesystem has no shared memory for WAL's index, as on some network mounts).
    Nothing is wrong in the latter, it is slower: a warning. None for PostgreSQL."""
    mode = ctx.store.journal_mode()
    if mode is None:
        return []
    if mode == "wal":
        return [DoctorCheck("journal mode", True, "wal (see docs/deployment.md for backups)")]
    return [DoctorCheck("journal mode", False, f"{mode}: SQLite could not switch this database to WAL (another "
                        "process held it, it is read-only, or the filesystem lacks shared memory)",
                        "Run `tokenvault doctor` again while no other process has the database open (any "
                        "command that can write it switches it); on a network mount, keep the home on a local "
                        "disk or use PostgreSQL", warning=True)]


def renewal_checks(ctx: VaultContext, tokens: list[TokenRecord]) -> list[DoctorCheck]:
    """Active tokens expiring within the refresh margin (run-due should have refreshed them), and tokens Meta
    was never asked about (debug_token): their expiry and health are unknown."""
    now, margin = ctx.now(), ctx.renewal.refresh_margin
    active = [t for t in tokens if t.status is TokenStatus.ACTIVE]
    expiring = [t for t in active if refresh_due(t.expires_at, now=now, margin=margin)]
    unverified = [t.label for t in active if t.verified_at is None]
    out = [DoctorCheck(
        "expiring tokens", not expiring,
        ", ".join(f"{t.label} expires {countdown(t.expires_at, now=now)}" for t in expiring)
        or f"none within the refresh margin ({margin.days} days)",
        "Run `tokenvault run-due` (it refreshes them); schedule it from cron/systemd" if expiring else "",
        warning=bool(expiring))]
    out.append(DoctorCheck(
        "verified tokens", not unverified,
        f"never checked with Meta: {', '.join(unverified)}" if unverified else "every active token was checked",
        "Run `tokenvault token verify --all` (run-due checks them too)" if unverified else "",
        warning=bool(unverified)))
    return out


__all__ = ["DoctorCheck", "doctor", "journal_checks", "renewal_checks"]
