"""The ONE table from Meta's Graph API errors to tokenvault's exceptions (pure; no httpx).

Meta answers errors as ``{"error": {message, type, code, error_subcode, fbtrace_id, ...}}``, usually
with HTTP 400 (rate limits included) and 5xx for server trouble. :func:`classify` turns a response
(status, parsed body, usage headers) into one :class:`~meta_tokenvault.errors.GraphError` subclass, or
:class:`~meta_tokenvault.errors.SevenDayWindow` for Meta's seven-day admin rule, most specific rule first:

==========================================  =====================  =========
Meta says                                   tokenvault raises      retried
==========================================  =====================  =========
message matches the seven-day admin rule    SevenDayWindow (7)     no
190, 102 (any subcode)                      TokenInvalid           no
4, 17, 32, 613, 80000-80014, 341, 368       RateLimited            yes, bounded
1, 2, ``is_transient: true``, HTTP 5xx      Transient              yes, bounded
3, 10, 200-299                              PermissionMissing      no
100 and anything else                       InvalidRequest         no
==========================================  =====================  =========

Messages carry Meta's text (which never contains the token: Meta does not echo it, and the text is
passed through :func:`meta_tokenvault.redact.redact_text` anyway), the code/subcode and the fbtrace id so
a support request to Meta can quote it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import (
    GraphError,
    InvalidRequest,
    PermissionMissing,
    RateLimited,
    SevenDayWindow,
    TokenInvalid,
    Transient,
)
from .redact import redact_text

#: Meta's text (reported): "The admin system user must be at least seven days old before creating other
#: admin system users." Matched loosely (7 / seven, "days old") because its code is unconfirmed.
SEVEN_DAY_RE = re.compile(r"\b(?:at least )?(?:seven|7)[ -]days?\b.*\bold\b|\bseven[- ]day\b", re.IGNORECASE)

TOKEN_INVALID_CODES = frozenset({190, 102})
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 341, 368, *range(80000, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
PERMISSION_CODES = frozenset({3, 10, *range(200, 300)})

_SUBCODE_TEXT = {
    458: "the app is not installed for this user",
    459: "the user is checkpointed",
    460: "the password was changed",
    463: "the token has expired",
    464: "the user is unconfirmed",
    467: "the token is invalid (revoked or malformed)",
    492: "the session is invalid",
}


@dataclass(frozen=True, slots=True)
class MetaError:
    """The fields of Meta's error object that tokenvault uses."""

    status: int
    code: int | None
    subcode: int | None
    message: str
    type: str | None
    fbtrace_id: str | None
    is_transient: bool


def parse_error(status: int, body: object) -> MetaError | None:
    """Meta's error object from a response body, or ``None`` when the body holds no error.

    Accepts a parsed JSON value (anything); tolerant of missing or mistyped fields, because a
    proxy in front of Meta may answer with something else entirely.
    """
    if not isinstance(body, Mapping):
        return None
    err = body.get("error")
    if isinstance(err, str):  # some OAuth endpoints answer {"error": "text"}
        return MetaError(status, None, None, err, None, None, False)
    if not isinstance(err, Mapping):
        return None
    return MetaError(
        status=status,
        code=_int(err.get("code")),
        subcode=_int(err.get("error_subcode")),
        message=str(err.get("error_user_msg") or err.get("message") or "no message"),
        type=str(err["type"]) if err.get("type") is not None else None,
        fbtrace_id=str(err["fbtrace_id"]) if err.get("fbtrace_id") is not None else None,
        is_transient=err.get("is_transient") is True,
    )


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``X-Business-Use-Case-Usage`` (``estimated_time_to_regain_access``, minutes).

    Also honours a standard ``Retry-After`` (seconds) a proxy may add. ``None`` when nothing says.
    """
    waits: list[float] = []
    raw = _header(headers, "x-business-use-case-usage")
    if raw:
        try:
            usage = json.loads(raw)
        except ValueError:
            usage = None
        if isinstance(usage, Mapping):
            for entries in usage.values():
                for entry in entries if isinstance(entries, list) else [entries]:
                    if isinstance(entry, Mapping):
                        minutes = entry.get("estimated_time_to_regain_access")
                        if isinstance(minutes, int | float) and not isinstance(minutes, bool) and minutes > 0:
                            waits.append(float(minutes) * 60.0)
    retry = _header(headers, "retry-after")
    if retry:
        try:
            waits.append(max(0.0, float(retry)))
        except ValueError:
            pass
    return max(waits) if waits else None


def app_usage(headers: Mapping[str, str]) -> float | None:
    """The highest percentage in ``X-App-Usage`` (call_count / total_cputime / total_time), if present."""
    raw = _header(headers, "x-app-usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(usage, Mapping):
        return None
    values = [float(v) for v in usage.values() if isinstance(v, int | float) and not isinstance(v, bool)]
    return max(values) if values else None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def classify(err: MetaError, *, headers: Mapping[str, str] | None = None, what: str = "The Graph API call",
             system_user_id: str | None = None) -> GraphError | SevenDayWindow:
    """The exception for ``err``. ``what`` names the call ("Minting a token through 123"), for the message."""
    text = redact_text(err.message)
    ref = _reference(err)
    if SEVEN_DAY_RE.search(err.message):
        return SevenDayWindow(f"{what}: Meta refused: {text}{ref}", system_user_id=system_user_id,
                              code=err.code, subcode=err.subcode,
                              hint="Wait until the admin system user is seven days old (tokenvault records a "
                                   "reminder), or use an older admin system user.")
    kw: dict[str, Any] = {"code": err.code, "subcode": err.subcode, "fbtrace_id": err.fbtrace_id}
    code = err.code
    if code in TOKEN_INVALID_CODES:
        detail = _SUBCODE_TEXT.get(err.subcode or 0)
        return TokenInvalid(f"{what}: the access token was refused ({detail or text}){ref}", **kw)
    if code in RATE_LIMIT_CODES:
        return RateLimited(f"{what}: rate limited by Meta: {text}{ref}",
                           retry_after=retry_after_from_headers(headers or {}), **kw)
    if code in TRANSIENT_CODES or err.is_transient or (code is None and err.status >= 500):
        return Transient(f"{what}: Meta failed temporarily: {text}{ref}", **kw)
    if code in PERMISSION_CODES:
        return PermissionMissing(f"{what}: permission missing: {text}{ref}", **kw)
    if err.status >= 500:
        return Transient(f"{what}: Meta failed (HTTP {err.status}): {text}{ref}", **kw)
    return InvalidRequest(f"{what}: Meta rejected the request: {text}{ref}", **kw,
                          hint="Check the ids and scopes given; Meta's message says which parameter it refused.")


def _reference(err: MetaError) -> str:
    parts = []
    if err.code is not None:
        parts.append(f"code {err.code}" + (f"/{err.subcode}" if err.subcode is not None else ""))
    if err.fbtrace_id:
        parts.append(f"fbtrace {err.fbtrace_id}")
    return f" [{', '.join(parts)}]" if parts else ""


def is_retryable(exc: BaseException) -> bool:
    """Whether the adapter may try the same call again (bounded)."""
    return isinstance(exc, Transient | RateLimited)


__all__ = ["MetaError", "app_usage", "classify", "is_retryable", "parse_error", "retry_after_from_headers"]
