"""The Notifier port: reminders and alerts to people (Slack, e-mail, webhooks...)."""

from __future__ import annotations

from typing import Protocol


class Notifier(Protocol):
    def notify(self, title: str, body: str) -> bool:
        """Send a notification; True when at least one target accepted it. Never raises for delivery failure."""
        ...


class NullNotifier:
    """No notification targets configured: nothing is sent (reminders stay visible in `reminders list`)."""

    def notify(self, title: str, body: str) -> bool:
        return False
