"""The audit trail: verify the hash chain and its keyed head, and key the head of an older database once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..audit import head_key

if TYPE_CHECKING:
    from ..context import VaultContext


def verify(ctx: VaultContext) -> int:
    """Verify the hash chain and the head's MAC; returns the number of events. Raises AuditChainBroken (exit 4)."""
    return ctx.store.verify_audit(head_key=ctx.audit_head_key())


def key_head(ctx: VaultContext) -> int:
    """Key an unkeyed audit head (a database last written by a tokenvault without keyed heads) once the whole
    chain verifies; a keyed head is checked as usual. Returns the number of events.
    Raises AuditChainBroken (exit 4), NotFound before init (no fingerprint key)."""
    key = head_key(ctx.fingerprint_key())
    count = ctx.store.verify_audit()  # every link, and the head's seq and hash (its MAC next)
    ctx.store.key_audit_head(key, count)
    ctx.audit("audit.key_head", "audit", events=count)
    return count


__all__ = ["key_head", "verify"]
