"""`tokenvault reminders ...` and `tokenvault run-due`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import render
from ..state import state

app = typer.Typer(help="Deferred work and when it becomes possible.", no_args_is_help=True)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="reminders")
    root.command("run-due")(run_due)


@app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="Include done and failed reminders.")] = False,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deferred work (generate/rotate/refresh), its due date and status."""
    manager = state.manager()
    now = manager.now()
    items = [r.as_json(now) for r in manager.reminders(open_only=not all_)]
    if json_out:
        render.emit_json(items)
        return
    render.table("Reminders", ["#", "label", "action", "business", "due (UTC)", "status", "reason"],
                 [(i["id"], i["label"], i["action"], i["business"], str(i["due_at"])[:16].replace("T", " "),
                   i["status"], i["reason"]) for i in items], wrap=("reason",))


@app.command("ics")
def ics(
    reminder_id: Annotated[int, typer.Argument(metavar="ID")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write to a file (0600).")] = None,  # noqa: UP045
) -> None:
    """Export a reminder as an iCalendar event (for a team calendar)."""
    from meta_tokenvault.errors import NotFound
    from meta_tokenvault.fileutil import atomic_write_private
    from meta_tokenvault.reminders import ics_event

    manager = state.manager()
    match = [r for r in manager.reminders() if r.id == reminder_id]
    if not match:
        raise NotFound(f"No reminder #{reminder_id}.", hint="See `tokenvault reminders list --all`.")
    text = ics_event(match[0], manager.now())
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_private(output, text.encode())


def run_due(json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """One pass for cron/systemd/CronJob: due reminders, deferred work, interrupted rotations, policy."""
    report = state.manager().run_due()
    data = report.as_json()
    if json_out:
        render.emit_json(data)
    else:
        for key, values in data.items():
            if values:
                render.info(f"{key.replace('_', ' ')}: {', '.join(values)}")
        render.ok("run-due pass finished.")
    if report.failed:
        raise typer.Exit(6)
