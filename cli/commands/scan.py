"""`tokenvault scan`: the vault's own tokens in files, folders, standard input or git history."""

from __future__ import annotations

import io
import sys
import time
from typing import IO, TYPE_CHECKING, Annotated, Optional

import typer

from .. import render
from ..state import state

if TYPE_CHECKING:
    from meta_tokenvault.usecases.scan import RevokedVersion, ScanReport

ROTATE_REASON = "found by tokenvault scan"


def register(root: typer.Typer) -> None:
    root.command("scan")(scan)


def scan(
    paths: Annotated[Optional[list[str]], typer.Argument(  # noqa: UP045
        metavar="PATH", help="Files and folders to scan; `-` for standard input; with --git, repositories.")] = None,
    git: Annotated[bool, typer.Option("--git", help="Scan every blob of the repositories' whole history "
                                                    "(every ref, deleted files too).")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="Rotate every live token found, as compromised "
                                                          "(revoked first), in one bulk run.")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=64,
                                             help="Rotations in parallel with --rotate.")] = 4,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")] = False,
) -> None:
    """Find this vault's tokens (every version) by their keyed fingerprint; never prints a token.

    Exit 9 when a stored token that is not revoked is found (also after --rotate: it had leaked).
    Token-shaped strings the vault does not hold are listed as unknown and do not change the exit code.
    """
    targets = paths or (["."] if git else [])
    manager = state.manager()
    stdin = _stdin_bytes() if "-" in targets else None
    meter = _Meter() if sys.stderr.isatty() and not json_out else None
    try:
        report = manager.scan(targets, git=git, stdin=stdin, progress=meter)
    finally:
        if meter is not None:
            meter.done()
    rotation = None
    rotated: set[str] = set()
    revoked: list[dict[str, object]] = []
    if rotate and report.live_labels:
        from .tokens import _bulk

        started = time.monotonic()
        labels, older = manager.leak_response(report)
        revoked = [r.as_json() for r in manager.revoke_leaked_versions(
            older, progress=None if json_out else _say_revoked)]
        if labels and not json_out:
            render.info(f"Rotating {len(labels)} leaked token(s) as compromised (revoked first)...")
        outcomes = _bulk(manager, labels, True, ROTATE_REASON, concurrency, json_out) if labels else []
        counts = {s: sum(o.state == s for o in outcomes) for s in ("done", "deferred", "failed", "skipped")}
        rotation = {"total": len(outcomes), **counts, "seconds": round(time.monotonic() - started, 1),
                    "outcomes": [o.as_json() for o in outcomes], "revoked_versions": revoked}
        rotated = {o.label for o in outcomes if o.state == "done"}
        rotated |= {str(r["label"]) for r in revoked if r["state"] == "done"}
    if json_out:
        data = report.as_json()
        if rotate:
            data["rotation"] = rotation
        render.emit_json(data)
    else:
        _show(report, rotated)
        if rotation is not None:
            render.info(f"Rotation: {rotation['total']} token(s) in {rotation['seconds']} s: "
                        + ", ".join(f"{rotation[s]} {s}" for s in ("done", "deferred", "failed", "skipped")
                                    if rotation[s] or s == "done") + ".")
    if rotation is not None and (rotation["failed"] or any(r["state"] != "done" for r in revoked)):
        raise typer.Exit(6)
    if rotation is not None and rotation["deferred"]:
        raise typer.Exit(7)
    if report.attention:
        raise typer.Exit(9)


def _say_revoked(result: RevokedVersion) -> None:
    render.info(f"{result.label} v{result.version} (an older version, still valid at Meta): "
                + ("revoked at Meta, marked compromised" if result.state == "done"
                   else f"not revoked: {result.message}"))


def _stdin_bytes() -> IO[bytes]:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    return io.BytesIO(sys.stdin.read().encode("utf-8", errors="surrogateescape"))  # a text stream (tests)


SHOWN = 200  # rows of each table for people; --json lists up to meta_tokenvault.usecases.scan.MAX_LISTED


def _show(report: ScanReport, rotated: set[str]) -> None:
    from meta_tokenvault.usecases.scan import MAX_LISTED

    if report.findings:
        render.table("Stored tokens found", ["label", "v", "status", "live", "where", "line", "last4"],
                     [(f.label, f.version, f.status, "yes" if f.live else "no",
                       f"{f.commit[:12]}:{f.path}" if f.commit else f.path, f.line, f.last4)
                      for f in report.findings[:SHOWN]], wrap=("where",))
    if report.unknown:
        render.table("Unknown token-shaped strings (not in this vault)", ["where", "line", "last4"],
                     [(f"{u.commit[:12]}:{u.path}" if u.commit else u.path, u.line, u.last4)
                      for u in report.unknown[:SHOWN]],
                     wrap=("where",))
    for skipped in report.skipped:
        render.info(f"skipped {skipped.path}: {skipped.reason}")
    more = ""
    shown_findings, shown_unknown = min(len(report.findings), SHOWN), min(len(report.unknown), SHOWN)
    if report.findings_total > shown_findings or report.unknown_total > shown_unknown:
        more = f" (the tables list the first {SHOWN}; --json lists up to {MAX_LISTED:,})"
    render.info(f"Scanned {report.files} file(s), {_size(report.scanned_bytes)} in {report.seconds:.1f} s: "
                f"{report.findings_total} stored token(s) found, {report.unknown_total} unknown{more}.")
    if done := [label for label in report.live_labels if label in rotated]:
        render.info(f"leaked token(s) found and revoked at Meta (current versions rotated as compromised): "
                    f"{', '.join(done)}.")
    if left := [label for label in report.live_labels if label not in rotated]:
        render.info(f"warning: live token(s) found: {', '.join(left)}. Rotate them now: "
                    "`tokenvault token rotate LABEL --compromised` (an older version: `tokenvault token revoke "
                    "LABEL --version N`), or run this scan again with --rotate.")


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return f"{count} B"  # pragma: no cover


class _Meter:
    """A one-line progress meter on stderr (a terminal only), redrawn at most five times a second."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __call__(self, scanned: int, path: str) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        rate = scanned / max(now - self.started, 1e-6) / 1e6
        width = 60
        name = path if len(path) <= width else "…" + path[-(width - 1):]
        sys.stderr.write(f"\r\033[Kscanning {_size(scanned)} ({rate:.0f} MB/s) {name}")
        sys.stderr.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
