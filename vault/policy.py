"""Pure rules, time passed in: the seven-day eligibility of system users, rotation due dates, and when a
token is refreshed or verified again.

Meta: "The admin system user must be at least seven days old before creating other admin system
users." Where Meta enforces it is Meta's to say: tokenvault asks first (creates, mints) and defers only
when Meta refuses with that error. The dates computed here *predict* when the window opens (for
``system-users list`` and for dating a reminder); they never refuse anything on their own.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .records import record
from .types import SystemUserRecord, as_utc

SEVEN_DAYS = timedelta(days=7)


@record(frozen=True, slots=True)
class Eligibility:
    """A prediction: whether a system user is past Meta's seven-day window now (``eligible_from``: when it opens)."""

    eligible: bool
    reason: str
    eligible_from: datetime


def window_opens_at(created_at: datetime) -> datetime:
    """The first instant a system user created at ``created_at`` is seven days old."""
    return as_utc(created_at) + SEVEN_DAYS


def eligibility(user: SystemUserRecord, *, now: datetime) -> Eligibility:
    """Admin, at least seven days old (to the second), app installed.

    6 days 23:59:59 after creation: not eligible; exactly 7 days: eligible.
    """
    opens = window_opens_at(user.created_at)
    if user.role.upper() != "ADMIN":
        return Eligibility(False, f"role {user.role.lower()}: tokenvault mints through admins unless this one is "
                                  "named (--system-user)", opens)
    if as_utc(now) < opens:
        return Eligibility(False, f"predicted: younger than seven days (age counted from {user.age_source.value}); "
                                  "Meta may refuse creating admins (and, some say, minting) until then", opens)
    if not user.app_installed:
        return Eligibility(False, "the app is not installed for this system user", opens)
    return Eligibility(True, "admin, past the seven-day window, app installed", opens)


def rotation_due(*, created_at: datetime, now: datetime, max_age_days: int | None = None) -> str | None:
    """Why a token should be rotated now (``None`` if it should not): older than its max age. (An expiring
    token is refreshed instead: :func:`refresh_due`.)"""
    if max_age_days is not None and as_utc(now) - as_utc(created_at) >= timedelta(days=max_age_days):
        return f"older than {max_age_days} days"
    return None


#: what run-due does with a token Meta invalidated: mint a new one through an eligible admin, or only say so
ON_INVALID = ("reissue", "alert")


@record(frozen=True, slots=True)
class Renewal:
    """When run-due refreshes an expiring token and checks tokens with debug_token (settings
    ``refresh_margin_days`` and ``verify_interval``)."""

    refresh_margin: timedelta = timedelta(days=10)
    verify_interval: timedelta = timedelta(hours=24)


def refresh_due(expires_at: datetime | None, *, now: datetime, margin: timedelta) -> bool:
    """A token that expires (``expires_at`` None: never) within ``margin`` of ``now`` is due for a refresh.
    A never-expiring token is never refreshed: the exchange would turn it into a 60-day one."""
    return expires_at is not None and as_utc(expires_at) - as_utc(now) <= margin


def verify_due(verified_at: datetime | None, *, now: datetime, interval: timedelta) -> bool:
    """A token never checked, or not checked within ``interval``, is due for debug_token."""
    return verified_at is None or as_utc(now) - as_utc(verified_at) >= interval


def countdown(when: datetime | None, *, now: datetime) -> str:
    """``when`` relative to ``now`` for people: "in 12 days", "in 5 hours", "3 days ago"; "never" for None."""
    if when is None:
        return "never"
    delta = as_utc(when) - as_utc(now)
    seconds = abs(delta.total_seconds())
    if seconds >= 2 * 86400:
        amount = f"{int(seconds // 86400)} days"
    elif seconds >= 2 * 3600:
        amount = f"{int(seconds // 3600)} hours"
    elif seconds >= 120:
        amount = f"{int(seconds // 60)} minutes"
    else:
        return "now"
    return f"in {amount}" if delta.total_seconds() > 0 else f"{amount} ago"
