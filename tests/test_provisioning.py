"""Provisioning (issue 12) against the Graph API simulator over HTTP, with the real CLI as subprocesses.

Meta's seven-day rule where Meta enforces it: a business whose only admin is two days old can mint (Meta allows
it) but cannot create another admin system user until that admin is seven days old; ``system-users create`` exits
7 with the date, and ``run-due`` after the window (the simulator's virtual clock, moved with ``/_sim/advance``)
creates, installs and assigns exactly once, then notifies. ``provision`` does the seed's whole procedure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from graph_world import SCOPES, World, make_world
from plugins.webhook import Webhook

from meta_tokenvault.testing.graph_sim import GraphSimulator, SimRequest

ROOT = Path(__file__).resolve().parent.parent
YOUNG_BIZ, YOUNG_APP, YOUNG_WABA = "1000000000031", "2000000000032", "3000000000033"
YOUNG_SECRET = "y" * 32
START = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Served:
    world: World
    url: str
    young_admin: str

    @property
    def sim(self) -> GraphSimulator:
        return self.world.sim

    def now(self) -> datetime:
        return self.sim.clock.now()

    def advance(self, **units: float) -> datetime:
        """Move the simulator's clock over its control endpoint; tokenvault's "now" follows (TOKENVAULT_TEST_NOW)."""
        answer = httpx.post(f"{self.url}/_sim/advance", json=units, timeout=10)
        assert answer.status_code == 200, answer.text
        return datetime.fromisoformat(answer.json()["now"])

    def tv(self, *args: str, stdin: str = "", extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = self.world.env(self.url)
        env.update(TOKENVAULT_TEST_MODE="1", TOKENVAULT_TEST_NOW=self.now().isoformat(), **(extra or {}))
        return subprocess.run([sys.executable, "-m", "meta_tokenvault.cli.main", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=60, cwd=ROOT)


def young_business(sim: GraphSimulator) -> tuple[str, str]:
    """A business whose only admin system user is two days old; returns (admin id, its token)."""
    return sim.add_young_business(YOUNG_BIZ, YOUNG_APP, YOUNG_SECRET, YOUNG_WABA, name="Young Co", slug="young")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    world = make_world(tmp_path, start=START)
    admin, token = young_business(world.sim)
    server = world.sim.serve()
    try:
        s = Served(world, server.url, admin)
        added = s.tv("business", "add", "young", "--business-id", YOUNG_BIZ, "--app-id", YOUNG_APP,
                     stdin=f"{YOUNG_SECRET}\n{token}\n")
        assert added.returncode == 0, added.stderr
        assert s.tv("system-users", "sync").returncode == 0
        yield s
    finally:
        server.close()


def posts(sim: GraphSimulator, suffix: str, *, ok: bool = True) -> list[SimRequest]:
    return [r for r in sim.requests if r.method == "POST" and r.route.endswith(suffix) and (r.status == 200) == ok]


def named(sim: GraphSimulator, name: str) -> list[Any]:
    return [su for su in sim.world.system_users.values() if su.name == name]


def test_young_admin_mints_but_creating_an_admin_waits_for_meta_then_run_due_finishes_once(
        served: Served, webhook: Webhook) -> None:
    s, sim = served, served.sim
    opens = sim.system_user(s.young_admin).created_time + timedelta(days=7)
    # Meta allows minting through the two-day-old admin: tokenvault asks instead of refusing on its own
    minted = s.tv("token", "generate", "young-prod", "--business", "young", "--scopes", ",".join(SCOPES))
    assert minted.returncode == 0, minted.stderr
    assert [t.system_user_id for t in sim.minted] == [s.young_admin]

    refused = s.tv("system-users", "create", "ops_whatsapp", "--business", "young", "--role", "admin",
                   "--waba", YOUNG_WABA)
    assert refused.returncode == 7, refused.stderr
    assert refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    first_line = refused.stderr.splitlines()[0]
    assert f"possible from {opens:%Y-%m-%d %H:%M} UTC" in first_line and "seven-day" in first_line
    reminders = json.loads(s.tv("reminders", "list", "--json").stdout)
    assert [(r["label"], r["action"], r["due_at"]) for r in reminders] == [
        ("ops_whatsapp", "create_system_user", opens.isoformat())]
    assert named(sim, "ops_whatsapp") == []
    assert len(posts(sim, "/system_users", ok=False)) == 1  # Meta was asked once, and refused

    s.advance(days=4)  # still a day short of the window
    early = json.loads(s.tv("run-due", "--json").stdout)
    assert early["completed"] == [] and early["still_waiting"] == ["ops_whatsapp"]
    assert named(sim, "ops_whatsapp") == []

    s.advance(days=1, seconds=1)
    done = s.tv("run-due", "--json", extra={"TOKENVAULT_NOTIFY_URLS": webhook.url()})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["completed"] == ["ops_whatsapp"]
    (su,) = named(sim, "ops_whatsapp")
    assert su.role == "ADMIN" and YOUNG_APP in su.installed_apps and su.waba_tasks == {YOUNG_WABA: ["MANAGE"]}
    assert len(posts(sim, "/system_users")) == 1
    assert len(posts(sim, f"/{su.id}/applications")) == 1
    assert len(posts(sim, f"/{YOUNG_WABA}/assigned_users")) == 1
    messages = [json.loads(r["body"]) for r in webhook.requests]
    assert any("completed" in m["title"] and f"system user ops_whatsapp ({su.id}) created" in m["message"]
               and f"WABA {YOUNG_WABA} assigned" in m["message"] for m in messages), messages
    # one "completed" message, saying what was done (not a second, generic one pointing at `token show`)
    assert [m["title"] for m in messages if "completed" in m["title"]] == [
        "tokenvault: creating system user ops_whatsapp completed"], messages
    assert not any("token show" in m["message"] for m in messages), messages

    again = json.loads(s.tv("run-due", "--json").stdout)
    assert again["completed"] == [] and again["resumed"] == []
    assert len(posts(sim, "/system_users")) == 1
    listed = json.loads(s.tv("system-users", "list", "--business", "young", "--json").stdout)
    ops = next(u for u in listed if u["name"] == "ops_whatsapp")
    assert ops["wabas"] == [{"id": YOUNG_WABA, "tasks": ["MANAGE"]}]
    assert ops["eligible"] is False and ops["eligible_from"] == (s.now() + timedelta(days=7)).isoformat()


def test_provision_does_the_whole_procedure_in_one_command(served: Served) -> None:
    s, sim, ids = served, served.sim, served.world.ids
    res = s.tv("provision", "prod-wa", "--business", "acme", "--system-user", "whatsapp_prod_sender",
               "--waba", ids.waba_id, "--waba", ids.second_waba_id, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    (su,) = named(sim, "whatsapp_prod_sender")
    assert (out["state"], out["system_user_id"], out["created"], out["app_installed"]) == ("done", su.id, True, True)
    assert out["assigned"] == [ids.waba_id, ids.second_waba_id] and out["warnings"] == []
    assert out["token"]["source"] == "provisioned" and out["token"]["system_user_id"] == su.id
    assert su.role == "ADMIN" and su.waba_tasks == {ids.waba_id: ["MANAGE"], ids.second_waba_id: ["MANAGE"]}
    shown = json.loads(s.tv("token", "show", "prod-wa", "--json").stdout)
    assert shown["source"] == "provisioned" and shown["status"] == "active" and shown["verified_at"]
    value = s.tv("token", "reveal", "prod-wa").stdout.strip()
    assert sim.token_state(value) == "valid" and sim.token(value).system_user_id == su.id
    assert [t.system_user_id for t in sim.minted] == [su.id]
    # the token was minted by the business admin for the new system user (Meta's per-user edge)
    (mint,) = posts(sim, f"/{su.id}/access_tokens")
    assert mint.access_token == ids.admin_token
    assert value not in res.stdout + res.stderr

    # the label is taken: nothing more is done
    again = s.tv("provision", "prod-wa", "--business", "acme", "--system-user", "whatsapp_prod_sender")
    assert again.returncode == 2 and "exists already" in again.stderr
    # creating it again reuses it (ours, same role); another role is refused; never two created
    reused = s.tv("system-users", "create", "whatsapp_prod_sender", "--business", "acme", "--role", "admin", "--json")
    assert reused.returncode == 0, reused.stderr
    assert json.loads(reused.stdout)["system_user_id"] == su.id
    other_role = s.tv("system-users", "create", "whatsapp_prod_sender", "--business", "acme", "--role", "employee")
    assert other_role.returncode == 2 and "role admin, not employee" in other_role.stderr
    assert len(named(sim, "whatsapp_prod_sender")) == 1 and len(posts(sim, "/system_users")) == 1
    # a system user of that name that tokenvault did not create is not taken over
    not_ours = s.tv("system-users", "create", "tokenvault-employee", "--business", "acme", "--role", "employee")
    assert not_ours.returncode == 2 and "not created by tokenvault" in not_ours.stderr


def test_provision_is_deferred_as_a_whole_and_run_due_finishes_it_with_history(served: Served) -> None:
    s, sim = served, served.sim
    res = s.tv("provision", "young-wa", "--business", "young", "--system-user", "young_whatsapp_sender",
               "--waba", YOUNG_WABA, "--expiring")
    assert res.returncode == 7, res.stderr
    reminders = json.loads(s.tv("reminders", "list", "--json").stdout)
    assert [(r["label"], r["action"]) for r in reminders] == [("young-wa", "provision")]
    assert s.tv("token", "show", "young-wa").returncode == 3
    s.advance(days=5)
    report = json.loads(s.tv("run-due", "--json").stdout)
    assert report["completed"] == ["young-wa"], report
    (su,) = named(sim, "young_whatsapp_sender")
    shown = json.loads(s.tv("token", "show", "young-wa", "--json").stdout)
    assert shown["source"] == "provisioned" and shown["system_user_id"] == su.id and shown["expires_at"]
    audit = json.loads(s.tv("audit", "list", "--json").stdout)
    actions = [e["action"] for e in audit if e["subject"] == "young-wa"]
    for expected in ("provision.provision.deferred", "provision.system_user_created", "provision.waba_assigned",
                     "token.provision", "provision.provision.done"):
        assert expected in actions, actions
    journal = json.loads(s.tv("system-users", "journal", "--json").stdout)
    assert [(j["kind"], j["state"], j["step"]) for j in journal] == [("provision", "done", "done")]


def test_the_seeds_reading_defers_the_mint_too(served: Served) -> None:
    """With the knob that plays the seed's reading (Meta refuses minting through a young admin), a provisioned admin
    is created after the caller's window opens, then its own token waits for its own seven days."""
    s, sim = served, served.sim
    assert httpx.post(f"{s.url}/_sim/knobs", json={"mint_requires_old_admin": True}, timeout=10).status_code == 200
    res = s.tv("provision", "later-wa", "--business", "acme", "--system-user", "whatsapp_later_sender")
    assert res.returncode == 7, res.stderr
    (su,) = named(sim, "whatsapp_later_sender")  # created (the caller is old); minting for it is what waits
    assert f"possible from {su.created_time + timedelta(days=7):%Y-%m-%d %H:%M} UTC" in res.stderr
    s.advance(days=7)
    assert json.loads(s.tv("run-due", "--json").stdout)["completed"] == ["later-wa"]
    assert len(posts(sim, "/system_users")) == 1 and [t.system_user_id for t in sim.minted] == [su.id]


