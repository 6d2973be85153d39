"""Minting through an eligible system user, and ``token generate``.

Minting goes through an admin system user, the oldest first, with the app installed (tokenvault installs
it itself before the first mint). Ask Meta first: a young admin (under seven days) is tried too, because
nothing authoritative says Meta's seven-day rule gates minting. Only when Meta refuses with the seven-day
error does the caller get :class:`~meta_tokenvault.errors.Deferred`, dated when the window opens (``created_time`` +
7 days), so the work can be recorded as a reminder instead of being forgotten.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import policy
from ..errors import AlreadyExists, Deferred, InvalidInput, NotFound, PermissionMissing, SevenDayWindow, VaultError
from ..types import BusinessRecord, Secret, SecretKind, SecretRef, SystemUserRecord, TokenRecord, TokenSource
from ..validation import validate_label, validate_on_invalid
from .tokens import verify

if TYPE_CHECKING:
    from ..context import VaultContext
    from ..ports.graph import AppCredentials


@dataclass(frozen=True)
class MintResult:
    secret: Secret
    system_user_id: str
    #: the app the token was minted for: what revoking it needs, without reading the secret backend again
    app: AppCredentials | None = field(default=None, repr=False, compare=False)


class Minter:
    """Mints through the context's ports; holds no state of its own."""

    def __init__(self, ctx: VaultContext) -> None:
        self.ctx = ctx

    def candidates(self, biz: BusinessRecord, system_user_id: str | None) -> list[SystemUserRecord]:
        """The system users to mint through: the named one (any role), else the admins, oldest first.

        Ask Meta first: an admin younger than seven days is a candidate too (its age only *predicts* when the
        window opens; tokenvault defers, in :meth:`mint`, only when Meta refuses with the seven-day error), and
        a named employee system user too (Meta mints for one when the business admin token is the caller, as
        `provision --role employee` does; a refusal is Meta's, exit 6).
        """
        users = self.ctx.store.list_system_users(biz.name)
        if system_user_id is not None:
            named = [u for u in users if u.id == system_user_id]
            if not named:
                raise NotFound(f"System user {system_user_id} is not known for {biz.name}.",
                               hint="Run `tokenvault system-users sync` (or check the id in Business Settings).")
            return named
        admins = sorted((u for u in users if u.role.upper() == "ADMIN"), key=lambda u: u.created_at)
        if admins:
            return admins
        raise NotFound(f"{biz.name} has no admin system user known to tokenvault.",
                       hint="Create one (`tokenvault system-users create NAME --business "
                            f"{biz.name} --role admin`, or in Business Settings), then `tokenvault system-users sync`.")

    def mint(self, biz: BusinessRecord, scopes: tuple[str, ...], *, system_user_id: str | None = None,
             expiring: bool = False, app: AppCredentials | None = None, caller: Secret | None = None,
             admins: Sequence[SystemUserRecord] | None = None) -> MintResult:
        """Mint a token through the oldest admin (or the named one). Raises Deferred when Meta's seven-day rule
        refuses it (dated when that admin's window opens).

        ``app`` and ``caller``: the business's app credentials and admin token, when the caller has them;
        ``admins``: what :meth:`candidates` returned for it (a bulk run reads them once)."""
        app, caller = app or self.ctx.app_credentials(biz), caller or self.ctx.admin_token(biz)
        last_error: Exception | None = None
        for su in admins if admins is not None else self.candidates(biz, system_user_id):
            try:
                if not su.app_installed:
                    self.ctx.graph.install_app(su.id, app, caller)
                    self.ctx.store.mark_app_installed(su.id)
                secret = self.ctx.graph.generate_token(su.id, app, caller, scopes, expiring=expiring)
            except SevenDayWindow as exc:
                opens_at = exc.opens_at or policy.window_opens_at(su.created_at)
                raise Deferred(f"Meta's seven-day rule refused minting through {su.name} ({su.id}): the admin "
                               f"system user is younger than seven days; the window opens "
                               f"{opens_at:%Y-%m-%d %H:%M} UTC.",
                               opens_at=opens_at) from None
            except PermissionMissing as exc:
                last_error = exc  # this admin cannot; try the next eligible one
                continue
            # Returned at once: the caller stores it before anything else can fail (nothing minted is lost).
            return MintResult(secret, su.id, app)
        assert last_error is not None
        raise last_error

    @contextlib.contextmanager
    def keep_or_revoke(self, minted: MintResult, label: str) -> Iterator[None]:
        """Run the block that stores ``minted``; if it fails, revoke the token at Meta, then re-raise.

        A token Meta minted but tokenvault could not keep (the secret backend sealed or down, the
        database refusing the write, Ctrl-C) would otherwise stay valid at Meta and unknown to
        tokenvault. The revocation needs only Meta and the app credentials read before minting
        (not the secret backend that just failed). The error's message says what happened to the
        token; the audit trail gets ``mint.discarded`` (system user, last four characters).
        """
        try:
            yield
        except BaseException as exc:
            revoked = self._revoke_unkept(minted)
            with contextlib.suppress(Exception):  # the store may be what failed; the error below says it all
                self.ctx.audit("mint.discarded", label, system_user_id=minted.system_user_id,
                             last4=minted.secret.last4, revoked_at_meta=revoked)
            if isinstance(exc, VaultError):
                exc.message += (
                    " The token Meta had just minted could not be stored, so tokenvault revoked it at Meta; "
                    "nothing is left behind." if revoked else
                    f" The token Meta had just minted (…{minted.secret.last4}, system user "
                    f"{minted.system_user_id}) could not be stored nor revoked: it is valid at Meta but unknown "
                    "to tokenvault; revoke it in Business Settings.")
                exc.args = (exc.message,)
            raise

    def _revoke_unkept(self, minted: MintResult) -> bool:
        if minted.app is None:
            return False
        try:
            # the token is its own caller: neither the admin token nor the app secret is read again
            self.ctx.graph.revoke_token(minted.secret, minted.app, minted.secret)
        except VaultError:
            return False
        return True


