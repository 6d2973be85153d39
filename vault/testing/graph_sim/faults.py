"""Injected failures: what each fault kind looks like on the wire."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .wire import GraphFailure, WireResponse

FAULT_KINDS: frozenset[str] = frozenset({
    "http500", "http503", "timeout", "code1", "code2", "code4", "code17", "code80008", "code190", "code200",
    "code10", "code3", "code613", "code100",
})


@dataclass
class PendingFault:
    """``remaining`` more requests whose path contains ``path_contains`` fail with ``kind``."""

    kind: str
    remaining: int
    path_contains: str = ""

    def matches(self, path: str, route: str) -> bool:
        return not self.path_contains or self.path_contains in path or self.path_contains in route


def check_kind(kind: str) -> str:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of: {', '.join(sorted(FAULT_KINDS))}")
    return kind


def app_usage(call_count: int) -> str:
    pct = max(0, min(100, call_count))
    return json.dumps({"call_count": pct, "total_cputime": pct // 4, "total_time": pct // 2}, separators=(",", ":"))


def buc_usage(object_id: str, call_count: int, regain_minutes: int) -> str:
    pct = max(0, min(100, call_count))
    entry = {"type": "whatsapp_business_management", "call_count": pct, "total_cputime": pct // 4,
             "total_time": pct // 2, "estimated_time_to_regain_access": regain_minutes}
    return json.dumps({object_id: [entry]}, separators=(",", ":"))


def fault(kind: str, *, buc_object: str | None, regain_minutes: int) -> WireResponse | GraphFailure:
    """The response for an injected fault of ``kind``: a raw response, or a Graph error to render."""
    if kind == "timeout":
        return WireResponse(0, drop=True)
    if kind in ("http500", "http503"):
        status, text = (500, "Internal Server Error") if kind == "http500" else (503, "Service Unavailable")
        html = f"<html><head><title>{status} {text}</title></head><body><h1>{text}</h1></body></html>"
        return WireResponse(status, {"content-type": "text/html; charset=utf-8"}, html.encode())
    limit_headers = {"x-app-usage": app_usage(100)}
    if kind == "code1":
        return GraphFailure(1, "An unknown error occurred", status=500, transient=True)
    if kind == "code2":
        return GraphFailure(2, "An unexpected error has occurred. Please retry your request later.", transient=True)
    if kind == "code4":
        if buc_object:
            limit_headers["x-business-use-case-usage"] = buc_usage(buc_object, 100, regain_minutes)
        return GraphFailure(4, "(#4) Application request limit reached", transient=True, headers=limit_headers)
    if kind == "code17":
        return GraphFailure(17, "(#17) User request limit reached", subcode=2446079, transient=True)
    if kind == "code613":
        return GraphFailure(613, "(#613) Calls to this api have exceeded the rate limit.", subcode=1487742,
                            transient=True)
    if kind == "code80008":
        buc = {"x-business-use-case-usage": buc_usage(buc_object or "0", 100, regain_minutes)}
        return GraphFailure(
            80008, "(#80008) There have been too many calls to this WhatsApp Business account. Wait a bit and try "
                   "again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/"
                   "rate-limiting.", transient=True, headers=buc)
    if kind == "code190":
        return GraphFailure(190, "Error validating access token: The session is invalid.", subcode=467)
    if kind == "code200":
        return GraphFailure(200, "(#200) Permissions error")
    if kind == "code10":
        return GraphFailure(10, "(#10) Application does not have permission for this action")
    if kind == "code3":
        return GraphFailure(3, "(#3) Application does not have the capability to make this API call.")
    if kind == "code100":
        return GraphFailure(100, "(#100) Invalid parameter")
    raise ValueError(f"unknown fault kind {kind!r}")