@pytest.mark.parametrize("which", ["unknown", "other-business"])
def test_a_bad_waba_exits_6_with_metas_message_and_the_journal_keeps_what_was_done(served: Served,
                                                                                   which: str) -> None:
    s, sim, ids = served, served.sim, served.world.ids
    waba = "3999999999999" if which == "unknown" else ids.other_waba_id
    res = s.tv("system-users", "create", "crm_whatsapp_sync", "--business", "acme", "--role", "employee",
               "--waba", ids.waba_id, "--waba", waba)
    assert res.returncode == 6, res.stderr
    (su,) = named(sim, "crm_whatsapp_sync")
    meta = "does not exist" if which == "unknown" else "(#200) Permissions error"
    assert meta in res.stderr and f"WABA {ids.waba_id} assigned" in res.stderr
    assert f"system user crm_whatsapp_sync ({su.id}) created" in res.stderr
    (entry,) = json.loads(s.tv("system-users", "journal", "--json").stdout)
    assert (entry["state"], entry["assigned"], entry["app_installed"]) == ("failed", [ids.waba_id], True)
    assert meta in entry["error"]
    # re-run without the bad WABA: the system user is reused, nothing is done twice
    fixed = s.tv("system-users", "create", "crm_whatsapp_sync", "--business", "acme", "--role", "employee",
                 "--waba", ids.waba_id)
    assert fixed.returncode == 0, fixed.stderr
    assert len(posts(sim, "/system_users")) == 1 and len(posts(sim, f"/{su.id}/applications")) == 1
    assert len(posts(sim, f"/{ids.waba_id}/assigned_users")) == 1


