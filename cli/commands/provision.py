"""`tokenvault provision`: the seed's whole procedure in one resumable command."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ..state import state
from .system_users import show_outcome, split_list


def register(root: typer.Typer) -> None:
    root.command("provision")(provision)


def provision(
    label: Annotated[str, typer.Argument(metavar="LABEL", help="The label the token is stored under.")],
    business: Annotated[str, typer.Option("--business", help="The business (as registered with `business add`).")],
    system_user: Annotated[str, typer.Option("--system-user", metavar="NAME",
                                             help="The system user to find, or create (a purpose name).")],
    waba: Annotated[Optional[list[str]], typer.Option("--waba", help="A WhatsApp Business Account to assign "  # noqa: UP045
                                                                     "(repeatable).")] = None,
    scopes: Annotated[str, typer.Option("--scopes", help="Permissions of the token, comma-separated.")
                      ] = "whatsapp_business_management,whatsapp_business_messaging",
    role: Annotated[str, typer.Option("--role", help="The role if it is created: admin | employee.")] = "admin",
    tasks: Annotated[str, typer.Option("--tasks", help="Tasks on each WABA (MANAGE = full control).")] = "MANAGE",
    expiring: Annotated[bool, typer.Option("--expiring", help="A 60-day token (refreshable) instead of a "
                                                               "never-expiring one.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Find or create the system user, install the app, assign the WABAs, mint its token and store it as LABEL
    (source: provisioned). Resumable; deferred as a whole (exit 7, reminder) when Meta's seven-day rule refuses."""
    outcome = state.manager().provision(label, business=business, system_user=system_user, role=role,
                                        waba_ids=split_list(waba), tasks=split_list([tasks]),
                                        scopes=split_list([scopes]), expiring=expiring)
    show_outcome(outcome, json_out)
