"""`tokenvault system-users ...`: the roster, eligibility and the seven-day window."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import render
from ..state import state

if TYPE_CHECKING:
    from meta_tokenvault.minting import SystemUserView

app = typer.Typer(help="System users: sync from Meta, eligibility, creation dates.", no_args_is_help=True)


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
        row = [r.id, r.name, r.role.lower(), render.stamp(r.created_at), r.age_source.value, eligible,
               "" if v.eligible else v.reason]
        rows.append(([r.business_name] if several else []) + row)
    columns = ["id", "name", "role", "created (UTC)", "age from", "eligible (UTC)", "why not"]
    render.table("System users", (["business"] if several else []) + columns, rows, wrap=("why not",))


@app.command("sync")
def sync(
    business: Annotated[Optional[str], typer.Option("--business", help="Only this business.")] = None,  # noqa: UP045
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Pull system users (id, name, role, age) from the Graph API."""
    _show(state.manager().sync_system_users(business), json_out)


@app.command("list")
def list_(
    business: Annotated[Optional[str], typer.Option("--business", help="Only this business.")] = None,  # noqa: UP045
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Each system user's eligibility to mint and the date its seven-day window opens."""
    _show(state.manager().system_users(business), json_out)


@app.command("set-created")
def set_created(
    system_user_id: Annotated[str, typer.Argument(metavar="ID")],
    date: Annotated[str, typer.Argument(metavar="DATE", help="YYYY-MM-DD or an ISO 8601 time (UTC if no offset).")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
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
