"""`tokenvault audit ...`: the tamper-evident trail."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import render
from ..state import state

app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)


@app.command("list")
def list_(
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the newest N events.")] = None,  # noqa: UP045
    label: Annotated[Optional[str], typer.Option("--label", help="Only events about this label.")] = None,  # noqa: UP045
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Audit events, oldest first."""
    events = state.manager().audit_events(limit=limit, label=label)
    if json_out:
        render.emit_json([{"seq": e.id, "at": e.at, "actor": e.actor, "action": e.action, "subject": e.subject,
                           "details": e.details, "hash": e.hash, "prev_hash": e.prev_hash} for e in events])
        return
    render.table("Audit trail", ["#", "at (UTC)", "actor", "action", "subject", "details"],
                 [(e.id, render.stamp(e.at), e.actor, e.action, e.subject,
                   ", ".join(f"{k}={v}" for k, v in sorted(e.details.items()))) for e in events],
                 wrap=("details",), empty="No audit events" + (f" for {label}." if label else "."))


@app.command("verify")
def verify(
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
    key_head: Annotated[bool, typer.Option("--key-head", help="Once, after an upgrade: give an unkeyed head "
                                           "(older tokenvault) its MAC if every event verifies.")] = False,
) -> None:
    """Check the hash chain and the head's MAC. Exit 4 naming the first bad event if anything was edited, deleted
    or reordered, or the head was rewound."""
    manager = state.manager()
    count = manager.key_audit_head() if key_head else manager.verify_audit()
    if json_out:
        render.emit_json({"ok": True, "events": count})
    else:
        render.ok(f"Audit trail intact: {count} events.")
