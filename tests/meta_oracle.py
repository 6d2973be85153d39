"""Meta's own spec as an oracle for the requests our Graph client sends (docs/graph-api.md, "Proven against Meta").

Record what the client puts on the wire (:class:`RecordingTransport` around any httpx transport, or
:func:`from_sim_log` on a simulator's request log), then :func:`assert_declared_by_meta`:

* a node edge (``/{id}/edge``) or node read (``/{id}``) must be declared by Meta's generated Business SDK
  (``facebook_business.adobjects``) on the class of that id — same HTTP method, same edge name, every
  parameter name in the method's ``param_types``, each value of the declared type (bool, int, enum, list),
  and every requested field in the target class's ``Field``. Which id is which comes from the simulator's
  world (businesses, system users, WABAs, apps, phone numbers).
* the endpoints the SDK lacks (``/oauth/access_token``, ``/oauth/revoke``, ``/debug_token``, the WhatsApp
  phone-number node) are pinned to tests/fixtures/meta/endpoints.json (method, parameters, required ones,
  the page that says so).
* every request names a version (``/vNN.N/``); a POST sends its parameters form-encoded in the body, as
  the SDK does; a call made with a user or system-user token carries ``appsecret_proof`` and it is
  HMAC-SHA256(key=app secret, msg=that token) (checked when the app's secret is known).

The SDK's declarations are read by asking it: each ``get_*``/``create_*``/``delete_*``/``api_get`` method is
called with ``pending=True``, which builds its ``FacebookRequest`` (method, endpoint, param types, enums,
target class) without sending anything.

Reusable: any test (provisioning, refresh, scan...) can record a run and call :func:`assert_declared_by_meta`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx

FIXTURE = Path(__file__).parent / "fixtures" / "meta" / "endpoints.json"
VERSION = re.compile(r"^/v\d+\.\d+(?=/)")

# The SDK class(es) that declare the edges of each kind of id, most specific first. A system user's own
# edges (access_tokens, applications, assigned_*) are declared on User, its node fields on SystemUser.
KIND_CLASSES: dict[str, tuple[str, ...]] = {
    "business": ("business.Business",),
    "system_user": ("systemuser.SystemUser", "user.User"),
    "waba": ("whatsappbusinessaccount.WhatsAppBusinessAccount",),
    "app": ("application.Application",),
}
# Parameters the SDK adds to every call itself rather than declaring per edge:
# access_token and appsecret_proof (facebook_business/session.py, FacebookSession), fields
# (FacebookRequest.add_fields, checked against the target's Field).
UNIVERSAL = frozenset({"access_token", "appsecret_proof", "fields"})
# and, on GET edges that return a list, the Cursor's paging parameters (facebook_business/api.py, Cursor).
PAGING = frozenset({"limit", "after", "before", "summary"})


@dataclass(frozen=True)
class SentRequest:
    """One request as it left the client: path with its version, query and body parameters, the bearer token."""

    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    content_type: str
    body_is_json: bool = False
    bearer: str | None = field(default=None, repr=False)

    @property
    def token(self) -> str | None:
        return self.bearer or self.query.get("access_token") or self.form.get("access_token") or None

    @property
    def params(self) -> dict[str, str]:
        return {**self.query, **self.form}

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def from_httpx(request: httpx.Request) -> SentRequest:
    """The :class:`SentRequest` of an httpx request (its body read)."""
    body = request.read()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form: dict[str, str] = {}
    is_json = False
    if body:
        text = body.decode("utf-8")
        if ctype == "application/json":
            is_json = True
            data = json.loads(text)
            form = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in dict(data).items()}
        else:
            form = dict(parse_qsl(text, keep_blank_values=True))
    auth = request.headers.get("authorization", "")
    scheme, _, rest = auth.partition(" ")
    bearer = rest.strip() if scheme.lower() in ("bearer", "oauth") and rest.strip() else None
    query = dict(parse_qsl(request.url.query.decode("ascii"), keep_blank_values=True))
    return SentRequest(request.method.upper(), request.url.path, query, form, ctype, is_json, bearer)


def from_sim_log(log: Iterable[Any]) -> list[SentRequest]:
    """:class:`SentRequest` s from a simulator's ``requests`` (method, path, query, form, headers, access_token)."""
    out = []
    for r in log:
        headers = {k.lower(): v for k, v in dict(r.headers).items()}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        auth = headers.get("authorization", "")
        scheme, _, rest = auth.partition(" ")
        bearer = rest.strip() if scheme.lower() in ("bearer", "oauth") and rest.strip() else None
        out.append(SentRequest(r.method.upper(), r.path, dict(r.query), dict(r.form), ctype,
                               ctype == "application/json", bearer))
    return out


class RecordingTransport(httpx.BaseTransport):
    """Wraps a transport and keeps a :class:`SentRequest` for every request passed on (thread-safe append)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests: list[SentRequest] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(from_httpx(request))
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def reference_proof(app_secret: str, access_token: str) -> str:
    """Meta's appsecret_proof by definition (pinned to literal answers in test_meta_known_answers.py)."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


