"""Minting through an eligible system user, and keeping the system-user roster in sync.

Eligible = an admin system user, at least seven days old, with the app installed (tokenvault
installs the app itself before the first mint). When none is eligible yet the caller gets
:class:`~meta_tokenvault.errors.Deferred` carrying the date the first window opens, so the work can be
recorded as a reminder instead of being forgotten.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from . import policy
from .errors import Deferred, NotFound, PermissionMissing, SevenDayWindow, VaultError
from .types import BusinessRecord, Secret, SystemUserRecord

if TYPE_CHECKING:
    from .ports.graph import AppCredentials
    from .service import TokenManager


@dataclass(frozen=True)
class MintResult:
    secret: Secret
    system_user_id: str
    #: the app the token was minted for: what revoking it needs, without reading the secret backend again
    app: AppCredentials | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class SystemUserView:
    """A system user with its eligibility (for `system-users list`)."""

    record: SystemUserRecord
    eligible: bool
    eligible_from: datetime
    reason: str

    def as_json(self) -> dict[str, object]:
        r = self.record
        return {"id": r.id, "name": r.name, "role": r.role, "business": r.business_name,
                "created_at": r.created_at.isoformat(), "age_source": r.age_source.value,
                "eligible": self.eligible, "eligible_from": self.eligible_from.isoformat(),
                "app_installed": r.app_installed, "reason": self.reason}


def _assume_installable(record: SystemUserRecord) -> SystemUserRecord:
    # tokenvault installs the app for the chosen admin itself, so "not installed yet" never blocks
    return replace(record, app_installed=True)


class Minter:
    """Uses the manager's ports; holds no state of its own."""

    def __init__(self, manager: TokenManager) -> None:
        self.m = manager

    def sync(self, business_name: str | None = None) -> list[SystemUserRecord]:
        """Pull system users (id, name, role, creation time) from Meta into the store.

        ``created_time`` comes from the list when Meta includes it, else from the node; failing
        both, the store keeps the time tokenvault first saw the user (age source ``first_seen``).
        """
        businesses = ([self.m.store.get_business(business_name)] if business_name
                      else self.m.store.list_businesses())
        now = self.m.now()
        for biz in businesses:
            app, caller = self.m.app_credentials(biz), self.m.admin_token(biz)
            for info in self.m.graph.list_system_users(biz.business_id, app, caller):
                created = info.created_time
                if created is None:
                    created = self.m.graph.system_user_created_time(info.id, app, caller)
                self.m.store.upsert_system_user(biz.id, info.id, info.name, info.role, created, now)
            self.m.audit("system_users.sync", biz.name)
        return self.m.store.list_system_users(business_name)

    def views(self, business_name: str | None = None) -> list[SystemUserView]:
        now = self.m.now()
        out = []
        for su in self.m.store.list_system_users(business_name):
            verdict = policy.eligibility(_assume_installable(su), now=now)
            out.append(SystemUserView(su, verdict.eligible, verdict.eligible_from, verdict.reason))
        return out

    def set_created(self, su_id: str, created: datetime) -> SystemUserRecord:
        self.m.store.set_manual_created(su_id, created)
        self.m.audit("system_users.set_created", su_id, created_at=created.isoformat())
        return self.m.store.get_system_user(su_id)

    def candidates(self, biz: BusinessRecord, system_user_id: str | None) -> list[SystemUserRecord]:
        """Eligible admins, oldest first; raises Deferred (with the opening date) when there are none."""
        now = self.m.now()
        users = self.m.store.list_system_users(biz.name)
        if system_user_id is not None:
            users = [u for u in users if u.id == system_user_id]
            if not users:
                raise NotFound(f"System user {system_user_id} is not known for {biz.name}.",
                               hint="Run `tokenvault system-users sync` (or check the id in Business Settings).")
        verdicts = [(u, policy.eligibility(_assume_installable(u), now=now)) for u in users]
        eligible = sorted((u for u, v in verdicts if v.eligible), key=lambda u: u.created_at)
        if eligible:
            return eligible
        admins = [(u, v) for u, v in verdicts if u.role.upper() == "ADMIN"]
        if not admins:
            if system_user_id is not None:
                raise PermissionMissing(f"System user {system_user_id} is not an admin system user; "
                                        "only an admin system user can mint here.",
                                        hint="Name an admin system user, or create one in Business Settings.")
            raise NotFound(f"{biz.name} has no admin system user known to tokenvault.",
                           hint="Create an admin system user in Business Settings, "
                                "then `tokenvault system-users sync`.")
        first = min(admins, key=lambda uv: uv[1].eligible_from)
        raise Deferred(
            f"No eligible admin system user in {biz.name} yet: {first[0].name} ({first[0].id}) "
            f"becomes eligible on {first[1].eligible_from:%Y-%m-%d %H:%M} UTC (Meta's seven-day rule).",
            opens_at=first[1].eligible_from,
        )

    def mint(self, biz: BusinessRecord, scopes: tuple[str, ...], *, system_user_id: str | None = None,
             expiring: bool = False, app: AppCredentials | None = None, caller: Secret | None = None) -> MintResult:
        """Mint a token through the oldest eligible admin (or the named one). Raises Deferred when blocked.

        ``app`` and ``caller``: the business's app credentials and admin token, when the caller has them."""
        app, caller = app or self.m.app_credentials(biz), caller or self.m.admin_token(biz)
        last_error: Exception | None = None
        for su in self.candidates(biz, system_user_id):
            try:
                if not su.app_installed:
                    self.m.graph.install_app(su.id, app, caller)
                    self.m.store.mark_app_installed(su.id)
                secret = self.m.graph.generate_token(su.id, app, caller, scopes, expiring=expiring)
            except SevenDayWindow as exc:
                opens_at = exc.opens_at or policy.window_opens_at(su.created_at)
                raise Deferred(f"Meta refused minting through {su.name} ({su.id}): the admin system user is "
                               f"younger than seven days; the window opens {opens_at:%Y-%m-%d %H:%M} UTC.",
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
                self.m.audit("mint.discarded", label, system_user_id=minted.system_user_id,
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
            self.m.graph.revoke_token(minted.secret, minted.app, minted.secret)
        except VaultError:
            return False
        return True
