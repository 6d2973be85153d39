"""`tokenvault business ...`: register Business Managers and their apps."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import render
from ..prompts import read_secret
from ..state import state

app = typer.Typer(help="Business Managers and their apps.", no_args_is_help=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="A short name for the business, e.g. acme.")],
    business_id: Annotated[str, typer.Option("--business-id", help="The Business Manager id.")],
    app_id: Annotated[str, typer.Option("--app-id", help="The Meta app id.")],
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Register a business. Reads the app secret, then an admin access token, one per line from stdin."""
    app_secret = read_secret("app secret")
    admin_token = read_secret("admin access token")
    record = state.manager().add_business(name, business_id, app_id, app_secret, admin_token)
    data = {"name": record.name, "business_id": record.business_id, "app_id": record.app_id}
    if json_out:
        render.emit_json(data)
    else:
        render.ok(f"Registered business {record.name} ({record.business_id}, app {record.app_id}).")


@app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The registered businesses."""
    rows = state.manager().list_businesses()
    if json_out:
        render.emit_json([{"name": b.name, "business_id": b.business_id, "app_id": b.app_id,
                           "created_at": b.created_at} for b in rows])
    else:
        render.table("Businesses", ["name", "business id", "app id", "registered"],
                     [(b.name, b.business_id, b.app_id, render.when(b.created_at)) for b in rows])
