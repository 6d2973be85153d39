"""The wire: a neutral request/response pair shared by the httpx transport and the HTTP server,
request parsing (version prefix, params in query or body, the token's three places) and Graph errors."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

_VERSION = re.compile(r"^/v\d+(?:\.\d+)?(?=/|$)")
_STRICT_VERSION = re.compile(r"^/v\d{1,2}\.\d(?=/|$)")  # Meta's versions: v2.0 ... v24.0
JSON_TYPE = "application/json; charset=UTF-8"


@dataclass(frozen=True)
class WireRequest:
    """What arrived: ``path`` without the query string, ``query`` parsed, raw ``body``, lower-case headers."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    base_url: str  # scheme://host[:port], used to build paging links


@dataclass
class WireResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop: bool = False  # no response at all: the transport raises ReadTimeout, the server closes the socket

    @classmethod
    def of_json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> WireResponse:
        return cls(status, {"content-type": JSON_TYPE, **(headers or {})},
                   json.dumps(payload, separators=(",", ":")).encode())

    def json(self) -> Any:
        return json.loads(self.body)


class Endpoint(Protocol):
    """What the transport and the server serve: one request in, one response out (the simulator)."""

    def handle(self, request: WireRequest) -> WireResponse: ...


def parse_query(raw: str) -> dict[str, str]:
    """Single values: the last occurrence wins."""
    return dict(parse_qsl(raw, keep_blank_values=True))


