"""`tokenvault token ...`: capture, list, show, reveal, verify, revoke (generate/rotate join later)."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from meta_tokenvault.service import TokenManager
    from meta_tokenvault.types import TokenRecord
    from meta_tokenvault.usecases.rotate import RotationOutcome

from .. import render
from ..prompts import read_secret
from ..state import state

app = typer.Typer(help="Tokens: capture, mint, inspect, rotate, revoke.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout.")]
LabelArg = Annotated[str, typer.Argument(help="The token's label.")]
OnInvalidOpt = Annotated[str, typer.Option(
    "--on-invalid", metavar="reissue|alert",
    help="When Meta invalidates the token: run-due mints a new one (reissue), or only notifies (alert).")]


def split_csv(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def expiry(value: datetime | None, now: datetime, *, table: bool = False, checked: bool = True) -> str:
    """An expiry for people: the date and a countdown ("in 12 days"); "never" for a token that does not expire,
    "not known" for one never checked with Meta (imported with --no-verify: its expiry was never read)."""
    from meta_tokenvault.policy import countdown

    if value is None:
        return "never" if checked else "not known"
    return f"{countdown(value, now=now)} ({render.stamp(value) if table else render.when(value)})"


def show_record(record: TokenRecord, json_out: bool, now: datetime | None = None) -> None:
    if json_out:
        data = record.as_json()
        if record.history:
            data["history"] = [
                {"version": v.version, "status": v.status.value, "source": v.source.value,
                 "created_at": v.created_at.isoformat(),
                 "revoked_at": v.revoked_at.isoformat() if v.revoked_at else None,
                 "fingerprint": v.fingerprint, "last4": v.last4, "system_user_id": v.system_user_id}
                for v in record.history]
        render.emit_json(data)
        return
    p = record.provenance
    now = now or datetime.now(UTC)
    render.keyvalues([
        ("label", record.label), ("status", record.status.value), ("version", record.version),
        ("source", record.source.value), ("business", f"{record.business_name} ({p.business_id})"),
        ("system user", p.system_user_id), ("app", p.app_id), ("scopes", ", ".join(p.scopes)),
        ("WABAs", ", ".join(p.waba_ids) or "-"), ("created", render.when(record.created_at)),
        ("expires", expiry(record.expires_at, now, checked=record.verified_at is not None)),
        ("data access expires", expiry(record.data_access_expires_at, now) if record.data_access_expires_at
         else "not known" if record.verified_at is None else "never"),
        ("verified", render.when(record.verified_at, "not yet")), ("on invalid", record.on_invalid),
        ("fingerprint", record.fingerprint), ("last4", record.last4), ("backend", record.backend),
    ])
    if record.history:
        render.table("Versions", ["version", "status", "source", "created", "revoked", "last4"],
                     [(v.version, v.status.value, v.source.value, render.when(v.created_at),
                       render.when(v.revoked_at, "-"), v.last4) for v in record.history])
    if record.status.value in ("compromised", "revoked", "invalidated"):
        render.info(f"warning: {record.label} has no working token (status {record.status.value}); "
                    "see `tokenvault reminders list`"
                    + ("; `tokenvault run-due` reissues it." if record.status.value == "invalidated"
                       and record.on_invalid == "reissue" else "."))


@app.command("import")
def import_(
    label: Annotated[str, typer.Argument(help="A label for the token, e.g. prod-whatsapp.")],
    business: Annotated[str, typer.Option("--business", help="The registered business name.")],
    system_user: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--system-user", help="The system user id that generated it."),
    ] = None,
    scopes: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--scopes", help="Comma-separated scopes, e.g. whatsapp_business_messaging."),
    ] = None,
    waba: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--waba", help="A WABA id the token reaches (repeatable)."),
    ] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Do not check the token with debug_token.")] = False,
    max_age_days: Annotated[Optional[int], typer.Option("--max-age-days", help="Rotate when older than this.")] = None,  # noqa: UP045
    on_invalid: OnInvalidOpt = "reissue",
    json_out: JsonOpt = False,
) -> None:
    """Store a token captured at generation time, read from stdin or a hidden prompt (never argv)."""
    from meta_tokenvault.validation import validate_on_invalid

    validate_on_invalid(on_invalid)
    secret = read_secret("token")
    record = state.manager().import_token(
        label, business=business, secret=secret, system_user_id=system_user, scopes=split_csv(scopes),
        waba_ids=waba or [], verify=not no_verify, max_age_days=max_age_days, on_invalid=on_invalid)
    if json_out:
        render.emit_json(record.as_json())
    else:
        render.ok(f"Stored {record.label} v{record.version} (…{record.last4}, fingerprint {record.fingerprint[:12]}).")


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """Every token's metadata and provenance; never a secret. --json: an array, one token per line."""
    manager = state.manager()
    if json_out:
        render.emit_json_lines(manager.list_tokens_json())
        return
    records = manager.list_tokens()
    if not records:
        render.info("No tokens yet: capture one with `tokenvault token import LABEL --business NAME` "
                    "or mint one with `tokenvault token generate LABEL --business NAME`.")
        return
    now = manager.now()
    render.table("Tokens",
                 ["label", "status", "v", "business", "system user", "scopes", "expires (UTC)", "data access",
                  "verified (UTC)", "last4"],
                 [(r.label, r.status.value, r.version, r.business_name, r.provenance.system_user_id,
                   ", ".join(r.provenance.scopes),
                   expiry(r.expires_at, now, table=True, checked=r.verified_at is not None),
                   render.stamp(r.data_access_expires_at, "-"), render.stamp(r.verified_at, "-"),
                   r.last4) for r in records], wrap=("scopes",))


