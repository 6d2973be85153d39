"""Businesses: register a Business Manager and its app, and replace its app secret or admin token.

Both business secrets are stored encrypted like tokens, as numbered versions; a replacement is written
as the next version, checked with Meta, and only then made current, so a refused value changes nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..context import business_secret_setting
from ..errors import AlreadyExists, InvalidInput, TokenInvalid
from ..types import BusinessRecord, Secret, SecretKind, SecretRef
from ..validation import validate_label

if TYPE_CHECKING:
    from ..context import VaultContext


def add_business(ctx: VaultContext, name: str, business_id: str, app_id: str, app_secret: Secret,
                 admin_token: Secret) -> BusinessRecord:
    """Register a Business Manager and its app; the app secret and admin token are stored encrypted.

    Raises :class:`WrongMasterKey` before anything is written when the configured master key does
    not open this store (otherwise the two secrets would be sealed under a key nobody else holds).
    """
    validate_label(name, "business name")
    for what, value in (("business id", business_id), ("app id", app_id)):
        if not value.isdigit():
            raise InvalidInput(f"The {what} must be digits, got {value!r}.",
                               hint="Copy it from Business Settings > Business info / the app dashboard.")
    ctx.fingerprint_key()
    business = ctx.store.add_business(name, business_id, app_id, ctx.now())
    meta = {"business": name, "business_id": business_id, "app_id": app_id}
    ctx.secrets.put(SecretRef(SecretKind.APP_SECRET, business.id, 1, name), app_secret, meta)
    ctx.secrets.put(SecretRef(SecretKind.ADMIN_TOKEN, business.id, 1, name), admin_token, meta)
    ctx.audit("business.add", name, business_id=business_id, app_id=app_id)
    return business


def list_businesses(ctx: VaultContext) -> list[BusinessRecord]:
    return ctx.store.list_businesses()


def replace_business_secret(ctx: VaultContext, name: str, kind: SecretKind, secret: Secret, *, verify: bool = True,
                            revoke_old: bool = False) -> int:
    """Store a new app secret or admin token for business ``name``; returns its version.

    The new value is written as the next version first (check-and-set: a concurrent writer gets
    :class:`AlreadyExists`), then checked with Meta unless ``verify`` is False (an admin token must
    be valid for the business's app; an app secret must make an app token debug_token accepts), and
    only then made current, so a refused value changes nothing. Older versions stay encrypted as
    history. ``revoke_old`` (admin token only) revokes the previous admin token at Meta afterwards,
    with the new one as the caller. Audited; the values never leave the secret backend.
    """
    if kind not in (SecretKind.APP_SECRET, SecretKind.ADMIN_TOKEN):
        raise InvalidInput(f"{kind.value} is not a business secret.")
    biz = ctx.store.get_business(name)
    ctx.fingerprint_key()  # the configured key must open this store before anything is written
    old_version = ctx.business_secret_version(biz, kind)
    old_ref = ctx.business_secret_ref(biz, kind, old_version)
    meta = {"business": biz.name, "business_id": biz.business_id, "app_id": biz.app_id}
    new_ref = _put_next_version(ctx, biz, kind, old_version, secret, meta)
    try:
        if verify:
            _check_business_secret(ctx, biz, kind, secret)
    except BaseException:
        ctx.discard(new_ref)
        raise
    ctx.store.set_setting(business_secret_setting(biz, kind), str(new_ref.version))
    ctx.audit(f"business.{kind.value}.replace", biz.name, version=new_ref.version, verified=verify)
    if revoke_old and kind is SecretKind.ADMIN_TOKEN:
        old = ctx.secrets.get(old_ref)
        if old != secret:
            ctx.revoke_at_meta(biz, old, caller=secret)
            ctx.audit("business.admin_token.revoke_old", biz.name, version=old_ref.version)
    return new_ref.version


def _put_next_version(ctx: VaultContext, biz: BusinessRecord, kind: SecretKind, current: int, secret: Secret,
                      meta: dict[str, str]) -> SecretRef:
    """Write ``secret`` as the first free version after ``current``. A version left by a refused or
    interrupted replacement is not current: locally it is dropped and reused; Vault KV never reuses a
    version number, so the next one is taken."""
    for number in range(current + 1, current + 20):
        ref = ctx.business_secret_ref(biz, kind, number)
        if ctx.secrets.exists(ref):
            ctx.secrets.destroy(ref)
        try:
            ctx.secrets.put(ref, secret, meta)
            return ref
        except AlreadyExists:
            continue
    raise AlreadyExists(f"Too many unfinished replacements of {biz.name}'s {kind.value}.",
                        hint="Run `tokenvault doctor`; if the secret backend is healthy, report this.")


def _check_business_secret(ctx: VaultContext, biz: BusinessRecord, kind: SecretKind, secret: Secret) -> None:
    from ..ports.graph import AppCredentials

    if kind is SecretKind.APP_SECRET:
        app = AppCredentials(biz.app_id, secret)
        ctx.graph.debug_token(ctx.admin_token(biz), app)  # a wrong secret: Meta refuses the app token
        return
    info = ctx.graph.debug_token(secret, ctx.app_credentials(biz))
    if not info.is_valid:
        raise TokenInvalid(f"Meta says the new admin token of {biz.name} is not valid "
                           f"({info.error_message or 'no reason given'}); nothing was changed.",
                           hint="Generate a fresh admin (system user) token in Business Settings and retry.")

__all__ = ["add_business", "list_businesses", "replace_business_secret"]