class GraphFailure(Exception):
    """A Graph API error response: ``{"error": {...}}`` with an HTTP status (400, or 500 when transient/unknown)."""

    def __init__(self, code: int, message: str, *, type_: str = "OAuthException", subcode: int | None = None,
                 status: int = 400, transient: bool | None = None, user_title: str | None = None,
                 user_msg: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.type = type_
        self.subcode = subcode
        self.status = status
        self.transient = transient
        self.user_title = user_title
        self.user_msg = user_msg
        self.headers = dict(headers or {})

    def payload(self, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.transient is not None:
            error["is_transient"] = self.transient
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = fbtrace_id
        return {"error": error}


@dataclass
class Call:
    """A parsed Graph call: ``route`` is the path without the version prefix, ``params`` query + body merged."""

    method: str
    path: str
    route: str
    segments: list[str]
    query: dict[str, str]
    form: dict[str, str]
    params: dict[str, str]
    headers: dict[str, str]
    token: str | None
    base_url: str
    version_prefix: str
    refusal: GraphFailure | None = None  # what Meta refuses before routing (see parse_call)

    @property
    def proof(self) -> str | None:
        return self.params.get("appsecret_proof") or None


def parse_call(req: WireRequest, *, strict: bool = True) -> Call:
    """Split the version prefix off, merge query and body parameters, find the caller's access token.

    Never raises: what Meta would refuse before routing (a body that cannot be read; in ``strict`` mode a
    missing or malformed version segment, a JSON body) is kept in :attr:`Call.refusal` for the router.

    Strict (the default) accepts only what Meta documents: ``/vNN.N/`` first; parameters in the query string,
    and for POST also in a form-encoded body (the body of a GET is ignored); the caller's token as
    ``access_token`` (query, or a POST's form) or ``Authorization: Bearer``. Lenient also takes no or any
    ``vN[.N]`` version, JSON bodies (any method) and ``Authorization: OAuth``.
    """
    pattern = _STRICT_VERSION if strict else _VERSION
    match = pattern.match(req.path)
    prefix = match.group(0) if match else ""
    route = req.path[len(prefix):] or "/"
    refusal: GraphFailure | None = None
    if strict and not prefix:
        refusal = bad_version(req.method, req.path)
    form: dict[str, str] = {}
    if req.body and (req.method.upper() == "POST" or not strict):
        try:
            form = _parse_body(req, strict=strict)
        except GraphFailure as exc:
            refusal = refusal or exc
    params = {**req.query, **form}
    header_token = _bearer(req.headers.get("authorization", ""), strict=strict)
    token = params.get("access_token") or header_token or None
    segments = [s for s in route.split("/") if s]
    return Call(req.method.upper(), req.path, route, segments, dict(req.query), form, params, dict(req.headers),
                token, req.base_url, prefix, refusal)


def _bearer(value: str, *, strict: bool) -> str:
    scheme, _, rest = value.strip().partition(" ")
    schemes = ("bearer",) if strict else ("bearer", "oauth")
    return rest.strip() if scheme.lower() in schemes else ""


def _parse_body(req: WireRequest, *, strict: bool) -> dict[str, str]:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphFailure(100, "(#100) The request body is not valid UTF-8") from None
    if ctype == "application/json" and not strict:
        try:
            data = json.loads(text)
        except ValueError:
            raise GraphFailure(100, "(#100) The request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise GraphFailure(100, "(#100) The JSON request body must be an object")
        return {str(k): _scalar(v) for k, v in data.items()}
    if ctype in ("", "application/x-www-form-urlencoded"):
        return parse_query(text)
    raise GraphFailure(100, f"(#100) Unsupported request body content type {ctype!r}: this edge takes "
                            "application/x-www-form-urlencoded parameters")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


# ----- Meta's error shapes -------------------------------------------------------------------------------------

def token_required() -> GraphFailure:
    return GraphFailure(104, "An access token is required to request this resource.")


def invalid_token() -> GraphFailure:
    return GraphFailure(190, "Invalid OAuth access token - Cannot parse access token", subcode=467)


def revoked_token() -> GraphFailure:
    """A revoked token in use: Meta's [ERR] shape with the user-facing title and message (their texts are ours)."""
    return GraphFailure(190, "Error validating access token: The session was invalidated explicitly using an API call.",
                        subcode=467, transient=False, user_title="Session invalidated",
                        user_msg="This access token is no longer valid. Generate a new access token.")


def bad_app_token() -> GraphFailure:
    return GraphFailure(190, "Invalid OAuth access token signature.")


def proof_missing() -> GraphFailure:
    return GraphFailure(100, "API calls from the server require an appsecret_proof argument",
                        type_="GraphMethodException")


def proof_invalid() -> GraphFailure:
    return GraphFailure(100, "Invalid appsecret_proof provided in the API argument", type_="GraphMethodException")


def unsupported(method: str, object_id: str) -> GraphFailure:
    return GraphFailure(
        100,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        type_="GraphMethodException", subcode=33)


def bad_version(method: str, path: str) -> GraphFailure:
    """A path without a ``vNN.N`` version segment (strict mode; both answers are our guesses).

    A malformed version (``/v24/...``) is read as an object id, as Meta reads any first segment: unknown object.
    No version at all: Meta would serve the app's default version; a client must pin one, so strict refuses.
    """
    first = path.lstrip("/").split("/", 1)[0]
    if re.match(r"^v\d", first):
        return unsupported(method, first)
    return GraphFailure(100, "(#100) No API version in the path: call /vNN.N/... (e.g. /v24.0/); this simulator "
                             "is strict, Meta would use the app's default version", type_="GraphMethodException")


def param_required(name: str) -> GraphFailure:
    return GraphFailure(100, f"(#100) The parameter {name} is required")


def invalid_param(message: str) -> GraphFailure:
    return GraphFailure(100, f"(#100) {message}")


def string_list(name: str, raw: str) -> list[str]:
    """A ``list<string>`` parameter: the JSON array Meta's SDK sends, or comma-separated values ([TOK]'s
    ``scope``); blanks dropped. A malformed array is Meta's (#100)."""
    if raw.lstrip().startswith("["):
        try:
            parsed = json.loads(raw)
        except ValueError:
            raise invalid_param(f"Param {name} must be a comma-separated list or a JSON array") from None
        if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
            raise invalid_param(f"Param {name} must be an array of strings")
        items: list[str] = parsed
    else:
        items = raw.split(",")
    return [s.strip() for s in items if s.strip()]


def nonexisting_field(name: str, node_type: str) -> GraphFailure:
    return GraphFailure(100, f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})")


def permission(message: str = "(#200) Permissions error") -> GraphFailure:
    return GraphFailure(200, message)


def unknown_path(rest: str) -> GraphFailure:
    return GraphFailure(2500, f"Unknown path components: {rest}")


def invalid_scope(scope: str) -> GraphFailure:
    return GraphFailure(100, "Provided permission is not valid. Check your spelling and syntax.", transient=False,
                        user_title="Invalid permission", user_msg=f"Unknown permission: {scope}")


def expired_token(expired_at: datetime, now: datetime) -> GraphFailure:
    fmt = "%A, %d-%b-%y %H:%M:%S UTC"
    return GraphFailure(
        190, f"Error validating access token: Session has expired on {expired_at.strftime(fmt)}. "
             f"The current time is {now.strftime(fmt)}.", subcode=463)