@app.command("show")
def show(label: LabelArg, json_out: JsonOpt = False) -> None:
    """Metadata, provenance and version history of LABEL; never the secret."""
    manager = state.manager()
    show_record(manager.show_token(label), json_out, manager.now())


@app.command("reveal")
def reveal(
    label: LabelArg,
    version: Annotated[Optional[int], typer.Option("--version", help="An older version.")] = None,  # noqa: UP045
) -> None:
    """Print the secret alone on stdout (audited). Prefer `tokenvault exec` or `inject`."""
    secret = state.manager().reveal(label, version=version)
    sys.stdout.write(secret.reveal() + "\n")


@app.command("verify")
def verify(
    label: Annotated[Optional[str], typer.Argument(help="The token to check.")] = None,  # noqa: UP045
    all_: Annotated[bool, typer.Option("--all", help="Check every active token.")] = False,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, max=64, help="Checks in parallel (--all); Graph calls stay within the rate limit.")
    ] = 8,
    phone_number: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--phone-number", metavar="ID",
                     help="Also read this WhatsApp phone number id with the token (a live WhatsApp check)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Ask Meta's debug_token about LABEL (or, --all, every active token) now and record the answer.

    A token Meta says is not valid becomes `invalidated` (run-due reissues it). Exit 6 if any is not valid.
    """
    from meta_tokenvault.errors import TokenInvalid, UsageError

    if (label is None) == (not all_):
        raise UsageError("Name a LABEL, or use --all." if label is None else "Give either a LABEL or --all, not both.")
    manager = state.manager()
    if label is None:
        _verify_all(manager, concurrency, json_out)
        return
    record, info = manager.verify(label)
    whatsapp = manager.check_whatsapp(label, phone_number) if phone_number and info.is_valid else None
    if json_out:
        data = record.as_json()
        data["valid"] = info.is_valid
        data["error"] = info.error_message
        if phone_number:
            data["whatsapp"] = whatsapp
        render.emit_json(data)
    elif info.is_valid:
        render.ok(f"{label} is valid (system user {info.user_id}, scopes {', '.join(info.scopes)}, "
                  f"expires {render.when(info.expires_at)}).")
        if whatsapp is not None:
            render.ok(f"{label} reads WhatsApp number {whatsapp.get('display_phone_number', phone_number)} "
                      f"({whatsapp.get('verified_name', '?')}, quality {whatsapp.get('quality_rating', '?')}).")
    if not info.is_valid:
        raise TokenInvalid(f"Meta says {label} is not valid: {info.error_message or 'no reason given'}.")


def _verify_all(manager: TokenManager, concurrency: int, json_out: bool) -> None:
    """`token verify --all`: progress on stderr (a line per token, none with --json), a summary; exit 6 if any
    token is not valid or could not be checked, or is still `invalidated` from an earlier check (not reissued
    yet, or its policy is on-invalid alert): a monitor built on this command keeps alerting until it is fixed."""
    import threading

    from meta_tokenvault.usecases.verify import Check

    lock, done = threading.Lock(), [0]
    statuses = [(t.label, t.status.value) for t in manager.list_tokens()]
    total = sum(1 for _label, status in statuses if status == "active")
    # dead since an earlier check: verify_all checks active tokens only, so this listing stays true after it
    still_dead = sorted(label for label, status in statuses if status == "invalidated")

    def tick(check: Check) -> None:
        with lock:
            done[0] += 1
            if not json_out:
                what = "valid" if check.valid else f"{check.status}: {check.error}" if check.valid is False \
                    else f"not checked: {check.error}"
                render.info(f"[{done[0]}/{total}] {check.label}: {what}")

    started = time.monotonic()
    checks = manager.verify_all(concurrency=concurrency, progress=tick)
    invalid = [c for c in checks if c.valid is False]
    unchecked = [c for c in checks if c.valid is None]
    if json_out:
        render.emit_json({"total": len(checks), "valid": sum(c.valid is True for c in checks),
                          "invalid": len(invalid), "unchecked": len(unchecked), "still_invalidated": still_dead,
                          "seconds": round(time.monotonic() - started, 1), "checks": [c.as_json() for c in checks]})
    else:
        render.info(f"{len(checks)} token(s) checked in {time.monotonic() - started:.1f} s: "
                    f"{len(checks) - len(invalid) - len(unchecked)} valid, {len(invalid)} invalid"
                    + (f", {len(unchecked)} not checked" if unchecked else "") + ".")
        if invalid:
            render.info("invalidated: " + ", ".join(c.label for c in invalid)
                        + " (`tokenvault run-due` reissues them unless their policy is on-invalid alert)")
        if still_dead:
            render.info("still invalidated from an earlier check: " + ", ".join(still_dead)
                        + " (`tokenvault run-due` reissues them; on-invalid alert ones: `tokenvault token rotate`)")
    if invalid or unchecked or still_dead:
        raise typer.Exit(6)


@app.command("refresh")
def refresh(label: Annotated[str, typer.Argument(help="The token to refresh (a 60-day one).")],
            json_out: JsonOpt = False) -> None:
    """Exchange LABEL's 60-day token for a new one (Meta's fb_exchange_token; the old one keeps working until it
    expires). Falls back to a rotation through an eligible admin when Meta refuses. Exit 7 when deferred."""
    outcome = state.manager().refresh(label)
    if json_out:
        render.emit_json(outcome.as_json())
    elif outcome.kind == "refresh":
        render.ok(f"Refreshed {label}: v{outcome.from_version} → v{outcome.to_version} active.")
    else:  # Meta refused the exchange
        render.ok(f"Meta refused to refresh {label}; rotated it through an admin system user instead: "
                  f"v{outcome.to_version} active, v{outcome.from_version} revoked.")


@app.command("revoke")
def revoke(
    label: LabelArg,
    version: Annotated[Optional[int], typer.Option(  # noqa: UP045
        "--version", min=1, help="An older version instead (e.g. one a refresh retired: Meta keeps it valid "
                                 "until its own expiry).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke LABEL's current token (or --version N) at Meta and mark it revoked."""
    record = state.manager().revoke(label, version=version)
    if json_out:
        render.emit_json(record.as_json())
    else:
        render.ok(f"Revoked {label} v{version or record.version} at Meta.")


