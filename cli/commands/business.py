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
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
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


@app.command("set-admin-token")
def set_admin_token(
    name: Annotated[str, typer.Argument(help="The registered business name.")],
    revoke_old: Annotated[bool, typer.Option("--revoke-old", help="Revoke the previous admin token at Meta.")] = False,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not check the token with debug_token.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Replace the admin access token used for minting (read from stdin or a hidden prompt).

    The new token is checked with debug_token before it replaces the old one; a refused token changes
    nothing. The previous one is kept encrypted as history unless --revoke-old kills it at Meta.
    """
    from meta_tokenvault.types import SecretKind

    token = read_secret("new admin access token")
    version = state.manager().replace_business_secret(name, SecretKind.ADMIN_TOKEN, token, verify=not no_verify,
                                                      revoke_old=revoke_old)
    if json_out:
        render.emit_json({"name": name, "admin_token_version": version, "old_revoked": revoke_old})
    else:
        render.ok(f"{name}: admin token v{version} is now used for minting"
                  + ("; the previous one was revoked at Meta." if revoke_old else "."))


@app.command("set-app-secret")
def set_app_secret(
    name: Annotated[str, typer.Argument(help="The registered business name.")],
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not check the secret with Meta.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Replace the app secret (after "Reset" in the app dashboard), read from stdin or a hidden prompt.

    Checked first: Meta must accept the app token it makes; a refused secret changes nothing.
    """
    from meta_tokenvault.types import SecretKind

    secret = read_secret("new app secret")
    version = state.manager().replace_business_secret(name, SecretKind.APP_SECRET, secret, verify=not no_verify)
    if json_out:
        render.emit_json({"name": name, "app_secret_version": version})
    else:
        render.ok(f"{name}: app secret v{version} is now in use.")


@app.command("list")
def list_(json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False) -> None:
    """The registered businesses."""
    rows = state.manager().list_businesses()
    if json_out:
        render.emit_json([{"name": b.name, "business_id": b.business_id, "app_id": b.app_id,
                           "created_at": b.created_at} for b in rows])
    else:
        render.table("Businesses", ["name", "business id", "app id", "registered"],
                     [(b.name, b.business_id, b.app_id, render.when(b.created_at)) for b in rows],
                     empty="No businesses yet: register one with `tokenvault business add NAME --business-id ID "
                           "--app-id ID`.")
