"""Renewal: refresh expiring tokens, reissue dead ones.

* **Refresh** (Meta: only for 60-day tokens): a token whose expiry falls inside ``refresh_margin`` is exchanged
  for a new 60-day token (``GET /oauth/access_token``, ``grant_type=fb_exchange_token``). No admin system user
  is involved, so it works inside the seven-day window too. It runs as a rotation of kind ``refresh``
  (:mod:`.rotate`): the new value is stored as a new version (source ``refreshed``) before anything else, then
  verified with debug_token, then promoted; the old token is not revoked (it works until its own expiry).
  When Meta refuses the exchange, the same rotation mints through an eligible admin instead (kind ``rotate``);
  when that is blocked it is deferred with a reminder and a notification (saying so when the token expires
  before the window opens). A never-expiring token is never refreshed: the exchange would make it a 60-day one.
* **Reissue**: a token Meta invalidated (``invalidated``, see :mod:`.verify`) is replaced by a new one minted
  through an eligible admin (rotation kind ``reissue``: nothing to revoke), unless its policy is
  ``on_invalid = alert``; deferred with a reminder when blocked.

Both run ``concurrency`` at a time through one :class:`~.rotate.Rotator` (group commits, the Graph client's
pacing), each under the token's rotation lease and with the version the plan saw (a token renewed meanwhile by
another process is skipped).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, cast

from ..context import BoundedGraph
from ..policy import refresh_due
from ..types import TokenRecord, TokenStatus
from .checks import say
from .rotate import RotationOutcome, Rotator

if TYPE_CHECKING:
    from ..context import VaultContext
    from ..ports.graph import GraphApi

#: renewals in flight per Graph call allowed in flight (see :func:`renew`)
WORKERS_PER_CALL = 3


@dataclass
class RenewalPlan:
    """What one pass renews: label -> the version seen (so a token renewed meanwhile is skipped)."""

    refresh: dict[str, int] = field(default_factory=dict)
    reissue: dict[str, int] = field(default_factory=dict)
    alert_only: list[str] = field(default_factory=list)  # invalidated, policy on_invalid = alert

    def __len__(self) -> int:
        return len(self.refresh) + len(self.reissue)


def plan(ctx: VaultContext, records: Sequence[TokenRecord], *, now: datetime | None = None) -> RenewalPlan:
    """Which of ``records`` to refresh (active, expiring within the margin) and reissue (invalidated, policy
    ``reissue``). Tokens with an open rotation are left to it."""
    now = now or ctx.now()
    busy = {r.token_id for r in ctx.store.open_rotations()}
    out = RenewalPlan()
    for record in records:
        if record.id in busy:
            continue
        if record.status is TokenStatus.ACTIVE and refresh_due(
                record.expires_at, now=now, margin=ctx.renewal.refresh_margin):
            out.refresh[record.label] = record.version
        elif record.status is TokenStatus.INVALIDATED:
            if record.on_invalid == "alert":
                out.alert_only.append(record.label)
            else:
                out.reissue[record.label] = record.version
    return out


def renew(ctx: VaultContext, work: RenewalPlan, *, concurrency: int = 8,
          progress: Callable[[RotationOutcome], None] | None = None,
          rotator: Rotator | None = None, found: Iterable[str] | None = None) -> list[RotationOutcome]:
    """Refresh and reissue what ``work`` lists; one outcome per token (``done``, ``deferred``, ``failed``,
    ``skipped``). Notifies what was refreshed and reissued (deferrals and failed refreshes notify themselves).

    A renewal waits for two commits (journal, then the new token stored) besides its two calls to Meta, so without
    a ``rotator`` of the caller's, ``WORKERS_PER_CALL`` x ``concurrency`` renewals run at once while at most
    ``concurrency`` Graph calls are in flight (:class:`~meta_tokenvault.context.BoundedGraph`): the commits of some
    overlap the calls of others. With one, ``concurrency`` renewals run at once through it (the caller bounds the
    calls).
    ``found``: more tokens to reissue, as they are found (a generator that may block; the caller adds each one
    to ``work.reissue`` before yielding it).
    """
    if rotator is None:
        rotator = Rotator(ctx.with_graph(cast("GraphApi", BoundedGraph(ctx.graph, concurrency))))
        concurrency *= WORKERS_PER_CALL
    outcomes: list[RotationOutcome] = []
    if work.refresh:
        outcomes += rotator.rotate_many(list(work.refresh), kind="refresh", reason="refresh: expires soon",
                                        concurrency=concurrency, progress=progress, expected=work.refresh)
    if work.reissue or found is not None:
        outcomes += rotator.rotate_many(chain(list(work.reissue), found or ()), kind="reissue",
                                        reason="reissue: invalidated at Meta", concurrency=concurrency,
                                        progress=progress, expected=work.reissue)
    done = {o.label: o for o in outcomes if o.state == "done"}
    refreshed = [label for label in work.refresh if label in done and done[label].kind == "refresh"]
    rotated = [label for label in work.refresh if label in done and done[label].kind == "rotate"]
    reissued = [label for label in work.reissue if label in done]
    say(ctx, "refreshed", refreshed,
        lambda label: f"{label} was renewed before it expired: version {done[label].to_version} is active "
                      f"(version {done[label].from_version} keeps working until its own expiry).")
    say(ctx, "rotated instead of refreshed", rotated,
        lambda label: f"Meta refused to refresh {label}, so it was rotated through an eligible admin system user: "
                      f"version {done[label].to_version} is active, version {done[label].from_version} revoked.")
    say(ctx, "reissued", reissued,
        lambda label: f"{label} had been invalidated at Meta; version {done[label].to_version}, minted through an "
                      "eligible admin system user, is active now.")
    return outcomes


def refresh(ctx: VaultContext, label: str) -> RotationOutcome:
    """Refresh ``label`` now (falls back to a rotation when Meta refuses). Raises InvalidInput for a token that
    never expires, Deferred (7), RotationInProgress (8), GraphError (6)."""
    from ..errors import InvalidInput

    record = ctx.store.get_token(label)
    if record.expires_at is None and record.verified_at is None:
        raise InvalidInput(f"{label}'s expiry is not known: it was never checked with Meta (--no-verify).",
                           hint=f"Run `tokenvault token verify {label}` (it records the expiry), then refresh it.")
    if record.expires_at is None:
        raise InvalidInput(f"{label} never expires; refreshing it would turn it into a 60-day token.",
                           hint="Rotate it instead (`tokenvault token rotate`).")
    outcome = Rotator(ctx).rotate(label, kind="refresh", reason="refresh: asked")
    if outcome.state == "done" and outcome.kind == "refresh":
        say(ctx, "refreshed", [label], lambda _: f"{label} was refreshed: version {outcome.to_version} is active.")
    elif outcome.state == "done":  # Meta refused the exchange: rotated through an admin instead
        say(ctx, "rotated instead of refreshed", [label],
            lambda _: f"Meta refused to refresh {label}, so it was rotated through an eligible admin system user: "
                      f"version {outcome.to_version} is active, version {outcome.from_version} revoked.")
    return outcome


__all__ = ["RenewalPlan", "plan", "refresh", "renew"]
