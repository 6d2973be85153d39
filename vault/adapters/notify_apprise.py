"""The Notifier port on `apprise` (Slack, e-mail, Teams, webhooks, ntfy... configured by URL).

URLs come from ``TOKENVAULT_NOTIFY_URLS`` / config.toml ``notify_urls`` (comma-separated). Delivery
failures are reported by the return value and a warning log line, never raised: a reminder must not
fail because a chat service is down (it stays visible in ``tokenvault reminders list``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import InvalidInput
from ..redact import redact_text

log = logging.getLogger("tokenvault.notify")


class AppriseNotifier:
    def __init__(self, urls: Sequence[str]) -> None:
        import apprise

        self._apprise = apprise.Apprise()
        bad = [u for u in urls if not self._apprise.add(u)]
        if bad:
            raise InvalidInput(f"{len(bad)} notification URL(s) are not understood by apprise.",
                               hint="Check TOKENVAULT_NOTIFY_URLS (see https://github.com/caronc/apprise/wiki).")
        self.count = len(urls)

    def notify(self, title: str, body: str) -> bool:
        try:
            sent = bool(self._apprise.notify(title=redact_text(title), body=redact_text(body)))
        except Exception as exc:  # noqa: BLE001 - a notification must never break the work it reports on
            log.warning("notification failed: %s", type(exc).__name__)
            return False
        if not sent:
            log.warning("notification not delivered to every target")
        return sent

    def __repr__(self) -> str:
        return f"AppriseNotifier(targets={self.count})"
