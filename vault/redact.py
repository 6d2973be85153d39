"""Redaction of secret values from text (messages, logs, child output).

Exact known values first (they may not look like tokens), then the shape of Meta tokens
(``EAA`` + a long alphanumeric run) as a safety net for values we never saw.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .types import Secret

TOKEN_PATTERN = re.compile(r"EAA[A-Za-z0-9]{20,}")
REDACTED = "<redacted>"


def redact_text(text: str, known: Iterable[Secret] = ()) -> str:
    """``text`` with every known secret value and every Meta-token-shaped run replaced."""
    for secret in known:
        value = secret.reveal()
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, text)