def test_a_caller_that_is_not_an_admin_exits_6_with_the_remedy(served: Served) -> None:
    s, ids = served, served.world.ids
    employee_token = s.sim.issue_token(ids.app_id, ids.employee_id, ("business_management", *SCOPES))
    added = s.tv("business", "add", "acme-emp", "--business-id", ids.business_id, "--app-id", ids.app_id,
                 stdin=f"{ids.app_secret}\n{employee_token}\n")
    assert added.returncode == 0, added.stderr
    res = s.tv("system-users", "create", "whatsapp_support_bot", "--business", "acme-emp", "--role", "employee")
    assert res.returncode == 6
    assert "(#200) Only an admin can create system users" in res.stderr
    assert "business set-admin-token acme-emp" in res.stderr
    assert named(s.sim, "whatsapp_support_bot") == []


def test_a_generic_name_gets_a_warning_with_a_purpose_name(served: Served) -> None:
    res = served.tv("system-users", "create", "admin", "--business", "acme", "--role", "employee")
    assert res.returncode == 0, res.stderr
    assert "warning: 'admin' does not say what the system user is for" in res.stderr
    assert "whatsapp_prod_sender" in res.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (["--role", "owner"], "Unknown role"),
    (["--tasks", "MANAGE,FLY"], "Unknown task(s) FLY"),
    (["--waba", "not-an-id"], "not a WhatsApp Business Account id"),
], ids=["role", "task", "waba"])
def test_bad_input_is_refused_before_meta_is_asked(served: Served, args: list[str], expected: str) -> None:
    before = len(served.sim.requests)
    res = served.tv("system-users", "create", "whatsapp_ops", "--business", "acme", *args)
    assert res.returncode == 2 and expected in res.stderr
    assert len(served.sim.requests) == before


