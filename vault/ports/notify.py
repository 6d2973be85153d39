"""The Notifier port: reminders and alerts to people (Slack, e-mail, webhooks...)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Protocol
else:  # the start-up path imports this module for NullNotifier: no typing there. The Protocol is a type for
    Protocol = object  # mypy only (not runtime_checkable: nothing asks isinstance() of it)



class Notifier(Protocol):
    def notify(self, title: str, body: str) -> bool:
        """Send a notification; True when at least one target accepted it. Never raises for delivery failure."""
        ...


class NullNotifier:
    """No notification targets configured: nothing is sent (reminders stay visible in `reminders list`)."""

    def notify(self, title: str, body: str) -> bool:
        return False