@app.command("generate")
def generate(
    label: Annotated[str, typer.Argument(help="A label for the new token.")],
    business: Annotated[str, typer.Option("--business", help="The registered business name.")],
    scopes: Annotated[str, typer.Option("--scopes", help="Comma-separated scopes.")] = (
        "whatsapp_business_management,whatsapp_business_messaging"),
    system_user: Annotated[Optional[str], typer.Option("--system-user", help="Mint through this system user.")] = None,  # noqa: UP045
    expiring: Annotated[
        bool, typer.Option("--expiring", help="A 60-day token instead of a never-expiring one.")] = False,
    max_age_days: Annotated[Optional[int], typer.Option("--max-age-days", help="Rotate when older than this.")] = None,  # noqa: UP045
    on_invalid: OnInvalidOpt = "reissue",
    json_out: JsonOpt = False,
) -> None:
    """Mint through an admin system user (the oldest first). Exit 7 with the date if Meta refuses (seven-day rule)."""
    from meta_tokenvault.validation import validate_on_invalid

    validate_on_invalid(on_invalid)
    record = state.manager().generate_token(label, business=business, scopes=split_csv(scopes),
                                            system_user_id=system_user, expiring=expiring,
                                            max_age_days=max_age_days, on_invalid=on_invalid)
    if json_out:
        render.emit_json(record.as_json())
    else:
        render.ok(f"Minted {record.label} v{record.version} through system user {record.provenance.system_user_id} "
                  f"(…{record.last4}, expires {render.when(record.expires_at)}).")