def test_generic_names() -> None:
    from meta_tokenvault.usecases.provision import generic_name_warning

    for name in ("admin", "Admin", "System User", "system_user 2", "test", "API", "api-1"):
        assert generic_name_warning(name), name
    for name in ("whatsapp_prod_sender", "crm_sync", "ops_whatsapp", "admin_notifier_prod"):
        assert generic_name_warning(name) is None, name


# ----- the simulator's edges and the client's calls, in process ------------------------------------------------

@pytest.fixture
def graph(tmp_path: Path) -> Iterator[tuple[GraphSimulator, Any, httpx.Client]]:
    sim, ids = GraphSimulator.demo_world()
    with httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com/v24.0") as client:
        yield sim, ids, client


def _call(sim: GraphSimulator, client: httpx.Client, method: str, path: str, token: str, **params: str) -> Any:
    proof = sim.appsecret_proof(token)
    data = {**params, "appsecret_proof": proof}
    headers = {"Authorization": f"Bearer {token}"}
    if method in ("GET", "DELETE"):  # as Meta's SDK sends them: parameters in the query string
        return client.request(method, path, params=data, headers=headers)
    return client.request(method, path, data=data, headers=headers)


def test_assigned_users_edges_follow_the_reference(graph: tuple[GraphSimulator, Any, httpx.Client]) -> None:
    sim, ids, client = graph
    su = sim.add_system_user(ids.business_id, name="ops", role="EMPLOYEE")
    ok = _call(sim, client, "POST", f"/{ids.waba_id}/assigned_users", ids.admin_token, user=su,
               tasks='["MANAGE","DEVELOP"]')
    assert ok.status_code == 200 and ok.json() == {"success": True}
    listed = _call(sim, client, "GET", f"/{ids.waba_id}/assigned_users", ids.admin_token, business=ids.business_id,
                   fields="id,tasks").json()["data"]
    assert {"id": su, "tasks": ["MANAGE", "DEVELOP"]} in listed
    mine = _call(sim, client, "GET", f"/{su}/assigned_whatsapp_business_accounts", ids.admin_token).json()
    assert mine == {"data": [{"id": ids.waba_id, "name": "Demo WABA"}]}
    bad_task = _call(sim, client, "POST", f"/{ids.waba_id}/assigned_users", ids.admin_token, user=su,
                     tasks='["FLY"]').json()["error"]
    assert bad_task["code"] == 100 and 'got "FLY"' in bad_task["message"]
    no_business = _call(sim, client, "GET", f"/{ids.waba_id}/assigned_users", ids.admin_token).json()["error"]
    assert no_business["message"] == "(#100) The parameter business is required"
    other = _call(sim, client, "POST", f"/{ids.other_waba_id}/assigned_users", ids.admin_token, user=su,
                  tasks='["MANAGE"]').json()["error"]
    assert (other["code"], other["message"]) == (200, "(#200) Permissions error")
    unknown = _call(sim, client, "POST", "/3999999999999/assigned_users", ids.admin_token, user=su,
                    tasks='["MANAGE"]').json()["error"]
    assert (unknown["code"], unknown["error_subcode"]) == (100, 33) and "does not exist" in unknown["message"]
    gone = _call(sim, client, "DELETE", f"/{ids.waba_id}/assigned_users", ids.admin_token, user=su)
    assert gone.json() == {"success": True} and sim.system_user(su).waba_ids == set()


