"""The Graph endpoints. Each handler acts on the :class:`~.state.SimState` under its lock and returns a JSON
payload or raises :class:`~.wire.GraphFailure`; :mod:`.router` dispatches to them."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from . import wire
from .auth import Caller, app_of_app_token, authenticate, check_client, check_token
from .invalidation import invalidated_failure
from .state import SimState
from .wire import Call, GraphFailure
from .world import KNOWN_SCOPES, ROLES, SEVEN_DAYS, MintedToken, SimSystemUser, meta_time, unix

Payload = dict[str, Any]
# SystemUser.Field of Meta's Business SDK; a field the simulator has no value for is left out, as Meta leaves
# out empty fields.
SU_FIELDS = frozenset({"id", "name", "role", "system_user_id", "created_by", "created_time", "finance_permission",
                       "ip_permission"})
PHONE_FIELDS = frozenset({"id", "display_phone_number", "verified_name", "quality_rating", "code_verification_status",
                          "platform_type"})
DEFAULT_PHONE_FIELDS = ("id", "display_phone_number", "verified_name", "quality_rating")


def resolve_me(segment: str, caller: Caller) -> str:
    if segment != "me":
        return segment
    return caller.system_user.id if caller.system_user else caller.app.id


def _fields(call: Call, default: Sequence[str], allowed: frozenset[str], node_type: str) -> list[str]:
    raw = call.params.get("fields", "")
    fields = [f.strip() for f in raw.split(",") if f.strip()] or list(default)
    for name in fields:
        if name not in allowed:
            raise wire.nonexisting_field(name, node_type)
    return fields


def _same_business(caller: Caller, business_id: str) -> bool:
    return caller.business_id == business_id


def _acts_on(caller: Caller, su: SimSystemUser) -> None:
    """The caller may act on ``su``: same business, and an EMPLOYEE only on itself."""
    if caller.system_user is None or caller.system_user.business_id != su.business_id:
        raise wire.permission()
    if caller.system_user.role != "ADMIN" and caller.system_user.id != su.id:
        raise wire.permission("(#200) Only an admin can manage other system users of the business")


def _needs_business_management(sim: SimState, caller: Caller) -> None:
    if sim.require_business_management and "business_management" not in caller.scopes:
        raise wire.permission("(#200) Requires business_management permission to manage the object")


# ----- nodes --------------------------------------------------------------------------------------------------

def node(sim: SimState, call: Call, caller: Caller, node_id: str) -> Payload:
    world = sim.world
    if call.method != "GET":
        raise wire.unsupported(call.method, node_id)
    if node_id in world.system_users:
        su = world.system_users[node_id]
        if not _same_business(caller, su.business_id):
            raise wire.unsupported(call.method, node_id)
        fields = _fields(call, ("id", "name"), SU_FIELDS, "SystemUser")
        values: Payload = {"id": su.id, "name": su.name, "role": su.role, "system_user_id": _int_id(su.id)}
        if sim.created_time_on_node:
            values["created_time"] = meta_time(su.created_time)
        return {f: values[f] for f in fields if f in values}
    if node_id in world.phones:
        return _phone(sim, call, caller, node_id)
    if node_id in world.wabas:
        waba = world.wabas[node_id]
        _reaches_waba(sim, caller, waba.id)
        fields = _fields(call, ("id", "name"), frozenset({"id", "name"}), "WhatsAppBusinessAccount")
        return {f: {"id": waba.id, "name": waba.name}[f] for f in fields}
    if node_id in world.businesses:
        biz = world.businesses[node_id]
        if not _same_business(caller, biz.id):
            raise wire.unsupported(call.method, node_id)
        fields = _fields(call, ("id", "name"), frozenset({"id", "name"}), "Business")
        return {f: {"id": biz.id, "name": biz.name}[f] for f in fields}
    if node_id in world.apps:
        app = world.apps[node_id]
        fields = _fields(call, ("id", "name"), frozenset({"id", "name"}), "Application")
        return {f: {"id": app.id, "name": app.name}[f] for f in fields}
    raise wire.unsupported(call.method, node_id)


def _int_id(value: str) -> int | str:
    """``system_user_id`` is an int in the SDK's field types."""
    return int(value) if value.isdigit() else value


def _reaches_waba(sim: SimState, caller: Caller, waba_id: str) -> None:
    if caller.token is None:
        raise wire.permission()
    reach, _ = sim.world.reach(caller.token)
    if waba_id not in reach:
        raise wire.permission()
    if "whatsapp_business_management" not in caller.scopes:
        raise wire.permission("(#200) Requires whatsapp_business_management permission to manage the object")


