"""The GraphApi port over httpx: the production path, also used against the simulator.

* The HTTP client is injected (``httpx.Client(transport=simulator.transport())`` in tests); without
  one a client with explicit timeouts is built.
* Every call that carries a token sends ``appsecret_proof`` = HMAC-SHA256(app secret, that token).
* The caller's token travels in the ``Authorization`` header, never in a URL. The few values Meta
  documents as query parameters (``input_token``, ``revoke_token``, ``client_secret``,
  ``fb_exchange_token``) are redacted from every log line: ours and httpx's own (a filter on the
  ``httpx`` logger rewrites them).
* Errors go through the one table in :mod:`meta_tokenvault.graph_errors`. Transient failures and rate limits
  are retried with exponential backoff and full jitter, bounded by ``max_attempts`` and ``max_wait``;
  a rate limit pauses every thread of this adapter (one gate), so bulk work does not stampede.
* Rate limits are also kept proactively: with ``rate_limit=(calls, seconds)`` (the app's limit,
  ``TOKENVAULT_GRAPH_RATE_LIMIT``) every thread takes its turn from one :class:`RatePacer`, so Meta's
  limit is not reached (a refusal that still comes without a wait from Meta widens the pacer's margin and
  delays that call only, until the margin is at its widest: then the gate closes as usual); without it,
  a response whose ``X-App-Usage`` says the app is at 100% closes the gate briefly instead of sending
  calls Meta is about to refuse.
* Minting is not idempotent at Meta: a mint whose answer was lost (read timeout, or the connection
  broken after the request was sent) is *not* retried,
  because a second token would be minted and the first one would live at Meta unseen; the error
  says so.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ..errors import GraphError, InvalidRequest, RateLimited, Transient
from ..graph_errors import app_usage, classify, is_retryable, parse_error
from ..ports.graph import AppCredentials, RefreshedToken, SystemUserInfo, TokenDebugInfo, WabaAssignment
from ..redact import redact_text
from ..types import Secret
from .graph_wire import HttpxSender, SendFailed, StdlibSender, build_httpx_client, stdlib_sender_for

if TYPE_CHECKING:
    import httpx

    from ..ports.clock import Clock

log = logging.getLogger("tokenvault.graph")
Sender = HttpxSender | StdlibSender

SECRET_PARAMS = ("access_token", "input_token", "revoke_token", "client_secret", "fb_exchange_token",
                 "appsecret_proof")
_SECRET_PARAM_RE = re.compile("((?:" + "|".join(SECRET_PARAMS) + r")=)[^&\s\"']+")
USER_AGENT = "tokenvault/0.1 (+https://pypi.org/project/tokenvault/)"
WHATSAPP_FIELDS = "id,display_phone_number,verified_name,quality_rating"


def redact_url(text: str) -> str:
    """``text`` with the value of every secret-bearing query parameter replaced."""
    return _SECRET_PARAM_RE.sub(r"\1<redacted>", redact_text(text))


class _RedactingFilter(logging.Filter):
    """Rewrites httpx's "HTTP Request: GET <url> ..." records so no query-string secret is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(redact_url(str(a)) if not isinstance(a, int | float) else a for a in args)
        record.msg = redact_url(str(record.msg))
        return True


_filter_lock = threading.Lock()
_filter_installed = False


def install_log_redaction() -> None:
    """Attach the redacting filter to httpx's and httpcore's loggers (idempotent)."""
    global _filter_installed
    with _filter_lock:
        if _filter_installed:
            return
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).addFilter(_RedactingFilter())
        _filter_installed = True


def appsecret_proof(app_secret: Secret, access_token: Secret) -> str:
    """Meta's proof: HMAC-SHA256 keyed with the app secret over the token sent in the same call."""
    return hmac.new(app_secret.reveal().encode(), access_token.reveal().encode(), hashlib.sha256).hexdigest()


