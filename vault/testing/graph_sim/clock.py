"""SimClock: the simulator's time. It only moves when told to, so tests are exact to the second."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class SimClock:
    """A manual clock (satisfies :class:`vault.ports.clock.Clock`). Thread-safe.

    ``SimClock()`` starts at 2026-01-01T00:00:00Z and stays there until :meth:`advance` or :meth:`set`.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = as_utc(start) if start is not None else DEFAULT_START
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The simulated current time, aware UTC."""
        with self._lock:
            return self._now

    def advance(self, **timedelta_kwargs: Any) -> datetime:
        """Move forward by ``timedelta(**timedelta_kwargs)`` (e.g. ``days=7``); returns the new time."""
        step = timedelta(**timedelta_kwargs)
        with self._lock:
            self._now = self._now + step
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive values are taken as UTC); going back is allowed."""
        with self._lock:
            self._now = as_utc(when)

    def __repr__(self) -> str:
        return f"SimClock({self.now().isoformat()})"