def generate_token(ctx: VaultContext, label: str, *, business: str, scopes: Sequence[str],
                   system_user_id: str | None = None,
                   expiring: bool = False, max_age_days: int | None = None,
                   from_reminder: bool = False, on_invalid: str = "reissue") -> TokenRecord:
    """Mint a new token through an eligible admin system user and store it as ``label`` v1.

    When no admin is eligible yet (Meta's seven-day rule) a reminder is recorded and
    :class:`~meta_tokenvault.errors.Deferred` (exit 7) carries the date; ``run-due`` finishes the work.
    The minted token is stored before it is verified, so nothing minted is lost.
    """
    validate_label(label)
    validate_on_invalid(on_invalid)
    scopes = tuple(s for s in scopes if s)
    if not scopes:
        raise InvalidInput("At least one scope is needed.",
                           hint="e.g. --scopes whatsapp_business_management,whatsapp_business_messaging")
    biz = ctx.store.get_business(business)
    with contextlib.suppress(NotFound):  # checked before minting: a token minted for a used label is lost
        ctx.store.get_token(label)
        raise AlreadyExists(f"A token labelled {label!r} exists already; nothing was minted.",
                            hint="Choose another label, or replace it with `tokenvault token rotate`.")
    minter = Minter(ctx)
    try:
        minted = minter.mint(biz, scopes, system_user_id=system_user_id, expiring=expiring)
    except Deferred as exc:
        if from_reminder:
            raise
        opens_at = exc.opens_at or ctx.now()
        reminder_id = ctx.store.add_reminder(
            label, "generate", biz.name, system_user_id,
            {"scopes": list(scopes), "expiring": expiring, "system_user_id": system_user_id}, opens_at,
            exc.message, ctx.now())
        ctx.audit("token.generate.deferred", label, opens_at=opens_at.isoformat(), reminder=reminder_id)
        ctx.notifier.notify(f"tokenvault: generating {label} deferred", exc.message)
        raise Deferred(f"Cannot mint {label} yet: {exc.message}", opens_at=opens_at, reminder_id=reminder_id,
                       hint=f"Reminder #{reminder_id} recorded; `tokenvault run-due` mints it when the window "
                            "opens (or name an older admin with --system-user).") from None
    with minter.keep_or_revoke(minted, label):  # a minted token that cannot be kept is revoked, never lost
        token_id = ctx.store.reserve_token_id(label, biz.id, ctx.now(), max_age_days, on_invalid)
        ref = SecretRef(SecretKind.TOKEN, token_id, 1, label)
        try:
            prov: dict[str, Any] = {"system_user_id": minted.system_user_id, "app_id": biz.app_id,
                                    "scopes": scopes, "waba_ids": (),
                                    "fingerprint": ctx.fingerprint(minted.secret)}
            ctx.secrets.put(ref, minted.secret, ctx.backend_metadata(biz, prov))
            ctx.store.add_version(token_id, 1,
                                   ctx.version_fields(minted.secret, TokenSource.GENERATED, prov),
                                   make_current=True)
        except BaseException:
            ctx.discard(ref)
            with contextlib.suppress(VaultError):
                ctx.store.drop_empty_token(token_id)
            raise
    ctx.audit("token.generate", label, version=1, system_user_id=minted.system_user_id,
               scopes=list(scopes), expiring=expiring, fingerprint=prov["fingerprint"])
    try:
        verify(ctx, label)
    except VaultError:
        pass  # stored and usable; `token verify` can be repeated
    return ctx.store.get_token(label)