def parse_meta_time(value: object) -> datetime | None:
    """Meta's times: ``2026-01-01T00:00:00+0000`` (Graph), ISO 8601, or epoch seconds; 0/None → None."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC) if value > 0 else None
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        return parse_meta_time(int(text))
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
        try:
            return datetime.strptime(text, fmt).astimezone(UTC)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


class RateGate:
    """Shared pause: when Meta says "rate limited", every caller of this adapter waits until ``open_at``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._open_at = 0.0
        self._clock = clock

    def close_for(self, seconds: float) -> None:
        with self._lock:
            self._open_at = max(self._open_at, self._clock() + seconds)

    def wait_time(self) -> float:
        with self._lock:
            return max(0.0, self._open_at - self._clock())


class RatePacer:
    """Client-side pacing: at most ``calls`` requests in any ``per_seconds`` (a sliding window, the way Meta
    counts), shared by every thread of an adapter.

    Each request is given the next free slot, first come first served, and its thread sleeps until then;
    nobody is refused. The window is stretched by ``margin`` (2%, at least 10 ms) because Meta counts a call
    when it arrives, and arrivals jitter by a few milliseconds around the moments they were sent; each
    refusal that still comes (:meth:`refused`) stretches it by another half percent, up to 10%.
    """

    MAX_MARGIN = 0.10
    STEP = 0.005

    def __init__(self, calls: int, per_seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 margin: float = 0.02) -> None:
        if calls < 1 or per_seconds <= 0:
            raise ValueError("a rate limit is at least 1 call in a positive number of seconds")
        self.calls = calls
        self.per_seconds = per_seconds
        self.margin = margin
        self._window = per_seconds + max(per_seconds * margin, 0.01)
        self._slots: deque[float] = deque(maxlen=calls)  # the last `calls` slots given, oldest first
        self._lock = threading.Lock()
        self._clock = clock
        self.waited = 0.0  # seconds callers were told to wait, in all (for reports)

    def reserve(self) -> float:
        """Take the next slot; returns how long to wait before sending (0: now)."""
        with self._lock:
            now = self._clock()
            slot = now
            if self._slots:
                slot = max(slot, self._slots[-1])  # in order
                if len(self._slots) == self.calls:
                    slot = max(slot, self._slots[0] + self._window)  # `calls` slots back is out of the window
            self._slots.append(slot)
            wait = slot - now
            self.waited += wait
            return wait

    def refused(self) -> bool:
        """Meta refused a call for the rate limit anyway (jitter, or other clients of the app): widen the margin.
        False once it is as wide as it goes: the refusals are not jitter, the caller should back off."""
        with self._lock:
            if self.margin >= self.MAX_MARGIN - 1e-9:
                return False
            self.margin = min(self.MAX_MARGIN, self.margin + self.STEP)
            self._window = self.per_seconds + max(self.per_seconds * self.margin, 0.01)
            return True

    def __repr__(self) -> str:
        return f"RatePacer({self.calls} calls / {self.per_seconds:g} s)"