@app.command("rotate")
def rotate(
    label: Annotated[Optional[str], typer.Argument(help="The token to rotate.")] = None,  # noqa: UP045
    compromised: Annotated[bool, typer.Option("--compromised", help="Revoke the old token FIRST, then mint.")] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit trail).")] = "",
    all_: Annotated[bool, typer.Option("--all", help="Rotate every active token.")] = False,
    system_user: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--system-user", help="Rotate every token minted by this system user."),
    ] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", min=1, max=64, help="Rotations in parallel (bulk); Graph calls stay within the rate limit.")
    ] = 8,
    rate_limit: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--rate-limit", metavar="CALLS/SECONDS",
        help="The app's Graph API limit, kept by pacing the calls (default: TOKENVAULT_GRAPH_RATE_LIMIT).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Revoke-and-reissue. Normal: mint, store, verify, promote, revoke old. --compromised: revoke old first.

    Bulk (--all, --system-user): progress on stderr; --json: one document. Exit 6 if any failed, 7 if deferred.
    """
    from meta_tokenvault.errors import UsageError

    if rate_limit is not None:
        state.flags["graph_rate_limit"] = rate_limit
        state._settings = None  # resolved again with the flag
    manager = state.manager()
    if (label is None) == (not all_ and system_user is None):
        if label is None:
            raise UsageError("Name a LABEL, or use --all / --system-user ID.")
        raise UsageError("Give either a LABEL or --all / --system-user, not both.")
    if label is not None:
        outcome = manager.rotate(label, compromised=compromised, reason=reason)
        if json_out:
            render.emit_json(outcome.as_json())
        else:
            render.ok(f"Rotated {label}: v{outcome.from_version} → v{outcome.to_version} active; "
                      f"v{outcome.from_version} {'compromised and revoked' if compromised else 'revoked'} at Meta.")
        return
    labels = manager.labels_for(system_user_id=system_user)
    started = time.monotonic()
    outcomes = _bulk(manager, labels, compromised, reason, concurrency, json_out)
    counts = {state_: sum(o.state == state_ for o in outcomes) for state_ in ("done", "deferred", "failed", "skipped")}
    if json_out:
        render.emit_json({"total": len(outcomes), **counts, "seconds": round(time.monotonic() - started, 1),
                          "concurrency": concurrency, "outcomes": [o.as_json() for o in outcomes]})
    else:
        shown = outcomes if len(outcomes) <= 50 else [o for o in outcomes if o.state != "done"]
        if shown:
            render.table("Rotation", ["label", "state", "from", "to", "message"],
                         [(o.label, o.state, o.from_version or "", o.to_version or "", o.message) for o in shown],
                         wrap=("message",))
        render.info(f"{len(outcomes)} token(s) in {time.monotonic() - started:.1f} s: "
                    + ", ".join(f"{n} {state_}" for state_, n in counts.items() if n or state_ == "done") + ".")
    if counts["failed"]:
        raise typer.Exit(6)
    if counts["deferred"]:
        raise typer.Exit(7)


def _bulk(manager: TokenManager, labels: list[str], compromised: bool, reason: str, concurrency: int,
          json_out: bool) -> list[RotationOutcome]:
    """Rotate ``labels``, showing progress on stderr: a bar on a terminal, else a line per token (none with
    --json, whose document is the report)."""
    import threading

    if json_out or not sys.stderr.isatty():
        lock, done = threading.Lock(), [0]

        def tick(outcome: RotationOutcome) -> None:
            with lock:
                done[0] += 1
                if not json_out:
                    render.info(f"[{done[0]}/{len(labels)}] {outcome.label}: {outcome.state}"
                                + (f": {outcome.message}" if outcome.message else ""))

        return manager.rotate_many(labels, compromised=compromised, reason=reason, concurrency=concurrency,
                                   progress=tick)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("rotating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[failed]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("rotating", total=len(labels), failed="")
        failed = [0]

        def advance(outcome: RotationOutcome) -> None:
            if outcome.state not in ("done", "skipped"):
                failed[0] += 1
                bar.update(task, failed=f"{failed[0]} not rotated")
            bar.advance(task)

        return manager.rotate_many(labels, compromised=compromised, reason=reason, concurrency=concurrency,
                                   progress=advance)
