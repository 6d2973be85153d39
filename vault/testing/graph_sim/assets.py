"""WhatsApp asset edges (reference §13): who is assigned to a WABA, and which WABAs a system user is assigned.

* ``POST /{waba-id}/assigned_users`` ``user`` (a system user id), ``tasks`` (a list, sent JSON-encoded as the SDK
  does: ``["MANAGE"]``; one bare value is taken too): assigns, or replaces the tasks of an assignment.
* ``GET /{waba-id}/assigned_users?business={business-id}``: the system users assigned, with their tasks.
* ``DELETE /{waba-id}/assigned_users`` ``user``: unassigns.
* ``GET /{system-user-id}/assigned_whatsapp_business_accounts``: the WABAs assigned to the system user.

The caller must be an admin system user of the business that owns the WABA: another business's WABA is a
permissions error (200), an unknown id Meta's "does not exist" (100/33, from the router). :func:`edge` answers
``None`` for an edge that is not one of these, so the router goes on to :mod:`.handlers`.
"""

from __future__ import annotations

from . import wire
from .auth import Caller
from .handlers import Payload, _acts_on, _fields
from .state import SimState
from .wire import Call
from .world import WABA_TASKS, SimSystemUser, SimWaba

ASSIGNED_USER_FIELDS = frozenset({"id", "name", "user_type", "business", "tasks"})
WABA_FIELDS = frozenset({"id", "name"})


def edge(sim: SimState, call: Call, caller: Caller, node_id: str, name: str) -> Payload | None:
    world = sim.world
    if node_id in world.wabas and name == "assigned_users":
        waba = world.wabas[node_id]
        if call.method == "POST":
            return assign(sim, call, caller, waba)
        if call.method == "GET":
            return assigned_users(sim, call, caller, waba)
        if call.method == "DELETE":
            return unassign(sim, call, caller, waba)
        raise wire.unsupported(call.method, node_id)
    if node_id in world.system_users and name == "assigned_whatsapp_business_accounts":
        if call.method != "GET":
            raise wire.unsupported(call.method, node_id)
        return assigned_wabas(sim, call, caller, world.system_users[node_id])
    return None


def _admin_of(caller: Caller, waba: SimWaba) -> None:
    """The caller manages ``waba``'s assignments: an admin system user of the business that owns it."""
    if caller.system_user is None or caller.system_user.business_id != waba.business_id:
        raise wire.permission()
    if caller.system_user.role != "ADMIN":
        raise wire.permission("(#200) Only an admin system user can assign this WhatsApp Business Account")


def _user(sim: SimState, call: Call, waba: SimWaba) -> SimSystemUser:
    raw = call.params.get("user", "").strip()
    if not raw:
        raise wire.param_required("user")
    if not raw.isdigit():
        raise wire.invalid_param(f'Param user must be a valid ID - got "{raw}"')
    su = sim.world.system_users.get(raw)
    if su is None:
        raise wire.invalid_param(f"Param user must be a valid user id; no user {raw}")
    if su.business_id != waba.business_id:
        raise wire.invalid_param(f"User {raw} does not belong to the business that owns WhatsApp Business "
                                 f"Account {waba.id}")
    return su


def _tasks(call: Call) -> list[str]:
    raw = call.params.get("tasks", "").strip()
    if not raw:
        raise wire.param_required("tasks")
    tasks = wire.string_list("tasks", raw)
    if not tasks:
        raise wire.param_required("tasks")
    allowed = ", ".join(WABA_TASKS)
    for i, task in enumerate(tasks):
        if task not in WABA_TASKS:
            raise wire.invalid_param(f'Param tasks[{i}] must be one of {{{allowed}}} - got "{task}"')
    return list(dict.fromkeys(tasks))


def assign(sim: SimState, call: Call, caller: Caller, waba: SimWaba) -> Payload:
    _admin_of(caller, waba)
    su = _user(sim, call, waba)
    tasks = _tasks(call)
    su.waba_ids.add(waba.id)
    su.waba_tasks[waba.id] = tasks
    sim.touch()
    return {"success": True}


def unassign(sim: SimState, call: Call, caller: Caller, waba: SimWaba) -> Payload:
    _admin_of(caller, waba)
    su = _user(sim, call, waba)
    su.waba_ids.discard(waba.id)
    su.waba_tasks.pop(waba.id, None)
    sim.touch()
    return {"success": True}


def assigned_users(sim: SimState, call: Call, caller: Caller, waba: SimWaba) -> Payload:
    _admin_of(caller, waba)
    business = call.params.get("business", "").strip()
    if not business:
        raise wire.param_required("business")
    if business != waba.business_id:
        raise wire.invalid_param(f"Business {business} does not own WhatsApp Business Account {waba.id}")
    fields = _fields(call, ("id", "name"), ASSIGNED_USER_FIELDS, "AssignedUser")
    data = []
    for su in sorted(sim.world.users_of(waba.business_id), key=lambda u: u.id):
        if waba.id not in su.waba_ids:
            continue
        values: Payload = {"id": su.id, "name": su.name, "user_type": "SYSTEM_USER",
                           "business": {"id": su.business_id}, "tasks": su.waba_tasks.get(waba.id, ["MANAGE"])}
        data.append({f: values[f] for f in fields})
    return {"data": data}


def assigned_wabas(sim: SimState, call: Call, caller: Caller, su: SimSystemUser) -> Payload:
    _acts_on(caller, su)
    fields = _fields(call, ("id", "name"), WABA_FIELDS, "WhatsAppBusinessAccount")
    data = []
    for waba_id in sorted(su.waba_ids):
        waba = sim.world.wabas[waba_id]
        values: Payload = {"id": waba.id, "name": waba.name}
        data.append({f: values[f] for f in fields})
    return {"data": data}
