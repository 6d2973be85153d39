"""GraphSimulator: an in-memory Meta Graph API built from docs/graph-api.md (the reference we speak)."""

from __future__ import annotations

import hashlib
import random
import string
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from os import PathLike
from typing import TYPE_CHECKING, Any

from . import faults, handlers
from .auth import app_of_app_token
from .clock import SimClock, as_utc
from .faults import PendingFault, app_usage, buc_usage, check_kind
from .wire import Call, GraphFailure, WireRequest, WireResponse, parse_call
from .world import (
    KNOWN_SCOPES,
    ROLES,
    SEVEN_DAY_MESSAGE,
    WHATSAPP_SCOPES,
    DemoWorld,
    MintedToken,
    SimApp,
    SimBusiness,
    SimPhoneNumber,
    SimRequest,
    SimSystemUser,
    SimWaba,
    World,
)

if TYPE_CHECKING:
    import httpx

    from .server import SimServer

DEFAULT_VERSION = "v24.0"
SEVEN_DAY_ERRORS = ("code100", "code200", "code1")
_ALNUM = string.ascii_letters + string.digits


class GraphSimulator:
    """A faithful, thread-safe, in-memory Graph API: one lock around the state, latency slept outside it.

    Serve it as an httpx transport (:meth:`transport`) or a local HTTP server (:meth:`serve`). Knobs are
    plain attributes (see docs/simulator.md); each plays one variant of a point the reference marks
    **unconfirmed**.
    """

    def __init__(self, *, clock: SimClock | None = None, seed: int = 0) -> None:
        self.clock: SimClock = clock if clock is not None else SimClock()
        self.seed = seed
        self.world = World()
        self.requests: list[SimRequest] = []
        self.demo: DemoWorld | None = None
        # --- knobs (see KNOBS and docs/simulator.md) ---
        self.created_time_in_list: bool = True
        self.created_time_in_list_error: bool = False
        self.created_time_on_node: bool = True
        self.seven_day_rule_on_mint: bool = True
        self.seven_day_rule_on_create: bool = True
        self.seven_day_error: str = "code100"
        self.latency: float = 0.0
        self.rate_limit: tuple[int, float] | None = None
        self.fault_rate: float = 0.0
        self.fault_kind: str = "http500"
        self.fault_regain_minutes: int = 1
        self.require_business_management: bool = False
        self.target_ids_when_unrestricted: bool = True
        self.debug_token_type: str | None = "SYSTEM_USER"
        self.never_expires_as: str = "zero"
        self.revoke_via_post: bool = False
        self.revoke_success_value: str | bool = "true"
        # --- internals ---
        self._lock = threading.RLock()
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fake tokens and ids, not security
        self._fault_rng = random.Random(f"faults/{seed}")  # noqa: S311
        self._trace_rng = random.Random(f"trace/{seed}")  # noqa: S311
        self._faults: list[PendingFault] = []
        self._usage: dict[str, deque[datetime]] = {}
        self.generation = 0  # bumped by every change of state (the server saves --state when it moves)
        self.rate_limited = 0  # calls refused by ``rate_limit`` (code 4), for benchmarks and tests

    # ----- world building -------------------------------------------------------------------------------------

    def add_business(self, business_id: str, name: str = "", *, requires_expiring_tokens: bool = False) -> None:
        """A business portfolio. ``requires_expiring_tokens``: minting without the 60-day flag is refused."""
        with self._lock:
            self.world.businesses[business_id] = SimBusiness(business_id, name or f"Business {business_id}",
                                                             requires_expiring_tokens)
            self.touch()

    def add_app(self, app_id: str, app_secret: str, business_id: str, *, name: str = "tokenvault-app",
                require_appsecret_proof: bool = True) -> None:
        """An app owned by ``business_id``. Raises ValueError for an unknown business."""
        with self._lock:
            self._business(business_id)
            self.world.apps[app_id] = SimApp(app_id, app_secret, business_id, name, require_appsecret_proof)
            self.touch()

    def add_system_user(self, business_id: str, *, name: str, role: str = "ADMIN", created_time: datetime | None = None,
                        su_id: str | None = None, installed_apps: Iterable[str] = ()) -> str:
        """A system user; returns its id. ``created_time`` defaults to ``clock.now()``."""
        role = role.upper()
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {sorted(ROLES)}")
        with self._lock:
            self._business(business_id)
            if su_id is None:
                su_id = self._new_id()
            elif su_id in self.world.system_users:
                raise ValueError(f"system user {su_id} exists already")
            when = as_utc(created_time) if created_time is not None else self.clock.now()
            su = SimSystemUser(su_id, business_id, name, role, when)
            self.world.system_users[su_id] = su
            for app_id in installed_apps:
                self.install_app(su_id, app_id)
            self.touch()
            return su_id

    def install_app(self, system_user_id: str, app_id: str) -> None:
        """Install ``app_id`` for the system user (as ``POST /{su}/applications`` does)."""
        with self._lock:
            su = self.system_user(system_user_id)
            app = self._app(app_id)
            if app.business_id != su.business_id:
                raise ValueError(f"app {app_id} belongs to business {app.business_id}, not {su.business_id}")
            su.installed_apps.add(app_id)
            self.touch()

    def add_waba(self, business_id: str, waba_id: str, phone_number_ids: Iterable[str] = (), *,
                 name: str = "") -> None:
        """A WhatsApp Business Account of ``business_id`` with its phone numbers."""
        with self._lock:
            biz = self._business(business_id)
            self.world.wabas[waba_id] = SimWaba(waba_id, business_id, name or f"{biz.name} WABA")
            for phone_id in phone_number_ids:
                self.add_phone_number(waba_id, phone_id)
            self.touch()

    def add_phone_number(self, waba_id: str, phone_number_id: str, *, display_phone_number: str | None = None,
                         verified_name: str | None = None, quality_rating: str = "GREEN") -> None:
        with self._lock:
            waba = self.world.wabas.get(waba_id)
            if waba is None:
                raise ValueError(f"unknown WABA {waba_id}")
            digits = "".join(c for c in phone_number_id if c.isdigit())[-4:].rjust(4, "0")
            display = display_phone_number or f"+1 555-{digits}"
            name = verified_name or self.world.businesses[waba.business_id].name
            self.world.phones[phone_number_id] = SimPhoneNumber(phone_number_id, waba_id, display, name,
                                                                quality_rating)
            if phone_number_id not in waba.phone_number_ids:
                waba.phone_number_ids.append(phone_number_id)
            self.touch()

    def assign_waba(self, system_user_id: str, waba_id: str) -> None:
        """Give the system user access to a WABA (what an EMPLOYEE needs; an ADMIN sees all WABAs)."""
        with self._lock:
            su = self.system_user(system_user_id)
            waba = self.world.wabas.get(waba_id)
            if waba is None or waba.business_id != su.business_id:
                raise ValueError(f"WABA {waba_id} is not a WABA of business {su.business_id}")
            su.waba_ids.add(waba_id)
            self.touch()

    def issue_token(self, app_id: str, system_user_id: str, scopes: Iterable[str] = WHATSAPP_SCOPES, *,
                    waba_ids: Iterable[str] = (), expiring: bool = False) -> str:
        """A token as if generated by hand in Business Settings (installs the app for the system user).

        ``waba_ids`` restricts the token to those WABAs; empty: whatever the system user reaches.
        """
        scopes = tuple(dict.fromkeys(scopes))
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}")
        with self._lock:
            self.install_app(system_user_id, app_id)
            wabas = tuple(waba_ids)
            for waba_id in wabas:
                if waba_id not in self.world.wabas:
                    raise ValueError(f"unknown WABA {waba_id}")
            record = self.create_token(app_id, system_user_id, scopes, expiring=expiring, waba_ids=wabas,
                                       via="business_settings")
            return record.value

    # ----- faults -------------------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, *, kind: str = "http500", path_contains: str = "") -> None:
        """The next ``n`` Graph requests whose path contains ``path_contains`` fail with ``kind``.

        Queued faults apply in order, before authentication; the state does not change for a faulted request.
        """
        check_kind(kind)
        if n < 1:
            raise ValueError("n must be at least 1")
        with self._lock:
            self._faults.append(PendingFault(kind, n, path_contains))
            self.touch()

    @property
    def pending_faults(self) -> list[PendingFault]:
        with self._lock:
            return [replace(f) for f in self._faults]

    # ----- introspection --------------------------------------------------------------------------------------

    def token_state(self, token: str) -> str:
        """``valid`` | ``revoked`` | ``expired`` | ``unknown`` (by the sim clock)."""
        with self._lock:
            record = self.world.tokens.get(token)
            if record is None:
                try:
                    return "valid" if app_of_app_token(self.world, token) else "unknown"
                except GraphFailure:
                    return "unknown"
            return record.state(self.clock.now())

    @property
    def minted(self) -> list[MintedToken]:
        """Every token minted through the API (``access_tokens`` and ``fb_exchange_token``), oldest first."""
        with self._lock:
            return [t for t in self.world.tokens.values() if t.via != "business_settings"]

    @property
    def tokens(self) -> list[MintedToken]:
        """Every token the simulator knows, including those issued by hand."""
        with self._lock:
            return list(self.world.tokens.values())

    def token(self, value: str) -> MintedToken:
        with self._lock:
            try:
                return self.world.tokens[value]
            except KeyError:
                raise KeyError("unknown token") from None

    def system_user(self, system_user_id: str) -> SimSystemUser:
        with self._lock:
            try:
                return self.world.system_users[system_user_id]
            except KeyError:
                raise ValueError(f"unknown system user {system_user_id}") from None

    def revoke(self, token: str) -> None:
        """Out-of-band revocation (e.g. in Business Settings): every later use gives 190."""
        with self._lock:
            self.token(token).revoked_at = self.clock.now()
            self.touch()

    def appsecret_proof(self, token: str) -> str:
        """The proof for ``token`` (a helper for tests): HMAC-SHA256 with its app's secret."""
        from .auth import appsecret_proof

        with self._lock:
            return appsecret_proof(self._app(self.token(token).app_id).secret, token)

    # ----- serving --------------------------------------------------------------------------------------------

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport: ``httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com")``."""
        from .transport import SimTransport

        return SimTransport(self)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        from .transport import AsyncSimTransport

        return AsyncSimTransport(self)

    def serve(self, host: str = "127.0.0.1", port: int = 0, *,
              state_path: str | PathLike[str] | None = None) -> SimServer:
        """Start a local HTTP server in a background thread (already listening); close it when done.

        ``state_path``: :meth:`save` there after every request that changed the state, and on close.
        """
        from .server import SimServer

        return SimServer(self, host, port, state_path=state_path)

    def handle(self, request: WireRequest) -> WireResponse:
        """The one request-handling core used by the transport and the server."""
        if request.path == "/_sim" or request.path.startswith("/_sim/"):
            from .control import handle_control

            return handle_control(self, request)
        delay = self.latency
        if delay > 0:
            time.sleep(delay)  # outside the lock: slow requests overlap
        with self._lock:
            return self._handle_graph(request)

    # ----- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | PathLike[str]) -> None:
        """Write the whole state as JSON to ``path``: mode 0600 from creation, atomic replace."""
        import json
        from pathlib import Path

        from ...fileutil import atomic_write_private
        from .persist import dump

        with self._lock:
            data = json.dumps(dump(self), indent=1).encode()
        atomic_write_private(Path(path), data)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> GraphSimulator:
        """A simulator from a file written by :meth:`save` (clock, world, tokens, knobs, RNG state)."""
        import json
        from pathlib import Path

        from .persist import restore

        return restore(cls, json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def demo_world(cls, clock: SimClock | None = None, *, seed: int = 0) -> tuple[GraphSimulator, DemoWorld]:
        """A ready world: one business, its app, an old admin (30 days), a new admin (1 hour), an employee,
        a WABA with a phone number, and an admin token issued by hand to the old admin."""
        sim = cls(clock=clock, seed=seed)
        now = sim.clock.now()
        biz, app_id, waba, phone = "1000000000001", "2000000000002", "3000000000003", "4000000000004"
        secret = hashlib.sha256(b"tokenvault demo app secret").hexdigest()[:32]
        sim.add_business(biz, "Demo Business")
        sim.add_app(app_id, secret, biz, name="tokenvault-demo")
        sim.add_waba(biz, waba, [phone], name="Demo WABA")
        old = sim.add_system_user(biz, name="tokenvault-admin", role="ADMIN", created_time=now - timedelta(days=30),
                                  su_id="5000000000005", installed_apps=[app_id])
        new = sim.add_system_user(biz, name="tokenvault-new-admin", role="ADMIN",
                                  created_time=now - timedelta(hours=1), su_id="5000000000006",
                                  installed_apps=[app_id])
        emp = sim.add_system_user(biz, name="tokenvault-employee", role="EMPLOYEE",
                                  created_time=now - timedelta(days=30), su_id="5000000000007",
                                  installed_apps=[app_id])
        sim.assign_waba(emp, waba)
        token = sim.issue_token(app_id, old, ("business_management", *WHATSAPP_SCOPES))
        world = DemoWorld(business_id=biz, business_name="Demo Business", app_id=app_id, app_secret=secret,
                          old_admin_id=old, new_admin_id=new, employee_id=emp, waba_id=waba, phone_number_id=phone,
                          admin_token=token)
        sim.demo = world
        return sim, world

    # ----- used by the handlers (under the lock) ---------------------------------------------------------------

    def touch(self) -> None:
        self.generation += 1

    def create_token(self, app_id: str, system_user_id: str, scopes: tuple[str, ...], *, expiring: bool,
                     waba_ids: tuple[str, ...] = (), via: str) -> MintedToken:
        su = self.world.system_users[system_user_id]
        value = self._new_token_value()
        record = MintedToken(value, system_user_id, app_id, scopes, expiring, self.clock.now(),
                             business_id=su.business_id, waba_ids=waba_ids, via=via)
        self.world.tokens[value] = record
        self.touch()
        return record

    def seven_day_failure(self) -> GraphFailure:
        """Meta's seven-day refusal, shaped per ``seven_day_error`` (the text is always Meta's)."""
        variant = self.seven_day_error
        if variant == "code100":
            return GraphFailure(100, SEVEN_DAY_MESSAGE)
        if variant == "code200":
            return GraphFailure(200, SEVEN_DAY_MESSAGE)
        if variant == "code1":
            return GraphFailure(1, SEVEN_DAY_MESSAGE, status=500, transient=False)
        raise ValueError(f"seven_day_error must be one of {SEVEN_DAY_ERRORS}, not {variant!r}")

    # ----- internals ------------------------------------------------------------------------------------------

    def _business(self, business_id: str) -> SimBusiness:
        try:
            return self.world.businesses[business_id]
        except KeyError:
            raise ValueError(f"unknown business {business_id}") from None

    def _app(self, app_id: str) -> SimApp:
        try:
            return self.world.apps[app_id]
        except KeyError:
            raise ValueError(f"unknown app {app_id}") from None

    def _new_id(self) -> str:
        while True:
            candidate = str(self._rng.randrange(10**14, 10**15))
            if candidate not in self.world.system_users:
                return candidate

    def _new_token_value(self) -> str:
        while True:
            length = self._rng.randint(175, 190)
            value = "EAA" + "".join(self._rng.choices(_ALNUM, k=length))
            if value not in self.world.tokens:
                return value

    def _trace_id(self) -> str:
        return "A" + "".join(self._trace_rng.choices(_ALNUM + "-_", k=26))

    def _handle_graph(self, request: WireRequest) -> WireResponse:
        now = self.clock.now()
        trace = self._trace_id()
        body_error: GraphFailure | None = None
        try:
            call = parse_call(request)
        except GraphFailure as exc:
            call, body_error = parse_call(replace(request, body=b"")), exc
        buc = self._buc_object(call)
        kind = self._take_fault(call)
        usage: dict[str, str] = {}
        if kind is not None:
            outcome = faults.fault(kind, buc_object=buc, regain_minutes=self.fault_regain_minutes)
            response = outcome if isinstance(outcome, WireResponse) else self._error(outcome, trace, call, {})
        else:
            try:
                if body_error is not None:
                    raise body_error
                usage = self._count_usage(call, now, buc)
                payload = handlers.route(self, call)
                response = WireResponse.of_json(200, payload, {**self._headers(trace, call), **usage})
            except GraphFailure as exc:
                response = self._error(exc, trace, call, usage)
        self.requests.append(SimRequest(call.method, call.path, call.route, call.query, call.form, call.headers, now,
                                        response.status, call.token))
        return response

    def _headers(self, trace: str, call: Call) -> dict[str, str]:
        version = call.version_prefix.strip("/") or DEFAULT_VERSION
        return {"x-fb-trace-id": trace, "x-fb-request-id": trace[::-1], "facebook-api-version": version}

    def _error(self, exc: GraphFailure, trace: str, call: Call, usage: dict[str, str]) -> WireResponse:
        headers = {**self._headers(trace, call), **(usage or {"x-app-usage": app_usage(0)}), **exc.headers}
        if exc.type == "OAuthException":
            reason = "invalid_token" if exc.code == 190 else "invalid_request"
            headers["www-authenticate"] = f'OAuth "Facebook Platform" "{reason}" "{exc.message}"'
        return WireResponse.of_json(exc.status, exc.payload(trace), headers)

    def _take_fault(self, call: Call) -> str | None:
        for pending in self._faults:
            if pending.matches(call.path, call.route):
                pending.remaining -= 1
                if pending.remaining <= 0:
                    self._faults.remove(pending)
                self.touch()
                return pending.kind
        if self.fault_rate > 0 and self._fault_rng.random() < self.fault_rate:
            return check_kind(self.fault_kind)
        return None

    def _buc_object(self, call: Call) -> str | None:
        """The WABA a WhatsApp-ish path concerns (BUC rate limits are keyed by it)."""
        if not call.segments:
            return None
        first = call.segments[0]
        phone = self.world.phones.get(first)
        if phone is not None:
            return phone.waba_id
        return first if first in self.world.wabas else None

    def _app_of(self, call: Call) -> str | None:
        value = call.token
        if value:
            app_id = value.partition("|")[0] if "|" in value else None
            record = self.world.tokens.get(value)
            if record is not None:
                app_id = record.app_id
            if app_id in self.world.apps:
                return app_id
        client_id = call.params.get("client_id")
        return client_id if client_id in self.world.apps else None

    def _count_usage(self, call: Call, now: datetime, buc: str | None) -> dict[str, str]:
        """Usage headers for this call; raises code 4 when the app is over ``rate_limit`` (sim time window)."""
        app_id = self._app_of(call)
        if app_id is None or self.rate_limit is None:
            headers = {"x-app-usage": app_usage(0)}
            if buc:
                headers["x-business-use-case-usage"] = buc_usage(buc, 0, 0)
            return headers
        calls, per_seconds = self.rate_limit
        window = self._usage.setdefault(app_id, deque())
        horizon = now - timedelta(seconds=per_seconds)
        while window and window[0] <= horizon:
            window.popleft()
        if len(window) >= calls:
            wait = (window[0] + timedelta(seconds=per_seconds) - now).total_seconds()
            headers = {"x-app-usage": app_usage(100)}
            if buc:
                headers["x-business-use-case-usage"] = buc_usage(buc, 100, int(wait // 60))
            self.rate_limited += 1
            raise GraphFailure(4, "(#4) Application request limit reached", transient=True, headers=headers)
        window.append(now)
        pct = len(window) * 100 // calls
        headers = {"x-app-usage": app_usage(pct)}
        if buc:
            headers["x-business-use-case-usage"] = buc_usage(buc, pct, 0)
        return headers

    def __repr__(self) -> str:
        w = self.world
        return (f"GraphSimulator(now={self.clock.now().isoformat()}, businesses={len(w.businesses)}, "
                f"system_users={len(w.system_users)}, tokens={len(w.tokens)})")


def knob_values(sim: GraphSimulator) -> dict[str, Any]:
    return {name: getattr(sim, name) for name in KNOBS}


def set_knob(sim: GraphSimulator, name: str, value: Any) -> None:
    """Set a knob from JSON, checking its type (used by ``POST /_sim/knobs`` and by :meth:`load`)."""
    if name not in KNOBS:
        raise ValueError(f"unknown knob {name!r}; one of {sorted(KNOBS)}")
    setattr(sim, name, KNOBS[name](value))


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true/false, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"expected a number >= 0, got {value!r}")
    return float(value)


def _choice(*choices: Any) -> Any:
    def check(value: Any) -> Any:
        if value not in choices:
            raise ValueError(f"expected one of {choices}, got {value!r}")
        return value
    return check


def _rate_limit(value: Any) -> tuple[int, float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2 or int(value[0]) < 1 or float(value[1]) <= 0:
        raise ValueError(f"rate_limit must be null or [calls, per_seconds], got {value!r}")
    return int(value[0]), float(value[1])


def _fault_kind(value: Any) -> str:
    return check_kind(str(value))


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected an integer >= 0, got {value!r}")
    return value


def _optional_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string or null, got {value!r}")
    return value


def _fault_rate(value: Any) -> float:
    rate = _number(value)
    if rate > 1:
        raise ValueError("fault_rate is a probability between 0 and 1")
    return rate


KNOBS: dict[str, Any] = {
    "created_time_in_list": _bool,
    "created_time_in_list_error": _bool,
    "created_time_on_node": _bool,
    "seven_day_rule_on_mint": _bool,
    "seven_day_rule_on_create": _bool,
    "seven_day_error": _choice(*SEVEN_DAY_ERRORS),
    "latency": _number,
    "rate_limit": _rate_limit,
    "fault_rate": _fault_rate,
    "fault_kind": _fault_kind,
    "fault_regain_minutes": _int,
    "require_business_management": _bool,
    "target_ids_when_unrestricted": _bool,
    "debug_token_type": _optional_str,
    "never_expires_as": _choice("zero", "absent"),
    "revoke_via_post": _bool,
    "revoke_success_value": _choice("true", True),
}