class HttpxGraphApi:
    """:class:`~meta_tokenvault.ports.graph.GraphApi` over an httpx client. Thread-safe (httpx.Client is)."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        base_url: str = "https://graph.facebook.com",
        version: str = "v24.0",
        clock: Clock | None = None,
        timeout: float = 15.0,
        max_attempts: int = 5,
        max_wait: float = 120.0,
        base_delay: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        install_log_redaction()
        self.base_url = base_url.rstrip("/")
        # Injected client: httpx (tests, the simulator's transport). Else http.client when the plain case holds
        # (graph_wire.stdlib_sender_for: no proxy, an http(s) address), else the httpx client built here.
        self.sender: Sender = (HttpxSender(client, owned=False) if client is not None
                               else stdlib_sender_for(self.base_url, timeout=timeout, user_agent=USER_AGENT)
                               or HttpxSender(build_httpx_client(timeout, USER_AGENT), owned=True))
        self.version = version.strip("/")
        self.clock = clock
        self.max_attempts = max(1, max_attempts)
        self.max_wait = max_wait
        self.base_delay = base_delay
        self._sleep = sleep
        self._rng = rng
        self.gate = RateGate()
        self.pacer = RatePacer(*rate_limit) if rate_limit is not None else None
        self.last_app_usage: float | None = None
        self.attempts = 0  # every HTTP attempt made (for reports and tests)
        self.retries = 0
        self.rate_limited = 0  # answers that said "rate limited" (each retried, or raised)

    def __repr__(self) -> str:
        return f"HttpxGraphApi({self.base_url}/{self.version})"

    def close(self) -> None:
        self.sender.close()

    # ------------------------------------------------------------------ the port
    def list_system_users(self, business_id: str, app: AppCredentials, access_token: Secret) -> list[SystemUserInfo]:
        """Every system user of the business, following cursor paging; ``created_time`` when the list has it."""
        out: list[SystemUserInfo] = []
        params = {"fields": "id,name,role,created_time", "limit": "100"}
        for node in self._nodes(f"{business_id}/system_users", f"Listing system users of {business_id}", params,
                                access_token, app, max_pages=1000):  # 100,000 system users: far beyond Meta's cap
            out.append(SystemUserInfo(
                id=str(node["id"]), name=str(node.get("name") or node["id"]),
                role=str(node.get("role") or "EMPLOYEE").upper(),
                created_time=parse_meta_time(node.get("created_time"))))
        return out

    def system_user_created_time(self, system_user_id: str, app: AppCredentials,
                                 access_token: Secret) -> datetime | None:
        """``created_time`` of the system-user node, or ``None`` when Meta does not say."""
        try:
            body = self._call("GET", system_user_id, what=f"Reading system user {system_user_id}",
                              params={"fields": "id,name,created_time"}, token=access_token, app=app)
        except InvalidRequest:
            return None  # the field may be refused for this caller: fall back to "first seen"
        return parse_meta_time(body.get("created_time"))

    def install_app(self, system_user_id: str, app: AppCredentials, access_token: Secret) -> None:
        body = self._call("POST", f"{system_user_id}/applications",
                          what=f"Installing app {app.app_id} for system user {system_user_id}",
                          form={"business_app": app.app_id}, token=access_token, app=app)
        if not _truthy(body.get("success", body.get("result", True))):
            raise InvalidRequest(f"Meta did not install app {app.app_id} for system user {system_user_id}.",
                                 hint="Install the app for the system user in Business Settings > System users.")

    def generate_token(self, system_user_id: str, app: AppCredentials, access_token: Secret,
                       scopes: tuple[str, ...], *, expiring: bool = False) -> Secret:
        """Mint a system-user token (never-expiring unless ``expiring``). Not retried after a lost answer."""
        form = {"business_app": app.app_id, "scope": ",".join(scopes)}
        if expiring:
            form["set_token_expires_in_60_days"] = "true"
        body = self._call("POST", f"{system_user_id}/access_tokens",
                          what=f"Minting a token through system user {system_user_id}",
                          form=form, token=access_token, app=app, idempotent=False, system_user_id=system_user_id)
        value = body.get("access_token")
        if not isinstance(value, str) or not value.strip():
            raise InvalidRequest(f"Meta answered the mint through {system_user_id} without a token.",
                                 hint="Retry; if it persists, generate the token in Business Settings and import it.")
        return Secret(value.strip())

    def debug_token(self, token: Secret, app: AppCredentials) -> TokenDebugInfo:
        """What Meta says of ``token``, asked with the app access token (``app_id|app_secret``)."""
        app_token = Secret(f"{app.app_id}|{app.app_secret.reveal()}")
        body = self._call("GET", "debug_token", what="Checking a token with debug_token",
                          params={"input_token": token.reveal()}, token=app_token, app=None)
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise InvalidRequest("debug_token answered without data.", hint="Retry later.")
        return _debug_info(data)

    def revoke_token(self, token: Secret, app: AppCredentials, caller_token: Secret) -> None:
        """Revoke ``token`` (Meta's documented GET /oauth/revoke); ``caller_token`` identifies the caller."""
        body = self._call("GET", "oauth/revoke", what="Revoking a token",
                          params={"client_id": app.app_id, "client_secret": app.app_secret.reveal(),
                                  "revoke_token": token.reveal()},
                          token=caller_token, app=app)
        if not _truthy(body.get("success", True)):
            raise InvalidRequest("Meta did not confirm the revocation.",
                                 hint="Check the token with `tokenvault token verify`; revoke it in Business Settings.")

    def refresh_token(self, token: Secret, app: AppCredentials) -> RefreshedToken:
        body = self._call("GET", "oauth/access_token", what="Refreshing an expiring token",
                          params={"grant_type": "fb_exchange_token", "client_id": app.app_id,
                                  "client_secret": app.app_secret.reveal(), "set_token_expires_in_60_days": "true",
                                  "fb_exchange_token": token.reveal()},
                          token=None, app=None, idempotent=False)
        value = body.get("access_token")
        if not isinstance(value, str) or not value:
            raise InvalidRequest("Meta answered the refresh without a token.", hint="Rotate the token instead.")
        expires = body.get("expires_in")
        return RefreshedToken(Secret(value), int(expires) if isinstance(expires, int | float) else None)

    def check_whatsapp(self, token: Secret, app: AppCredentials, phone_number_id: str) -> dict[str, object]:
        """A cheap call proving the token works for WhatsApp: read the phone number's public fields."""
        body = self._call("GET", phone_number_id, what=f"Reading WhatsApp phone number {phone_number_id}",
                          params={"fields": WHATSAPP_FIELDS}, token=token, app=app)
        return {k: body[k] for k in ("id", "display_phone_number", "verified_name", "quality_rating") if k in body}

    # ------------------------------------------------------------------ provisioning (reference §13)
    def create_system_user(self, business_id: str, name: str, role: str, app: AppCredentials,
                           access_token: Secret) -> str:
        """A new system user (``name``, ``role`` ADMIN/EMPLOYEE); its id. Not retried after a lost answer: a
        second one would be created (the caller looks it up by name instead)."""
        body = self._call("POST", f"{business_id}/system_users",
                          what=f"Creating system user {name!r} in business {business_id}",
                          form={"name": name, "role": role.upper()}, token=access_token, app=app, idempotent=False)
        su_id = body.get("id")
        if not isinstance(su_id, str | int) or isinstance(su_id, bool) or not str(su_id).strip():
            raise InvalidRequest(f"Meta answered the creation of system user {name!r} without an id.",
                                 hint="Run `tokenvault system-users sync`: the system user may exist already.")
        return str(su_id)

    def assign_waba(self, waba_id: str, system_user_id: str, tasks: tuple[str, ...], app: AppCredentials,
                    access_token: Secret) -> None:
        """Assign the WABA to the system user with ``tasks`` (a list, JSON-encoded as Meta's SDK sends it)."""
        body = self._call("POST", f"{waba_id}/assigned_users",
                          what=f"Assigning WhatsApp Business Account {waba_id} to system user {system_user_id}",
                          form={"user": system_user_id, "tasks": json.dumps(list(tasks), separators=(",", ":"))},
                          token=access_token, app=app)
        if not _truthy(body.get("success", True)):
            raise InvalidRequest(f"Meta did not assign WhatsApp Business Account {waba_id} to {system_user_id}.",
                                 hint="Assign it in Business Settings > Accounts > WhatsApp accounts.")

    def waba_assigned_users(self, waba_id: str, business_id: str, app: AppCredentials,
                            access_token: Secret) -> list[WabaAssignment]:
        params = {"business": business_id, "fields": "id,tasks", "limit": "100"}
        return [WabaAssignment(str(node["id"]), tuple(str(t) for t in _list(node.get("tasks"))))
                for node in self._nodes(f"{waba_id}/assigned_users",
                                        f"Listing the users of WhatsApp Business Account {waba_id}", params,
                                        access_token, app)]

    def assigned_wabas(self, system_user_id: str, app: AppCredentials, access_token: Secret) -> list[str]:
        params = {"fields": "id", "limit": "100"}
        return [str(node["id"]) for node in self._nodes(
            f"{system_user_id}/assigned_whatsapp_business_accounts",
            f"Listing the WhatsApp Business Accounts of system user {system_user_id}", params, access_token, app)]

    def _nodes(self, path: str, what: str, params: dict[str, str], token: Secret, app: AppCredentials, *,
               max_pages: int = 100) -> Iterator[Mapping[str, Any]]:
        """Every node (a mapping with an ``id``) of a list edge, following Meta's cursor paging (a bound on pages)."""
        for _page in range(max_pages):
            body = self._call("GET", path, what=what, params=params, token=token, app=app)
            for node in _list(body.get("data")):
                if isinstance(node, Mapping) and node.get("id"):
                    yield node
            after = _next_cursor(body)
            if after is None:
                break
            params = {**params, "after": after}

    # ------------------------------------------------------------------ transport
    def _url(self, path: str) -> str:
        return f"{self.base_url}/{self.version}/{path.lstrip('/')}"

    def _call(self, method: str, path: str, *, what: str, params: Mapping[str, str] | None = None,
              form: Mapping[str, str] | None = None, token: Secret | None, app: AppCredentials | None,
              idempotent: bool = True, system_user_id: str | None = None) -> dict[str, Any]:
        """One logical call with bounded retries. Returns the JSON object; raises a GraphError subclass."""
        headers: dict[str, str] = {}
        params = dict(params or {})
        form_data = dict(form) if form is not None else None
        if token is not None:
            headers["Authorization"] = f"Bearer {token.reveal()}"
            if app is not None:
                proof = appsecret_proof(app.app_secret, token)
                (form_data if form_data is not None else params)["appsecret_proof"] = proof
        delay = self.base_delay
        waited = 0.0
        for attempt in range(1, self.max_attempts + 1):
            pause = self.gate.wait_time()
            if pause > 0:
                if waited + pause > self.max_wait:
                    raise RateLimited(f"{what}: still rate limited by Meta after waiting {waited:.0f}s.",
                                      retry_after=pause)
                self._sleep(pause)
                waited += pause
            if self.pacer is not None:
                turn = self.pacer.reserve()
                if turn > 0:
                    self._sleep(turn)  # our turn within the app's limit: waiting is the point, not bounded
            try:
                return self._attempt(method, path, what=what, params=params, form=form_data, headers=headers,
                                     system_user_id=system_user_id, idempotent=idempotent)
            except GraphError as exc:
                absorbed = False
                if isinstance(exc, RateLimited):
                    self.rate_limited += 1
                    absorbed = self.pacer is not None and not exc.retry_after and self.pacer.refused()
                if not is_retryable(exc) or attempt == self.max_attempts:
                    raise
                if not idempotent and getattr(exc, "_answer_lost", False):
                    raise
                wait = self._backoff(exc, delay)
                if waited + wait > self.max_wait:
                    raise
                if absorbed and self.pacer is not None:
                    # Refused although we keep to the limit, most likely arrival jitter: the pacer has widened
                    # its margin; this call alone waits a little, then takes a new turn.
                    wait = min(wait, self.pacer.per_seconds * self.pacer.margin)
                    self._sleep(wait)
                    waited += wait
                elif isinstance(exc, RateLimited):
                    self.gate.close_for(wait)  # every thread of this adapter pauses; the loop's top sleeps
                else:
                    self._sleep(wait)
                    waited += wait
                delay *= 2
                self.retries += 1
                log.info("graph: %s failed (%s); retry %d/%d in %.2fs", what, type(exc).__name__, attempt,
                         self.max_attempts - 1, wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, exc: GraphError, delay: float) -> float:
        if isinstance(exc, RateLimited) and exc.retry_after:
            return exc.retry_after
        return delay * (0.5 + self._rng())  # exponential with jitter in [0.5, 1.5) x delay

    def _attempt(self, method: str, path: str, *, what: str, params: dict[str, str], form: dict[str, str] | None,
                 headers: dict[str, str], system_user_id: str | None, idempotent: bool) -> dict[str, Any]:
        self.attempts += 1
        url = self._url(path)
        if params:  # encoded here: httpx would parse (and check) the whole URL twice, once more to merge them
            url = f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
        try:
            status, answer_headers, content = self.sender.send(method, url, form, headers)
        except SendFailed as failed:
            raise self._unanswered(failed, what, idempotent) from None
        log.debug("graph: %s %s -> %d", method, path.split("?")[0], status)
        usage = app_usage(answer_headers)
        if usage is not None:
            self.last_app_usage = usage
            if usage >= 100 and self.pacer is None and status < 400:
                self.gate.close_for(self.base_delay)  # the app is at its limit: the next call would be refused
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if status < 400 and body is not None and not (isinstance(body, Mapping) and "error" in body):
            if isinstance(body, Mapping):
                return dict(body)
            return {"success": body}  # a bare ``true`` (install_app)
        err = parse_error(status, body)
        if err is None:
            if status >= 500 or status == 429:
                exc_cls: type[GraphError] = Transient if status >= 500 else RateLimited
                raise exc_cls(f"{what}: the Graph API answered HTTP {status} without an error object.")
            raise InvalidRequest(f"{what}: unexpected answer from the Graph API (HTTP {status}, not JSON).",
                                 hint="Check TOKENVAULT_GRAPH_URL points at the Graph API (or a faithful proxy).")
        raise classify(err, headers=answer_headers, what=what, system_user_id=system_user_id)

    def _unanswered(self, failed: SendFailed, what: str, idempotent: bool) -> Transient:
        """The one translation of a request that got no answer (either sender) into our exception; a lost
        answer (sent, then a timeout or a broken connection) is marked so a mint is not sent again."""
        minted = (" A token may have been minted at Meta without reaching tokenvault; "
                  "review the system user's tokens in Business Settings.") if failed.lost and not idempotent else ""
        if failed.timeout:
            exc = Transient(f"{what}: Meta did not answer in time ({failed.name})." + minted,
                            hint="Retry in a few minutes; check the network path to the Graph API.")
        elif failed.lost:
            exc = Transient(f"{what}: the connection to the Graph API at {self.base_url} broke before Meta "
                            f"answered ({failed.name})." + minted,
                            hint="Retry in a few minutes; check the network path to the Graph API.")
        else:
            exc = Transient(f"{what}: cannot reach the Graph API at {self.base_url} ({failed.name}).",
                            hint="Check network access to the Graph API (or TOKENVAULT_GRAPH_URL).")
        exc._answer_lost = failed.lost  # type: ignore[attr-defined]
        return exc


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _next_cursor(body: Mapping[str, Any]) -> str | None:
    paging = body.get("paging")
    if not isinstance(paging, Mapping) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    if isinstance(cursors, Mapping) and cursors.get("after"):
        return str(cursors["after"])
    # only a "next" URL: take its after= parameter (never follow the URL itself: it carries the token)
    match = re.search(r"[?&]after=([^&]+)", str(paging["next"]))
    return match.group(1) if match else None


def _debug_info(data: Mapping[str, Any]) -> TokenDebugInfo:
    scopes = tuple(str(s) for s in _list(data.get("scopes")))
    wabas: list[str] = []
    for grant in _list(data.get("granular_scopes")):
        if isinstance(grant, Mapping) and str(grant.get("scope", "")).startswith("whatsapp_business"):
            for target in _list(grant.get("target_ids")):
                if str(target) not in wabas:
                    wabas.append(str(target))
    error = data.get("error")
    error_message = None
    code = subcode = None
    if isinstance(error, Mapping):
        error_message = redact_text(str(error.get("message") or "invalid"))
        code, subcode = _int_or_none(error.get("code")), _int_or_none(error.get("subcode"))
    return TokenDebugInfo(
        is_valid=data.get("is_valid") is True,
        app_id=str(data["app_id"]) if data.get("app_id") not in (None, "") else None,
        user_id=str(data["user_id"]) if data.get("user_id") not in (None, "") else None,
        scopes=scopes,
        waba_ids=tuple(wabas),
        expires_at=parse_meta_time(data.get("expires_at")),
        issued_at=parse_meta_time(data.get("issued_at")),
        type=str(data["type"]) if data.get("type") else None,
        error_message=error_message,
        data_access_expires_at=parse_meta_time(data.get("data_access_expires_at")),
        error_code=code,
        error_subcode=subcode,
    )


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.strip().isdigit() else None


__all__ = ["HttpxGraphApi", "RateGate", "RatePacer", "appsecret_proof", "install_log_redaction", "parse_meta_time",
           "redact_url"]
