"""`tokenvault review`: the system-user and token hygiene checks."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from .. import render
from ..state import state


def register(root: typer.Typer) -> None:
    root.command("review")(review)


def review(
    business: Annotated[Optional[str], typer.Option("--business", help="Only this business.")] = None,  # noqa: UP045
    fmt: Annotated[str, typer.Option("--format", metavar="table|md",
                                     help="table (for people) or md (a report to paste into a ticket).")] = "table",
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Check system users and tokens against Meta's best practices; each finding has a stable code.

    Exit 9 when a finding is a warning or worse.
    """
    from meta_tokenvault.errors import UsageError

    if fmt not in ("table", "md"):
        raise UsageError(f"Unknown format {fmt!r}.", hint="Use --format table or --format md.")
    manager = state.manager()
    report = manager.review(business)
    if json_out:
        render.emit_json(report.as_json())
    elif fmt == "md":
        from meta_tokenvault.usecases.review import markdown

        sys.stdout.write(markdown(report, now=manager.now(), business=business))
    elif report.findings:
        render.table("Review", ["severity", "code", "subject", "detail", "fix"],
                     [(f.severity.value, f.code, f.subject, f.detail, f.fix) for f in report.findings],
                     wrap=("detail", "fix"))
        render.info(", ".join(f"{n} {s}" for s, n in report.counts().items()) + ".")
    else:
        render.ok("No findings: every check passed.")
    if report.attention:
        raise typer.Exit(9)