def _phone(sim: SimState, call: Call, caller: Caller, phone_id: str) -> Payload:
    phone = sim.world.phones[phone_id]
    _reaches_waba(sim, caller, phone.waba_id)
    fields = _fields(call, DEFAULT_PHONE_FIELDS, PHONE_FIELDS, "WhatsAppBusinessPhoneNumber")
    values: Payload = {"id": phone.id, "display_phone_number": phone.display_phone_number,
                       "verified_name": phone.verified_name, "quality_rating": phone.quality_rating,
                       "code_verification_status": "VERIFIED", "platform_type": "CLOUD_API"}
    return {f: values[f] for f in fields}


# ----- edges --------------------------------------------------------------------------------------------------

def edge(sim: SimState, call: Call, caller: Caller, node_id: str, name: str) -> Payload:
    world = sim.world
    if node_id in world.businesses and name == "system_users":
        if call.method == "GET":
            return list_system_users(sim, call, caller, node_id)
        if call.method == "POST":
            return create_system_user(sim, call, caller, node_id)
    elif node_id in world.system_users and name == "applications" and call.method == "POST":
        return install_app(sim, call, caller, world.system_users[node_id])
    elif node_id in world.system_users and name == "access_tokens" and call.method == "POST":
        return mint(sim, call, world.system_users[node_id])
    elif node_id in world.wabas and name == "phone_numbers" and call.method == "GET":
        _reaches_waba(sim, caller, node_id)
        fields = _fields(call, DEFAULT_PHONE_FIELDS, PHONE_FIELDS, "WhatsAppBusinessPhoneNumber")
        data = [_phone(sim, _with_fields(call, fields), caller, p) for p in world.wabas[node_id].phone_number_ids]
        return {"data": data}
    node_type = _node_type(sim, node_id)
    if node_type is None or call.method != "GET":
        raise wire.unsupported(call.method, node_id)
    raise wire.nonexisting_field(name, node_type)


def _with_fields(call: Call, fields: list[str]) -> Call:
    params = {**call.params, "fields": ",".join(fields)}
    return replace(call, params=params)


def _node_type(sim: SimState, node_id: str) -> str | None:
    world = sim.world
    for table, name in ((world.system_users, "SystemUser"), (world.businesses, "Business"),
                        (world.apps, "Application"), (world.wabas, "WhatsAppBusinessAccount"),
                        (world.phones, "WhatsAppBusinessPhoneNumber")):
        if node_id in table:
            return name
    return None


