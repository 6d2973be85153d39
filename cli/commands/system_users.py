"""`tokenvault system-users ...`: the roster, eligibility and the seven-day window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import render
from ..state import state

if TYPE_CHECKING:
    from meta_tokenvault.usecases.provision import ProvisionOutcome
    from meta_tokenvault.usecases.system_users import SystemUserView

app = typer.Typer(help="System users: sync from Meta, eligibility, creation dates; create them at Meta.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="system-users")


def _show(views: list[SystemUserView], json_out: bool) -> None:
    if json_out:
        render.emit_json([v.as_json() for v in views])
        return
    several = len({v.record.business_name for v in views}) > 1
    rows = []
    for v in views:
        r = v.record
        eligible = "yes" if v.eligible else (f"from {render.stamp(v.eligible_from)}" if r.role.upper() == "ADMIN"
                                             else "no")
        wabas = ", ".join(f"{w} ({'+'.join(t).lower()})" if t else w for w, t in v.wabas.items())
        row = [r.id, r.name, r.role.lower(), render.stamp(r.created_at), r.age_source.value, eligible, wabas,
               "" if v.eligible else v.reason]
        rows.append(([r.business_name] if several else []) + row)
    columns = ["id", "name", "role", "created (UTC)", "age from", "7-day window (predicted, UTC)", "WABAs (tasks)",
               "why not"]
    render.table("System users", (["business"] if several else []) + columns, rows, wrap=("WABAs (tasks)", "why not"),
                 empty="No system users recorded: `tokenvault system-users sync --business NAME` pulls them from "
                       "Meta; `tokenvault system-users create NAME --business NAME` creates one.")


@app.command("sync")
def sync(
    business: Annotated[Optional[str], typer.Option("--business", help="Only this business.")] = None,  # noqa: UP045
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Pull system users (id, name, role, age) from the Graph API."""
    _show(state.manager().sync_system_users(business), json_out)


@app.command("list")
def list_(
    business: Annotated[Optional[str], typer.Option("--business", help="Only this business.")] = None,  # noqa: UP045
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Each system user, its assigned WABAs, and the date its seven-day window is predicted to open."""
    _show(state.manager().system_users(business), json_out)


@app.command("set-created")
def set_created(
    system_user_id: Annotated[str, typer.Argument(metavar="ID", help="The system user's id.")],
    date: Annotated[str, typer.Argument(metavar="DATE", help="YYYY-MM-DD or an ISO 8601 time (UTC if no offset).")],
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Record a system user's creation date by hand (from Business Settings) when Meta does not tell it."""
    from meta_tokenvault.errors import InvalidInput

    try:
        when = datetime.fromisoformat(date)
    except ValueError:
        raise InvalidInput(f"{date!r} is not a date.", hint="Use YYYY-MM-DD or 2026-11-18T09:30:00+00:00.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    state.manager().set_system_user_created(system_user_id, when)
    _show([v for v in state.manager().system_users() if v.record.id == system_user_id], json_out)


def split_list(values: list[str] | None) -> list[str]:
    """``--waba A --waba B,C`` -> [A, B, C]."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def show_outcome(outcome: ProvisionOutcome, json_out: bool) -> None:
    """Warnings on stderr; a summary for people, or the journal entry (and token) as one JSON document."""
    for warning in outcome.warnings:
        render.info(f"warning: {warning}")
    if json_out:
        render.emit_json(outcome.as_json())
        return
    from meta_tokenvault.usecases.provision import done_so_far

    r = outcome.record
    render.ok(f"{done_so_far(r)} (provisioning #{r.id})")
    pairs: list[tuple[str, object]] = [("system user", f"{r.name} ({r.system_user_id})"), ("role", r.role.lower()),
                                       ("app installed", "yes" if r.installed else "no"),
                                       ("WABAs", ", ".join(r.assigned) or "-"), ("tasks", ",".join(r.tasks))]
    if outcome.token is not None:
        t = outcome.token
        pairs += [("token", t.label), ("source", t.source.value), ("scopes", ",".join(t.provenance.scopes)),
                  ("expires", render.when(t.expires_at))]
    render.keyvalues(pairs)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="A purpose name, e.g. whatsapp_prod_sender.")],
    business: Annotated[str, typer.Option("--business", help="The business (as registered with `business add`).")],
    role: Annotated[str, typer.Option("--role", help="admin | employee.")] = "admin",
    waba: Annotated[Optional[list[str]], typer.Option("--waba", help="A WhatsApp Business Account to assign "  # noqa: UP045
                                                                     "(repeatable).")] = None,
    tasks: Annotated[str, typer.Option("--tasks", help="Tasks on each WABA, comma-separated (MANAGE = full "
                                                        "control).")] = "MANAGE",
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Create a system user at Meta, install the business's app for it and assign WABAs. Resumable: a re-run
    (or `run-due`) finishes what is missing. Exit 7 with a reminder when Meta's seven-day rule refuses."""
    outcome = state.manager().create_system_user(name, business=business, role=role, waba_ids=split_list(waba),
                                                 tasks=split_list([tasks]))
    show_outcome(outcome, json_out)


@app.command("journal")
def journal(
    business: Annotated[Optional[str], typer.Option("--business", help="Only this business.")] = None,  # noqa: UP045
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """The provisioning journal: each `system-users create` / `provision` run, its state and what it did at Meta."""
    records = state.manager().provisionings(business)
    if json_out:
        render.emit_json([r.as_json() for r in records])
        return
    from meta_tokenvault.usecases.provision import done_so_far

    rows = [[r.id, r.kind, r.business_name, r.name, r.role.lower(), r.label or "", r.state, r.step,
             done_so_far(r) + (f" Error: {r.error}" if r.error and r.state != "done" else "")] for r in records]
    render.table("Provisioning journal", ["#", "kind", "business", "system user", "role", "label", "state", "step",
                                          "done"], rows, wrap=("done",),
                 empty="No provisioning runs yet (`tokenvault system-users create` or `tokenvault provision`).")
