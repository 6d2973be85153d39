"""Stored tokens: list, show, reveal, resolve for injection, verify with Meta, revoke.

Every read of a secret is audited; nothing here mints (see :mod:`.mint`) or rotates (see :mod:`.rotate`).
"""

from __future__ import annotations

from ..errors import InvalidInput
from ..types import Secret, SecretKind, SecretRef, TokenRecord, TokenStatus
from .checks import check_fields, record_invalidated, say

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from ..context import VaultContext
    from ..ports.graph import TokenDebugInfo

#: statuses a token may be handed out in (injection refuses the others unless told otherwise)
USABLE = (TokenStatus.ACTIVE,)


def list_tokens(ctx: VaultContext) -> list[TokenRecord]:
    return ctx.store.list_tokens()


def list_tokens_json(ctx: VaultContext) -> list[str]:
    """:func:`list_tokens` as each token's JSON text (``TokenRecord.as_json``, encoded on one line): what
    ``token list --json`` prints, written from the rows without building 100,000 records."""
    return ctx.store.list_tokens_json()


def show_token(ctx: VaultContext, label: str) -> TokenRecord:
    """Metadata, provenance and version history of ``label``; never the secret."""
    return ctx.store.get_token(label, with_history=True)


def reveal(ctx: VaultContext, label: str, *, version: int | None = None, purpose: str = "reveal") -> Secret:
    """Decrypt the current (or a given) version of ``label``. Audited. Raises NotFound / IntegrityError."""
    record = ctx.store.get_token(label)
    number = version or record.version
    secret = ctx.secrets.get(SecretRef(SecretKind.TOKEN, record.id, number, label))
    ctx.audit(f"token.{purpose}", label, version=number)
    return secret


def resolve(ctx: VaultContext, label: str, *, allow_inactive: bool = False,
            purpose: str = "read") -> tuple[TokenRecord, Secret]:
    """The current token of ``label`` for injection: refuses a token that is not active unless allowed."""
    record = ctx.store.get_token(label)
    if record.status not in USABLE and not allow_inactive:
        raise InvalidInput(
            f"Token {label!r} is {record.status.value}; refusing to hand it out.",
            hint="Rotate it (`tokenvault token rotate`), or pass --allow-inactive if you really mean it.",
        )
    secret = ctx.secrets.get(SecretRef(SecretKind.TOKEN, record.id, record.version, label))
    ctx.audit(f"token.{purpose}", label, version=record.version)
    return record, secret


def verify(ctx: VaultContext, label: str) -> tuple[TokenRecord, TokenDebugInfo]:
    """debug_token the current version now and record what Meta said (validity, expiry, scopes); an invalid
    active token becomes ``invalidated`` (audited, notified)."""
    record = ctx.store.get_token(label)
    biz = ctx.store.get_business(record.business_name)
    secret = ctx.secrets.get(SecretRef(SecretKind.TOKEN, record.id, record.version, label))
    info = ctx.graph.debug_token(secret, ctx.app_credentials(biz))
    fields = check_fields(info, ctx.now(), record.status)
    with ctx.store.transaction():
        ctx.store.update_version(record.id, record.version, **fields)
        ctx.audit("token.verify", label, version=record.version, valid=info.is_valid)
        if fields.get("status") is TokenStatus.INVALIDATED:
            record_invalidated(ctx, record, info)
    if fields.get("status") is TokenStatus.INVALIDATED:
        say(ctx, "invalidated", [label], lambda _: f"Meta says {label} is no longer valid "
            f"({info.error_message or 'no reason given'}); `tokenvault run-due` reissues it unless its policy is "
            "on_invalid=alert.")
    return ctx.store.get_token(label), info


def check_whatsapp(ctx: VaultContext, label: str, phone_number_id: str) -> dict[str, object]:
    """A cheap live call with the token itself: read a WhatsApp phone number's public fields.

    Proves what debug_token cannot: that the token reaches this WABA's number for WhatsApp today.
    Raises TokenInvalid / PermissionMissing (no access to the number's WABA) / ... (exit 6).
    """
    if not phone_number_id.isdigit():
        raise InvalidInput(f"A phone number id is digits, got {phone_number_id!r}.",
                           hint="Copy it from WhatsApp Manager > Phone numbers (the id, not the number).")
    record = ctx.store.get_token(label)
    biz = ctx.store.get_business(record.business_name)
    secret = ctx.secrets.get(SecretRef(SecretKind.TOKEN, record.id, record.version, label))
    fields = ctx.graph.check_whatsapp(secret, ctx.app_credentials(biz), phone_number_id)
    ctx.audit("token.check_whatsapp", label, version=record.version, phone_number_id=phone_number_id)
    return fields


def revoke(ctx: VaultContext, label: str, *, version: int | None = None,
           status: TokenStatus = TokenStatus.REVOKED) -> TokenRecord:
    """Revoke ``label`` (current or given version) at Meta, then mark it revoked.

    A token Meta already considers invalid counts as revoked. The record is only marked after
    Meta answered, so a failed call changes nothing locally.
    """
    record = ctx.store.get_token(label)
    number = version or record.version
    biz = ctx.store.get_business(record.business_name)
    secret = ctx.secrets.get(SecretRef(SecretKind.TOKEN, record.id, number, label))
    ctx.revoke_at_meta(biz, secret)
    ctx.store.update_version(record.id, number, status=status, revoked_at=ctx.now())
    ctx.audit("token.revoke", label, version=number, status=status.value)
    return ctx.store.get_token(label, with_history=True)

def active_labels(ctx: VaultContext, *, system_user_id: str | None = None) -> list[str]:
    """Labels of active tokens (all, or those minted by one system user), e.g. for bulk rotation."""
    return [t.label for t in ctx.store.list_tokens()
            if t.status is TokenStatus.ACTIVE
            and (system_user_id is None or t.provenance.system_user_id == system_user_id)]


__all__ = ["USABLE", "active_labels", "check_whatsapp", "list_tokens", "resolve", "reveal", "revoke", "show_token",
           "verify"]