def _cursor(su_id: str) -> str:
    return base64.urlsafe_b64encode(f"sim:{su_id}".encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise wire.invalid_param("Invalid cursor") from None
    if not text.startswith("sim:"):
        raise wire.invalid_param("Invalid cursor")
    return text[4:]


def list_system_users(sim: SimState, call: Call, caller: Caller, business_id: str) -> Payload:
    """``GET /{business-id}/system_users``: cursor paging (``limit``, ``after``, ``before``), ``summary``."""
    if not _same_business(caller, business_id):
        raise wire.permission()
    _needs_business_management(sim, caller)
    fields = _fields(call, ("id", "name", "role"), SU_FIELDS, "SystemUser")
    if "created_time" in fields and not sim.created_time_in_list:
        if sim.created_time_in_list_error:
            raise wire.nonexisting_field("created_time", "SystemUser")
        fields.remove("created_time")
    users = sim.world.users_of(business_id)
    ids = [su.id for su in users]
    limit = _limit(call)
    start, end = 0, min(limit, len(users))
    if call.params.get("after"):
        anchor = _uncursor(call.params["after"])
        start = ids.index(anchor) + 1 if anchor in ids else len(ids)
        end = min(start + limit, len(users))
    elif call.params.get("before"):
        anchor = _uncursor(call.params["before"])
        end = ids.index(anchor) if anchor in ids else 0
        start = max(0, end - limit)
    page = users[start:end]
    data = []
    for su in page:
        values: Payload = {"id": su.id, "name": su.name, "role": su.role, "system_user_id": _int_id(su.id),
                           "created_time": meta_time(su.created_time)}
        data.append({f: values[f] for f in fields if f in values})
    body: Payload = {"data": data}
    if page:
        paging: Payload = {"cursors": {"before": _cursor(page[0].id), "after": _cursor(page[-1].id)}}
        if end < len(users):
            paging["next"] = _page_link(call, "after", _cursor(page[-1].id))
        if start > 0:
            paging["previous"] = _page_link(call, "before", _cursor(page[0].id))
        body["paging"] = paging
    else:
        body["paging"] = {"cursors": {}}
    if "total_count" in call.params.get("summary", ""):
        body["summary"] = {"total_count": len(users)}
    return body


def _limit(call: Call) -> int:
    raw = call.params.get("limit", "")
    if not raw:
        return 25
    try:
        value = int(raw)
    except ValueError:
        raise wire.invalid_param("Param limit must be a number") from None
    if value < 1:
        raise wire.invalid_param("Param limit must be a positive number")
    return min(value, 100)


def _page_link(call: Call, key: str, cursor: str) -> str:
    params = {k: v for k, v in call.params.items() if k not in ("after", "before")}
    params[key] = cursor
    return f"{call.base_url}{call.path}?{urlencode(params)}"


def create_system_user(sim: SimState, call: Call, caller: Caller, business_id: str) -> Payload:
    """``POST /{business-id}/system_users`` (name, role). The seven-day rule applies to a young admin caller."""
    if caller.system_user is None or caller.system_user.business_id != business_id:
        raise wire.permission()
    if caller.system_user.role != "ADMIN":
        raise wire.permission("(#200) Only an admin can create system users")
    _needs_business_management(sim, caller)
    name = call.params.get("name", "").strip()
    if not name:
        raise wire.param_required("name")
    role = call.params.get("role", "EMPLOYEE")
    if role not in ROLES:
        raise wire.invalid_param(f"Param role must be one of {{{', '.join(ROLES)}}} - got \"{role}\"")
    if role == "ADMIN" and sim.seven_day_rule_on_create and _young_admin(sim, caller.system_user):
        raise sim.seven_day_failure()
    su_id = sim.add_system_user(business_id, name=name, role=role)
    return {"id": su_id}


def _young_admin(sim: SimState, su: SimSystemUser) -> bool:
    return su.role == "ADMIN" and su.age(sim.clock.now()) < SEVEN_DAYS


def install_app(sim: SimState, call: Call, caller: Caller, su: SimSystemUser) -> Payload:
    """``POST /{system-user-id}/applications`` business_app=APP: idempotent."""
    _acts_on(caller, su)
    app_id = _business_app(sim, call, su)
    su.installed_apps.add(app_id)
    sim.touch()
    return {"success": True}


def _business_app(sim: SimState, call: Call, su: SimSystemUser) -> str:
    app_id = call.params.get("business_app", "").strip()
    if not app_id:
        raise wire.param_required("business_app")
    app = sim.world.apps.get(app_id)
    if app is None:
        raise wire.invalid_param(f"Param business_app must be a valid app id; no app {app_id}")
    if app.business_id != su.business_id:
        raise wire.invalid_param(f"App {app_id} is not owned by business {su.business_id}, the business of "
                                 f"system user {su.id}")
    return app_id


def mint(sim: SimState, call: Call, su: SimSystemUser) -> Payload:
    """``POST /{system-user-id}/access_tokens``: appsecret_proof is required here whatever the app setting.

    Checks, in order: caller token and proof; same business (an EMPLOYEE only for itself); business_app;
    scope; app installed; the seven-day rule (only with ``mint_requires_old_admin``); the business's
    expiring-token requirement.
    """
    caller = authenticate(sim.world, call, sim.clock.now(), proof_required=True)
    _acts_on(caller, su)
    app_id = _business_app(sim, call, su)
    scopes = _scopes(call.params.get("scope", ""))
    if not scopes:
        raise wire.param_required("scope")
    for scope in scopes:
        if scope not in KNOWN_SCOPES:
            raise wire.invalid_scope(scope)
    if app_id not in su.installed_apps:
        raise wire.invalid_param(f"The app {app_id} is not installed for system user {su.id}; install it first "
                                 "with POST /{system-user-id}/applications")
    if sim.mint_requires_old_admin and _young_admin(sim, su):
        raise sim.seven_day_failure()  # the seed's reading; Meta is not known to refuse this (off by default)
    expiring = _flag(call, "set_token_expires_in_60_days")
    if not expiring and sim.world.businesses[su.business_id].requires_expiring_tokens:
        raise wire.invalid_param("This business requires expiring tokens: set set_token_expires_in_60_days=true")
    record = sim.create_token(app_id, su.id, scopes, expiring=expiring, via="access_tokens")
    return {"access_token": record.value}


def _scopes(raw: str) -> tuple[str, ...]:
    """``scope``: comma-separated ([TOK]), or the JSON list Meta's SDK sends for a ``list<string>`` param."""
    return tuple(dict.fromkeys(wire.string_list("scope", raw)))


def _flag(call: Call, name: str) -> bool:
    raw = call.params.get(name, "").strip().lower()
    if raw in ("", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise wire.invalid_param(f"Param {name} must be a boolean")


# ----- debug_token and /oauth ---------------------------------------------------------------------------------

def debug_token(sim: SimState, call: Call) -> Payload:
    """``GET /debug_token``: the truth about ``input_token``, for the app of ``access_token``."""
    now = sim.clock.now()
    caller = authenticate(sim.world, call, now)
    value = call.params.get("input_token", "")
    if not value:
        raise wire.param_required("input_token")
    if "|" in value:
        try:
            app = app_of_app_token(sim.world, value)
        except GraphFailure as exc:
            return {"data": {"error": {"code": 190, "message": exc.message}, "is_valid": False, "scopes": []}}
        assert app is not None
        _same_app(app.id, caller.app.id)
        return {"data": {"app_id": app.id, "type": "APP", "application": app.name, "is_valid": True, "scopes": []}}
    record = sim.world.tokens.get(value)
    if record is None:
        error = wire.invalid_token()
        return {"data": {"error": {"code": 190, "message": error.message, "subcode": error.subcode},
                         "is_valid": False, "scopes": []}}
    _same_app(record.app_id, caller.app.id)
    return {"data": _describe(sim, record, now)}


def _same_app(token_app: str, viewer_app: str) -> None:
    if token_app != viewer_app:
        raise wire.invalid_param("The App_id in the input_token did not match the Viewing App")


def _describe(sim: SimState, record: MintedToken, now: Any) -> Payload:
    app = sim.world.apps[record.app_id]
    expires = record.expires_at
    data: Payload = {"app_id": app.id}
    if sim.debug_token_type is not None:
        data["type"] = sim.debug_token_type
    data["application"] = app.name
    data["data_access_expires_at"] = unix(expires) if expires else 0
    if expires is not None:
        data["expires_at"] = unix(expires)
    elif sim.never_expires_as == "zero":
        data["expires_at"] = 0
    state = record.state(now)
    data["is_valid"] = state == "valid"
    data["issued_at"] = unix(record.issued_at)
    data["scopes"] = list(record.scopes)
    data["granular_scopes"] = _granular(sim, record)
    data["user_id"] = record.system_user_id
    if state != "valid":
        error = (invalidated_failure(record.invalidated_subcode) if state == "revoked"
                 else wire.expired_token(expires or now, now))
        data["error"] = {"code": 190, "message": error.message, "subcode": error.subcode}
    return data


def _granular(sim: SimState, record: MintedToken) -> list[Payload]:
    reach, restricted = sim.world.reach(record)
    out: list[Payload] = []
    for scope in record.scopes:
        entry: Payload = {"scope": scope}
        if scope.startswith("whatsapp_business"):
            if restricted or sim.target_ids_when_unrestricted:
                entry["target_ids"] = reach
        elif scope == "business_management":
            entry["target_ids"] = [record.business_id]
        out.append(entry)
    return out


def oauth_access_token(sim: SimState, call: Call) -> Payload:
    """``/oauth/access_token``: ``fb_exchange_token`` (refresh of an expiring token) or ``client_credentials``."""
    now = sim.clock.now()
    grant = call.params.get("grant_type", "")
    app = check_client(sim.world, call)
    if grant == "client_credentials":
        return {"access_token": f"{app.id}|{app.secret}", "token_type": "bearer"}
    if grant != "fb_exchange_token":
        raise wire.invalid_param(f"Unsupported grant_type {grant!r}" if grant else "Missing grant_type parameter")
    record = _app_token_param(sim, call, "fb_exchange_token", app.id, now, "exchange")
    if not record.expiring:
        raise wire.invalid_param("Only expiring (60-day) tokens can be refreshed; this token never expires")
    fresh = sim.create_token(record.app_id, record.system_user_id, record.scopes, expiring=True,
                             waba_ids=record.waba_ids, via="fb_exchange_token")
    expires = fresh.expires_at
    assert expires is not None
    return {"access_token": fresh.value, "token_type": "bearer", "expires_in": int((expires - now).total_seconds())}


def _app_token_param(sim: SimState, call: Call, param: str, app_id: str, now: datetime,
                     verb: str) -> MintedToken:
    """The working token named by ``param`` (required), which must belong to app ``app_id``."""
    value = call.params.get(param, "")
    if not value:
        raise wire.param_required(param)
    record = check_token(sim.world, value, now)
    if record.app_id != app_id:
        raise wire.invalid_param(f"The token to {verb} does not belong to app {app_id}")
    return record


def oauth_revoke(sim: SimState, call: Call) -> Payload:
    """``GET /oauth/revoke``: client_id/secret, the caller's token and ``revoke_token`` all of one app."""
    now = sim.clock.now()
    app = check_client(sim.world, call)
    caller = authenticate(sim.world, call, now)
    if caller.app.id != app.id:
        raise wire.invalid_param(f"The access_token does not belong to app {app.id}")
    record = _app_token_param(sim, call, "revoke_token", app.id, now, "revoke")
    record.revoked_at = now
    sim.touch()
    return {"success": sim.revoke_success_value}
