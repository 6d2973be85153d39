"""`tokenvault demo`: the whole flow offline, against the built-in Graph API simulator, in a throwaway home."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import render

if TYPE_CHECKING:
    from meta_tokenvault.demo import DemoStep


def register(app: typer.Typer) -> None:
    app.command()(demo)


def demo(
    keep: Annotated[bool, typer.Option("--keep", help="Keep the throwaway home and print where it is.")] = False,
    home: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--demo-home", help="Use this (new) folder instead of a temp one."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Run the whole story offline: sync system users, hit the seven-day rule, mint, verify, exec, rotate,
    rotate a leaked token, let run-due finish deferred work, verify the audit trail."""
    from meta_tokenvault.demo import run_demo

    def show(step: DemoStep) -> None:
        if json_out:
            return
        render.info(f"\n== {step.title}")
        for line in step.lines:
            if line:
                render.info(f"   {line}")

    if not json_out:
        render.info("tokenvault demo: everything below runs offline against the built-in Graph API simulator,\n"
                    "with the real store, encryption and Graph client, in a throwaway home.")
    report = run_demo(keep=keep, home=home, on_step=show)
    if json_out:
        render.emit_json(report.as_json())
        return
    where = f"kept in {report.home}" if report.kept or home else "removed"
    render.ok(f"Demo finished: {len(report.steps)} steps; the throwaway home was {where}.")
