"""The simulator's state: the world (records), the clock, the knobs, queued faults, recorded requests,
and the operations that build the world. The bottom layer: it imports no handler, router or adapter."""

from __future__ import annotations

import random
import string
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from .auth import app_of_app_token, appsecret_proof
from .clock import SimClock, as_utc
from .faults import PendingFault, check_kind
from .invalidation import DEFAULT_SUBCODE, check_subcode
from .knobs import SEVEN_DAY_ERRORS, SEVEN_DAY_PLACEMENTS
from .wire import GraphFailure
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

_ALNUM = string.ascii_letters + string.digits


class SimState:
    """The simulated Graph world and its rules' settings: records, clock, knobs, faults, recorded requests.

    The bottom layer of the simulator: handlers act on it under ``_lock``; :class:`~.core.GraphSimulator`
    adds serving and persistence on top. Knobs are plain attributes (see :mod:`.knobs` and docs/simulator.md).
    """

    def __init__(self, *, clock: SimClock | None = None, seed: int = 0, strict: bool = True) -> None:
        self.clock: SimClock = clock if clock is not None else SimClock()
        self.seed = seed
        self.world = World()
        self.requests: list[SimRequest] = []
        self.demo: DemoWorld | None = None
        # --- knobs (see KNOBS and docs/simulator.md) ---
        self.strict: bool = strict  # only what Meta documents on the wire (version, bodies, token places)
        self.created_time_in_list: bool = True
        self.created_time_in_list_error: bool = False
        self.created_time_on_node: bool = True
        self.mint_requires_old_admin: bool = False
        self.seven_day_rule_on_create: bool = True
        self.seven_day_error: str = "code100"
        self.seven_day_placement: str = "message"
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

    def add_young_business(self, business_id: str, app_id: str, app_secret: str, waba_id: str, *, name: str,
                           slug: str, admin_age: timedelta = timedelta(days=2)) -> tuple[str, str]:
        """A business as a newcomer has it: its app, one WABA and one admin system user ``admin_age`` old (its
        only admin, so Meta's seven-day rule holds back a second one), with a token of that admin's
        (``business_management`` and the WhatsApp scopes). Names come from ``name`` ("NewCo WABA") and ``slug``
        ("newco-app", "newco_first_admin"). Returns (the admin's id, its token)."""
        self.add_business(business_id, name)
        self.add_app(app_id, app_secret, business_id, name=f"{slug}-app")
        self.add_waba(business_id, waba_id, name=f"{name} WABA")
        admin = self.add_system_user(business_id, name=f"{slug}_first_admin", role="ADMIN",
                                     created_time=self.clock.now() - admin_age, installed_apps=[app_id])
        return admin, self.issue_token(app_id, admin, ("business_management", *WHATSAPP_SCOPES))

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

    def assign_waba(self, system_user_id: str, waba_id: str, tasks: Iterable[str] = ("MANAGE",)) -> None:
        """Give the system user access to a WABA (what an EMPLOYEE needs; an ADMIN sees all WABAs) with ``tasks``
        (as ``POST /{waba-id}/assigned_users`` does: a second assignment replaces the tasks)."""
        with self._lock:
            su = self.system_user(system_user_id)
            waba = self.world.wabas.get(waba_id)
            if waba is None or waba.business_id != su.business_id:
                raise ValueError(f"WABA {waba_id} is not a WABA of business {su.business_id}")
            su.waba_ids.add(waba_id)
            su.waba_tasks[waba_id] = list(tasks)
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

    def invalidate(self, token: str, subcode: int = DEFAULT_SUBCODE) -> None:
        """Meta invalidates ``token`` out of band (after a leak, a password or session reset): every later use
        answers 190 with ``subcode`` (460, 467...), debug_token says ``is_valid: false`` with that error."""
        check_subcode(subcode)
        with self._lock:
            record = self.token(token)
            record.revoked_at = self.clock.now()
            record.invalidated_subcode = subcode
            self.touch()

    def appsecret_proof(self, token: str) -> str:
        """The proof for ``token`` (a helper for tests): HMAC-SHA256 with its app's secret."""
        with self._lock:
            return appsecret_proof(self._app(self.token(token).app_id).secret, token)

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
        """Meta's seven-day refusal: its code per ``seven_day_error``, its text where ``seven_day_placement`` says.

        In ``message`` (the community report), or in ``error_user_title`` / ``error_user_msg`` with ``message`` a
        generic "Invalid parameter" (§13). The text is always Meta's; the other user field's text is ours.
        """
        codes = {"code100": (100, 400), "code200": (200, 400), "code1": (1, 500)}
        if self.seven_day_error not in codes:
            raise ValueError(f"seven_day_error must be one of {SEVEN_DAY_ERRORS}, not {self.seven_day_error!r}")
        code, status = codes[self.seven_day_error]
        placement = self.seven_day_placement
        if placement == "message":
            return GraphFailure(code, SEVEN_DAY_MESSAGE, status=status, transient=False)
        if placement == "error_user_title":
            return GraphFailure(code, "Invalid parameter", status=status, transient=False,
                                user_title=SEVEN_DAY_MESSAGE, user_msg="Try again later.")
        if placement == "error_user_msg":
            return GraphFailure(code, "Invalid parameter", status=status, transient=False,
                                user_title="Cannot create system user", user_msg=SEVEN_DAY_MESSAGE)
        raise ValueError(f"seven_day_placement must be one of {SEVEN_DAY_PLACEMENTS}, not {placement!r}")

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
