"""``doctor``: what is configured, what works, and how to fix what doesn't."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import VaultError
from ..types import TokenStatus

if TYPE_CHECKING:
    from ..context import VaultContext


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def doctor(ctx: VaultContext) -> list[DoctorCheck]:
    """What is configured, what works, and how to fix what doesn't. Never raises for a failed check."""
    checks: list[DoctorCheck] = []
    try:
        version = ctx.store.schema_version()
        checks.append(DoctorCheck("database", True, f"{ctx.store.display_url} (schema v{version})"))
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
        count = ctx.store.verify_audit(head_key=ctx.audit_head_key())
        checks.append(DoctorCheck("audit trail", True, f"{count} events, chain intact"))
    except VaultError as exc:
        checks.append(DoctorCheck("audit trail", False, exc.message, exc.hint))
    try:
        tokens = ctx.store.list_tokens()
        bad = [t.label for t in tokens if t.status is not TokenStatus.ACTIVE]
        detail = f"{len(tokens)} tokens" + (f"; not active: {', '.join(bad)}" if bad else "")
        checks.append(DoctorCheck("tokens", not bad, detail,
                                  "Rotate them with `tokenvault token rotate`" if bad else ""))
    except VaultError as exc:
        checks.append(DoctorCheck("tokens", False, exc.message, exc.hint))
    return checks

__all__ = ["DoctorCheck", "doctor"]