# ----- what Meta declares ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Declaration:
    """One (method, edge) as declared: parameter types, enums, the target's fields, required parameters."""

    source: str
    params: Mapping[str, str]
    enums: Mapping[str, frozenset[str]]
    fields: frozenset[str] | None
    required: frozenset[str] = frozenset()
    paging: bool = False


def _sdk_class(dotted: str) -> type:
    import importlib

    module, _, name = dotted.rpartition(".")
    cls: type = getattr(importlib.import_module(f"facebook_business.adobjects.{module}"), name)
    return cls


def _field_names(cls: type) -> frozenset[str]:
    names: set[str] = set()
    for klass in inspect.getmro(getattr(cls, "Field", type("Field", (), {}))):
        names |= {str(v) for k, v in vars(klass).items() if not k.startswith("_") and isinstance(v, str)}
    return frozenset(names)


@functools.cache
def sdk_declarations(dotted: str) -> dict[tuple[str, str], Declaration]:
    """``(METHOD, edge)`` → :class:`Declaration` for one SDK class; the node read is ``("GET", "")``."""
    cls = _sdk_class(dotted)
    node = cls(fbid="0")
    out: dict[tuple[str, str], Declaration] = {}
    for name, method in inspect.getmembers(cls, inspect.isfunction):
        generated = name.startswith(("get_", "create_", "delete_")) or name == "api_get"
        if not generated or "pending" not in inspect.signature(method).parameters:
            continue  # the SDK's own helpers (get_api, get_id...), not generated edges
        request = getattr(node, name)(pending=True)
        checker = request._param_checker
        target = request._target_class
        enums = {k: frozenset(str(v) for v in vals if isinstance(v, str) and not v.startswith("facebook_business"))
                 for k, vals in checker._enum_data.items()}
        key = (request._method.upper(), request._endpoint)
        out.setdefault(key, Declaration(
            source=f"{cls.__name__}.{name}", params=dict(checker._type_check_info), enums=enums,
            fields=_field_names(target) if target is not None else None,
            paging=request._method.upper() == "GET" and request._endpoint != ""))
    return out


@functools.cache
def _fixture() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def fixture_declaration(method: str, route: str, kind: str | None) -> Declaration | None:
    """The pinned declaration of an endpoint the SDK lacks: by path (``/debug_token``) or node kind."""
    for entry in _fixture()["endpoints"]:
        matches = entry.get("path") == route if "path" in entry else (entry.get("node") == kind and
                                                                       route.count("/") == 1)
        if matches and entry["method"] == method:
            params = dict(entry["params"])
            enums = {k: frozenset(v) for k, v in entry.get("enums", {}).items()}
            fields = frozenset(entry["fields"]) if "fields" in entry else None
            return Declaration(source=f"fixture {entry.get('path') or entry['node']}", params=params, enums=enums,
                               fields=fields, required=frozenset(entry.get("required", ())))
    return None


def fixture_routes() -> set[str]:
    return {entry["path"] for entry in _fixture()["endpoints"] if "path" in entry}


def id_kinds(sim: Any) -> dict[str, str]:
    """Which id is which, from a simulator's world."""
    world = sim.world
    kinds: dict[str, str] = {}
    for table, kind in ((world.businesses, "business"), (world.system_users, "system_user"),
                        (world.wabas, "waba"), (world.phones, "phone_number"), (world.apps, "app")):
        kinds.update(dict.fromkeys(table, kind))
    return kinds


def app_secrets(sim: Any) -> dict[str, str]:
    """token (system-user token or ``app|secret``) → its app's secret, for checking proofs."""
    world = sim.world
    out = {t.value: world.apps[t.app_id].secret for t in world.tokens.values()}
    out.update({f"{a.id}|{a.secret}": a.secret for a in world.apps.values()})
    return out


# ----- the checks ------------------------------------------------------------------------------------------------

def _value_problem(name: str, value: str, type_: str, enums: Mapping[str, frozenset[str]]) -> str | None:
    inner = type_[5:-1] if type_.startswith("list<") and type_.endswith(">") else None
    if inner is not None:
        if value.startswith("["):
            try:
                items = [str(v) for v in json.loads(value)]
            except ValueError:
                return f"{name}={value!r} is not a JSON list"
        else:
            items = value.split(",")
            if any(not i or i != i.strip() or " " in i for i in items):
                return f"{name} is a list<{inner}>: comma-separated without spaces (or a JSON list), not {value!r}"
        for item in items:
            problem = _value_problem(name, item, inner, enums)
            if problem:
                return problem
        return None
    if type_ in enums:
        return None if value in enums[type_] else f"{name}={value!r} is not one of {sorted(enums[type_])}"
    if type_ == "bool" and value not in ("true", "false"):
        return f"{name}={value!r} is not a boolean (true/false)"
    if type_ in ("int", "unsigned int") and not value.isdigit():
        return f"{name}={value!r} is not an integer"
    return None


