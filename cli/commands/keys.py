"""`tokenvault keys ...`: master key management."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import render
from ..state import state

app = typer.Typer(help="Master key management.", no_args_is_help=True)


@app.command("rotate")
def rotate(json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False) -> None:
    """New master key; every data key re-wrapped. Safe to interrupt: run it again to finish."""
    manager = state.manager()

    def progress(done: int, total: int) -> None:
        if not json_out and (done == total or done % 100 == 0):
            render.info(f"re-wrapped {done}/{total}")

    try:
        result = manager.rotate_master_key(progress=progress)
    except KeyboardInterrupt:
        render.error("interrupted; every secret is readable with the old or the new master key",
                     "Run `tokenvault keys rotate` again to finish the rotation.")
        raise typer.Exit(130) from None
    if json_out:
        render.emit_json({"key_id": result.new_key_id, "rewrapped": result.rewrapped, "retired": result.retired})
    else:
        render.ok(f"Master key rotated to {result.new_key_id}: {result.rewrapped} secrets re-wrapped, "
                  f"{len(result.retired)} old key(s) retired.")