def test_creating_an_admin_waits_for_a_young_callers_seven_days_but_minting_does_not(
        graph: tuple[GraphSimulator, Any, httpx.Client]) -> None:
    from meta_tokenvault.testing.graph_sim import SEVEN_DAY_MESSAGE

    sim, ids, client = graph
    young_token = sim.issue_token(ids.app_id, ids.new_admin_id, ("business_management", *SCOPES))
    refused = _call(sim, client, "POST", f"/{ids.business_id}/system_users", young_token, name="x", role="ADMIN")
    assert refused.status_code == 400 and refused.json()["error"]["message"] == SEVEN_DAY_MESSAGE
    employee = _call(sim, client, "POST", f"/{ids.business_id}/system_users", young_token, name="y", role="EMPLOYEE")
    assert employee.status_code == 200  # the rule is about creating *admin* system users
    minted = _call(sim, client, "POST", f"/{ids.new_admin_id}/access_tokens", young_token,
                   business_app=ids.app_id, scope="whatsapp_business_messaging")
    assert minted.status_code == 200  # Meta is not known to refuse this (mint_requires_old_admin is off)


def test_the_client_sends_tasks_as_a_json_list_form_encoded(graph: tuple[GraphSimulator, Any, httpx.Client]) -> None:
    from meta_tokenvault.adapters.graph_httpx import HttpxGraphApi
    from meta_tokenvault.ports.graph import AppCredentials
    from meta_tokenvault.types import Secret

    sim, ids, client = graph
    api = HttpxGraphApi(httpx.Client(transport=sim.transport()), version="v24.0")
    app, admin = AppCredentials(ids.app_id, Secret(ids.app_secret)), Secret(ids.admin_token)
    su = api.create_system_user(ids.business_id, "whatsapp_prod_sender", "employee", app, admin)
    api.assign_waba(ids.second_waba_id, su, ("MANAGE", "MESSAGING"), app, admin)
    (sent,) = [r for r in sim.requests if r.route.endswith("/assigned_users")]
    assert sent.form["tasks"] == '["MANAGE","MESSAGING"]' and sent.form["user"] == su
    assert sent.headers["content-type"].startswith("application/x-www-form-urlencoded")
    created = next(r for r in sim.requests if r.route.endswith("/system_users"))
    assert created.form["role"] == "EMPLOYEE" and created.form["name"] == "whatsapp_prod_sender"
    assert api.assigned_wabas(su, app, admin) == [ids.second_waba_id]
    users = api.waba_assigned_users(ids.second_waba_id, ids.business_id, app, admin)
    assert [(u.user_id, u.tasks) for u in users] == [(su, ("MANAGE", "MESSAGING"))]


def test_create_warns_about_every_name_review_calls_generic() -> None:
    """`system-users create api_bot` must not pass silently only for the next `review` to flag generic-name."""
    from meta_tokenvault.usecases.provision import generic_name_warning
    from meta_tokenvault.usecases.review import is_generic_name

    for name in ("api_bot", "my_admin", "Admin System User", "test-api", "whatsapp bot", "main_service", "prod",
                 "dev 2", "server"):
        assert is_generic_name(name), name
        assert generic_name_warning(name), name
    for name in ("whatsapp_prod_sender", "crm-notifier", "billing_whatsapp_sync"):  # both call these purposeful
        assert not is_generic_name(name), name
        assert generic_name_warning(name) is None, name
