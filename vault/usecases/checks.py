"""What recording a token check and telling people about it take: shared by ``token verify``
(:mod:`.tokens`), the bulk check (:mod:`.verify`) and renewal (:mod:`.refresh`). Imports no other use case."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from ..context import debug_summary
from ..types import TokenRecord, TokenStatus

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

    from ..context import VaultContext
    from ..ports.graph import TokenDebugInfo

#: notifications one pass sends one per token; above this, one summary
NOTIFY_EACH_UP_TO = 10


def check_fields(info: TokenDebugInfo, now: datetime, status: TokenStatus) -> dict[str, Any]:
    """The version fields that record a debug_token answer (``status``: the version's status now): a valid
    token's expiry, scopes and WABAs are Meta's; an invalid *active* one becomes ``invalidated``."""
    fields: dict[str, Any] = {"verified_at": now, "debug_summary": debug_summary(info)}
    if info.is_valid:
        fields["expires_at"] = info.expires_at
        fields["data_access_expires_at"] = info.data_access_expires_at
        if info.scopes:
            fields["scopes"] = list(info.scopes)
        if info.waba_ids:
            fields["waba_ids"] = list(info.waba_ids)
    elif status is TokenStatus.ACTIVE:
        fields["status"] = TokenStatus.INVALIDATED
    return fields


def record_invalidated(ctx: VaultContext, record: TokenRecord, info: TokenDebugInfo) -> None:
    """The audit event of a token found dead (inside the caller's transaction)."""
    ctx.audit("token.invalidated", record.label, version=record.version, error=info.error_message,
              code=info.error_code, subcode=info.error_subcode)


def say(ctx: VaultContext, what: str, labels: Sequence[str], body: Callable[[str], str]) -> int:
    """Notify ``what`` happened to ``labels``: one notification each, or one summary past ``NOTIFY_EACH_UP_TO``.
    Returns how many were accepted."""
    if not labels:
        return 0
    if len(labels) <= NOTIFY_EACH_UP_TO:
        return sum(ctx.notifier.notify(f"tokenvault: {label} {what}", body(label)) for label in labels)
    shown = ", ".join(labels[:50]) + (f" and {len(labels) - 50} more" if len(labels) > 50 else "")
    return int(ctx.notifier.notify(f"tokenvault: {len(labels)} tokens {what}",
                                   f"{shown}. For the first one: {body(labels[0])}"))


__all__ = ["NOTIFY_EACH_UP_TO", "check_fields", "record_invalidated", "say"]
