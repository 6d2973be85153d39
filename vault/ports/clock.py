"""The Clock port: time is an argument, so the seven-day rule is tested with dates, not sleeps."""

from __future__ import annotations

from datetime import datetime

from ..types import utcnow

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Protocol
else:  # the start-up path imports this module for SystemClock: no typing there. The Protocol is a type for
    Protocol = object  # mypy only (not runtime_checkable: nothing asks isinstance() of it)


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return utcnow()  # (imported once: an import in the function costs more than the clock, ~20 times a rotation)
