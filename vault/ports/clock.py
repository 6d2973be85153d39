"""The Clock port: time is an argument, so the seven-day rule is tested with dates, not sleeps."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ..types import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return utcnow()  # (imported once: an import in the function costs more than the clock, ~20 times a rotation)
