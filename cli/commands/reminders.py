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
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Deferred work (generate, rotate, create_system_user, provision), its due date and status."""
    manager = state.manager()
    now = manager.now()
    items = [r.as_json(now) for r in manager.reminders(open_only=not all_)]
    if json_out:
        render.emit_json(items)
        return
    render.table("Reminders", ["#", "label", "action", "business", "due (UTC)", "status", "reason"],
                 [(i["id"], i["label"], i["action"], i["business"], str(i["due_at"])[:16].replace("T", " "),
                   i["status"], i["reason"]) for i in items], wrap=("reason",),
                 empty="No reminders." if all_ else "No open reminders (`--all` lists done and failed ones too).")


@app.command("ics")
def ics(
    reminder_id: Annotated[int, typer.Argument(metavar="ID", help="The reminder's # (`reminders list`).")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Write to a file (0600).")] = None,  # noqa: UP045
) -> None:
    """Export a reminder as an iCalendar event (for a team calendar)."""
    from meta_tokenvault.errors import NotFound
    from meta_tokenvault.fileutil import atomic_write_private
    from meta_tokenvault.usecases.run_due import ics_event

    manager = state.manager()
    match = [r for r in manager.reminders() if r.id == reminder_id]
    if not match:
        raise NotFound(f"No reminder #{reminder_id}.", hint="See `tokenvault reminders list --all`.")
    text = ics_event(match[0], manager.now())
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_private(output, text.encode())


def run_due(
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, max=64,
        help="Graph calls in parallel for checks and renewals; they stay within the rate limit.")] = 8,
    rate_limit: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--rate-limit", metavar="CALLS/SECONDS",
        help="The app's Graph API limit, kept by pacing the calls (default: TOKENVAULT_GRAPH_RATE_LIMIT).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """One pass for cron/systemd/CronJob: due reminders, deferred work, interrupted rotations; checks tokens not
    verified lately (debug_token), refreshes expiring ones, reissues invalidated ones, rotates by max age.

    Progress on stderr (a line per token checked or renewed; none with --json). Exit 6 if anything failed.
    """
    import threading

    if rate_limit is not None:
        state.flags["graph_rate_limit"] = rate_limit
        state._settings = None  # resolved again with the flag
    lock, counts = threading.Lock(), {"verify": 0, "refresh": 0, "reissue": 0}

    def progress(phase: str, label: str, outcome: str) -> None:
        with lock:
            counts[phase] += 1
            if not json_out and (phase != "verify" or outcome != "active"):  # a healthy check says nothing
                render.info(f"[{phase} {counts[phase]}] {label}: {outcome}")

    report = state.manager().run_due(concurrency=concurrency, progress=progress)
    data = report.as_json()
    if json_out:
        render.emit_json(data)
    else:
        for key, values in data.items():
            if isinstance(values, int):
                if values:
                    render.info(f"{key.replace('_', ' ')}: {values} token(s)")
            elif isinstance(values, list) and values:
                render.info(f"{key.replace('_', ' ')}: {', '.join(str(v) for v in values)}")
        if report.failed:
            render.info(f"run-due pass finished with {len(report.failed)} failure(s) (above).")
        else:
            render.ok("run-due pass finished.")
    if report.failed:
        raise typer.Exit(6)
