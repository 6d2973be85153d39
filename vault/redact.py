"""Redaction of secret values from text (messages, logs, child output).

:func:`redact_text`: exact known values first (they may not look like tokens), then the shape of Meta
tokens (``EAA`` + a long alphanumeric run) as a safety net for values we never saw.
:class:`StreamRedactor`: exact known values in a byte stream, across chunk borders (``exec --mask``).
:func:`strip_userinfo`: credentials in URLs (``https://user:pass@host``), before a URL is printed or logged.
:func:`printable`: text from outside (Graph, the database, the environment) without control characters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .types import Secret

TOKEN_PATTERN = re.compile(r"EAA[A-Za-z0-9]{20,}")
REDACTED = "<redacted>"
# scheme://userinfo@ : the userinfo ends at the last '@' before the host's '/', '?', '#' or whitespace
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@]*(?:@[^/?#\s@]*)*@")
# C0 and C1 controls and DEL (escape sequences, bells, carriage returns), and the Unicode format characters
# that reorder or hide text (bidi overrides and isolates, zero-width joiners): a terminal acts on all of them.
_CONTROL_RE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def strip_userinfo(text: str) -> str:
    """``text`` with the ``user:password@`` part of every URL in it removed (``https://u:p@h/x`` -> ``https://h/x``)."""
    return _USERINFO_RE.sub(r"\1", text) if "@" in text else text


def printable(text: str) -> str:
    """``text`` without control characters (newlines kept), safe to write to a terminal as plain text."""
    return _CONTROL_RE.sub("", text)


def redact_text(text: str, known: Iterable[Secret] = ()) -> str:
    """``text`` with every known secret value and every Meta-token-shaped run replaced."""
    for secret in known:
        value = secret.reveal()
        if len(value) >= 4:
            text = text.replace(value, REDACTED)
    return TOKEN_PATTERN.sub(REDACTED, strip_userinfo(text))


class StreamRedactor:
    """Replaces known secret values in a byte stream with ``<redacted:LABEL>``, across chunk borders.

    :meth:`feed` returns at once everything that can no longer become part of a secret; it holds back
    only the longest tail that is a proper prefix of some secret (at most ``len(secret) - 1`` bytes),
    so a secret written in two halves is still caught. Output is delayed only while its end could be
    the start of a secret (Meta tokens start with ``EAA``: a chunk ending in ``E`` waits for the next
    one, or for :meth:`flush` at end of stream). Bytes, not text: binary output passes intact.
    Only exact values are caught (not base64 or URL-encoded forms). When one value is a prefix of
    another, the longer one wins wherever it is complete.
    """

    def __init__(self, secrets: Mapping[str, Secret]) -> None:
        pairs = {s.reveal().encode(): f"<redacted:{label}>".encode() for label, s in secrets.items()
                 if s.reveal()}
        self._replacement = pairs
        self._values = sorted(pairs, key=len, reverse=True)  # longest first: a value inside another
        self._pattern = re.compile(b"|".join(re.escape(v) for v in self._values)) if pairs else None
        self._longest = len(self._values[0]) if pairs else 0
        self._tail = b""

    def __repr__(self) -> str:
        return f"StreamRedactor({len(self._values)} values)"

    def clone(self) -> StreamRedactor:
        """A redactor for the same values with its own (empty) tail: one per stream."""
        twin = object.__new__(StreamRedactor)
        twin._replacement, twin._values, twin._pattern = self._replacement, self._values, self._pattern
        twin._longest, twin._tail = self._longest, b""
        return twin

    def feed(self, data: bytes) -> bytes:
        """Redacted output that is final; keeps back a tail that may still grow into a secret."""
        if self._pattern is None:
            return data
        buf = self._tail + data
        # Bytes from ``limit`` on could be the start of a secret that the next chunk completes. A match
        # starting before ``limit`` is final: no longer value can start there and still be incomplete.
        limit = len(buf) - self._held_length(buf)
        out: list[bytes] = []
        pos = 0
        for match in self._pattern.finditer(buf):
            if match.start() >= limit:
                break
            out.append(buf[pos:match.start()])
            out.append(self._replacement[match.group()])
            pos = match.end()
        if pos > limit:  # a final match ran into the held tail: hold only what follows it
            limit = len(buf) - self._held_length(buf[pos:])
        out.append(buf[pos:limit])
        self._tail = buf[limit:]
        return b"".join(out)

    def _held_length(self, rest: bytes) -> int:
        for k in range(min(len(rest), self._longest - 1), 0, -1):
            suffix = rest[-k:]
            if any(v.startswith(suffix) for v in self._values):
                return k
        return 0

    def flush(self) -> bytes:
        """The held tail at end of stream, redacted (it may hold a value that is a prefix of another)."""
        tail, self._tail = self._tail, b""
        if self._pattern is None or not tail:
            return tail
        return self._pattern.sub(lambda m: self._replacement[m.group()], tail)
