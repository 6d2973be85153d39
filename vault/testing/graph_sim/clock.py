"""SimClock: the simulator's time. It only moves when told to, so tests are exact to the second.

``SimClock(realtime=True)`` (or :meth:`SimClock.run`) makes it follow real time from its start instead:
what benchmarks and long-running servers need, since a rate-limit window counted on a clock that stands
still never reopens. :meth:`advance` and :meth:`set` still jump, and the clock keeps running from there.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class SimClock:
    """A manual clock (satisfies :class:`meta_tokenvault.ports.clock.Clock`). Thread-safe.

    ``SimClock()`` starts at 2026-01-01T00:00:00Z and stays there until :meth:`advance` or :meth:`set`.
    ``SimClock(realtime=True)`` starts there too, then moves with real (monotonic) time.
    """

    def __init__(self, start: datetime | None = None, *, realtime: bool = False) -> None:
        self._now = as_utc(start) if start is not None else DEFAULT_START
        self._realtime = realtime
        self._since = time.monotonic()  # when _now was read (realtime: the clock moved on since)
        self._lock = threading.Lock()

    @property
    def realtime(self) -> bool:
        """Whether the clock follows real time (else it stands still between jumps)."""
        return self._realtime

    def run(self, realtime: bool = True) -> None:
        """From now on follow real time (``realtime=False``: stand still again, at the current time)."""
        with self._lock:
            self._rebase(self._current())
            self._realtime = realtime

    def now(self) -> datetime:
        """The simulated current time, aware UTC."""
        with self._lock:
            return self._current()

    def advance(self, **timedelta_kwargs: Any) -> datetime:
        """Move forward by ``timedelta(**timedelta_kwargs)`` (e.g. ``days=7``); returns the new time."""
        step = timedelta(**timedelta_kwargs)
        with self._lock:
            self._rebase(self._current() + step)
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (naive values are taken as UTC); going back is allowed."""
        with self._lock:
            self._rebase(as_utc(when))

    def _current(self) -> datetime:
        if not self._realtime:
            return self._now
        return self._now + timedelta(seconds=time.monotonic() - self._since)

    def _rebase(self, when: datetime) -> None:
        self._now, self._since = when, time.monotonic()

    def __repr__(self) -> str:
        mode = ", realtime" if self._realtime else ""
        return f"SimClock({self.now().isoformat()}{mode})"