def check_request(req: SentRequest, kinds: Mapping[str, str],
                  secrets: Mapping[str, str] | None = None) -> tuple[str | None, list[str]]:
    """``(source, problems)`` for one request: what declares it (None: nothing) and what is wrong with it."""
    problems: list[str] = []
    match = VERSION.match(req.path)
    if match is None:
        problems.append(f"{req}: no version segment (/vNN.N/) in the path")
        route = req.path
    else:
        route = req.path[match.end():]
    segments = [s for s in route.split("/") if s]
    if req.body_is_json:
        problems.append(f"{req}: JSON body; Meta's SDK sends parameters form-encoded")
    if req.method == "GET" and req.form:
        problems.append(f"{req}: a GET with a body")
    if req.method == "POST" and req.form and req.content_type not in ("application/x-www-form-urlencoded", ""):
        problems.append(f"{req}: POST body of type {req.content_type!r}, not form-encoded")

    declared: Declaration | None = None
    kind = kinds.get(segments[0]) if segments else None
    if route in fixture_routes():
        declared = fixture_declaration(req.method, route, None)
        if declared is None:
            problems.append(f"{req}: {route} is pinned to {FIXTURE.name} for another method")
    elif kind is None or len(segments) > 2:
        problems.append(f"{req}: unknown node {segments[:1]} (no id kind from the simulator, or a deeper path)")
    else:
        edge = segments[1] if len(segments) == 2 else ""
        declared = fixture_declaration(req.method, route, kind) if kind not in KIND_CLASSES else None
        for dotted in KIND_CLASSES.get(kind, ()):
            declared = sdk_declarations(dotted).get((req.method, edge))
            if declared is not None:
                break
        if declared is None:
            problems.append(f"{req}: {req.method} {edge or '(node)'} is not declared for a {kind} by Meta's SDK "
                            f"({', '.join(KIND_CLASSES.get(kind, ('fixture',)))})")
    if declared is None:
        return None, problems

    allowed = set(declared.params) | UNIVERSAL | (PAGING if declared.paging else set())
    params = req.params
    for name in sorted(set(params) - allowed):
        problems.append(f"{req}: parameter {name!r} is not declared by {declared.source}")
    if req.method == "POST":
        for name in sorted(set(req.query) & set(declared.params)):
            problems.append(f"{req}: {name!r} in the query string; the SDK sends POST parameters in the body")
    for name, value in params.items():
        type_ = declared.params.get(name)
        if type_ is not None:
            problem = _value_problem(name, value, type_, declared.enums)
            if problem:
                problems.append(f"{req}: {problem} ({declared.source})")
    if "fields" in params:
        if declared.fields is None:
            problems.append(f"{req}: fields asked of {declared.source}, which returns no node")
        else:
            for name in params["fields"].split(","):
                if name not in declared.fields:
                    problems.append(f"{req}: field {name!r} is not a field of what {declared.source} returns")
    present = set(params) | ({"access_token"} if req.token else set())
    for name in sorted(declared.required - present):
        problems.append(f"{req}: required parameter {name!r} missing ({declared.source})")

    token = req.token
    if token and "|" not in token:  # a user or system-user token: the proof goes with it
        proof = params.get("appsecret_proof")
        if proof is None:
            problems.append(f"{req}: a system-user token without appsecret_proof")
        elif secrets is not None and token in secrets and proof != reference_proof(secrets[token], token):
            problems.append(f"{req}: appsecret_proof is not HMAC-SHA256(key=app secret, msg=this call's token)")
    return declared.source, problems


def assert_declared_by_meta(requests: Iterable[SentRequest], sim: Any) -> list[str]:
    """Fail with every problem found; returns the declaring source of each request, in order."""
    kinds, secrets = id_kinds(sim), app_secrets(sim)
    sources: list[str] = []
    problems: list[str] = []
    count = 0
    for req in requests:
        count += 1
        source, found = check_request(req, kinds, secrets)
        problems += found
        if source:
            sources.append(source)
    assert count, "no request was recorded"
    assert not problems, "requests Meta does not declare:\n  " + "\n  ".join(dict.fromkeys(problems))
    return sources


__all__ = ["Declaration", "RecordingTransport", "SentRequest", "app_secrets", "assert_declared_by_meta",
           "check_request", "from_httpx", "from_sim_log", "id_kinds", "reference_proof", "sdk_declarations"]


def call_every_port_method(api: Any, world: Any) -> None:
    """Each method of the Graph port once, in the order Meta's SDK declarations are listed by the tests (the demo
    story does not refresh, read a node or a phone number): ``api`` a ``GraphApi``, ``world`` the simulator's
    demo world."""
    from meta_tokenvault.ports.graph import AppCredentials
    from meta_tokenvault.types import Secret

    app, admin = AppCredentials(world.app_id, Secret(world.app_secret)), Secret(world.admin_token)
    assert api.list_system_users(world.business_id, app, admin)
    assert api.system_user_created_time(world.old_admin_id, app, admin) is not None
    api.install_app(world.employee_id, app, admin)
    expiring = api.generate_token(world.old_admin_id, app, admin, ("whatsapp_business_management",), expiring=True)
    assert api.debug_token(expiring, app).is_valid
    refreshed = api.refresh_token(expiring, app)
    assert api.check_whatsapp(refreshed.token, app, world.phone_number_id)
    api.revoke_token(expiring, app, refreshed.token)
