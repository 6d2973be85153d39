"""The system-user roster: sync from Meta, eligibility views, creation dates set by hand.

Ages only *predict* when Meta's seven-day window opens; the roster keeps where each creation time
came from (``graph``, ``first_seen`` or ``manual``) so the prediction can say how sure it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from .. import policy
from ..errors import GraphError
from ..types import SystemUserRecord

if TYPE_CHECKING:
    from ..context import VaultContext


@dataclass(frozen=True)
class SystemUserView:
    """A system user with its eligibility (for `system-users list`)."""

    record: SystemUserRecord
    eligible: bool  # predicted: past the seven-day window (Meta has the last word)
    eligible_from: datetime  # predicted: when the window opens (created_at + 7 days)
    reason: str
    wabas: dict[str, list[str]] = field(default_factory=dict)  # WABA id -> tasks ([] unknown), when known

    def as_json(self) -> dict[str, object]:
        r = self.record
        return {"id": r.id, "name": r.name, "role": r.role, "business": r.business_name,
                "created_at": r.created_at.isoformat(), "age_source": r.age_source.value,
                "eligible": self.eligible, "eligible_from": self.eligible_from.isoformat(),
                "app_installed": r.app_installed, "reason": self.reason,
                "wabas": [{"id": w, "tasks": t} for w, t in self.wabas.items()]}


def assume_installable(record: SystemUserRecord) -> SystemUserRecord:
    """tokenvault installs the app for the chosen admin itself, so "not installed yet" never blocks."""
    return replace(record, app_installed=True)


def sync(ctx: VaultContext, business_name: str | None = None) -> list[SystemUserRecord]:
    """Pull system users (id, name, role, creation time, assigned WABAs) from Meta into the store.

    ``created_time`` comes from the list when Meta includes it, else from the node; failing
    both, the store keeps the time tokenvault first saw the user (age source ``first_seen``).
    """
    businesses = [ctx.store.get_business(business_name)] if business_name else ctx.store.list_businesses()
    now = ctx.now()
    for biz in businesses:
        app, caller = ctx.app_credentials(biz), ctx.admin_token(biz)
        for info in ctx.graph.list_system_users(biz.business_id, app, caller):
            created = info.created_time
            if created is None:
                created = ctx.graph.system_user_created_time(info.id, app, caller)
            ctx.store.upsert_system_user(biz.id, info.id, info.name, info.role, created, now)
            try:
                wabas = ctx.graph.assigned_wabas(info.id, app, caller)
            except GraphError:
                continue  # not every caller may read every system user's assets: keep what is known
            ctx.store.set_system_user_wabas(info.id, {w: [] for w in wabas}, now, replace_all=True)
        ctx.audit("system_users.sync", biz.name)
    return ctx.store.list_system_users(business_name)


def views(ctx: VaultContext, business_name: str | None = None) -> list[SystemUserView]:
    """Every known system user with its (predicted) eligibility now."""
    now = ctx.now()
    wabas = ctx.store.system_user_wabas()
    out = []
    for su in ctx.store.list_system_users(business_name):
        verdict = policy.eligibility(assume_installable(su), now=now)
        out.append(SystemUserView(su, verdict.eligible, verdict.eligible_from, verdict.reason, wabas.get(su.id, {})))
    return out


def set_created(ctx: VaultContext, su_id: str, created: datetime) -> SystemUserRecord:
    """Record a creation date read in Business Settings (age source ``manual``). Audited."""
    ctx.store.set_manual_created(su_id, created)
    ctx.audit("system_users.set_created", su_id, created_at=created.isoformat())
    return ctx.store.get_system_user(su_id)


__all__ = ["SystemUserView", "assume_installable", "set_created", "sync", "views"]
