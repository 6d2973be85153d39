"""Top-level `exec`, `inject` and `export`: getting tokens into deployments (see docs/injection.md).

Each command parses, calls :mod:`meta_tokenvault.inject` with the manager, and renders; errors are the boundary's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .. import render
from ..state import state

if TYPE_CHECKING:
    from meta_tokenvault.inject import Injected

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document on stdout describing what was written.")]
AllowInactive = Annotated[bool, typer.Option(
    "--allow-inactive", help="Hand out a retired, revoked or compromised token anyway (it will not work at Meta).")]
FORMATS = ("dotenv", "json", "k8s-secret", "github-env")


def register(app: typer.Typer) -> None:
    app.command("exec", context_settings={"allow_interspersed_args": False})(exec_)
    app.command("inject")(inject)
    app.command("export")(export)


def exec_(
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after `--`.",
                                                 show_default=False, metavar="CMD [ARGS]")],
    token: Annotated[list[str], typer.Option(
        "--token", "-t", help="LABEL or LABEL:ENVVAR (repeatable). One unnamed token is WHATSAPP_TOKEN; "
        "several are TOKENVAULT_<LABEL>.", show_default=False)],
    mask: Annotated[bool, typer.Option("--mask", help="Replace token values in CMD's stdout/stderr with "
                                       "<redacted:LABEL>.")] = False,
    allow_inactive: AllowInactive = False,
    restart_on_rotate: Annotated[bool, typer.Option(
        "--restart-on-rotate", help="Watch the store; when a token gets a new version, SIGTERM CMD and start it "
        "again with the new one.")] = False,
    poll: Annotated[float, typer.Option("--poll", min=0.05,
                                        help="Seconds between checks (--restart-on-rotate).")] = 5.0,
    grace: Annotated[float, typer.Option("--grace", min=0.0, help="Seconds CMD gets to exit after SIGTERM "
                                         "before SIGKILL (--restart-on-rotate).")] = 10.0,
) -> None:
    """Run CMD with tokens in its environment only (not argv, not a file); exit with CMD's exit code.

    Example: tokenvault exec --token prod-whatsapp -- python app.py
    """
    from meta_tokenvault.inject import ExecOptions, current_key, parse_token_specs, resolve_specs, run_command

    specs = parse_token_specs(token)
    manager = state.manager()
    labels = [s.label for s in specs]

    def resolve() -> list[Injected]:
        injected = resolve_specs(manager, specs, allow_inactive=allow_inactive, purpose="exec")
        if not restart_on_rotate:
            manager.store.close()  # no idle database connection for the life of CMD
        return injected

    options = ExecOptions(mask=mask, restart_on_rotate=restart_on_rotate, poll_interval=poll, grace=grace)
    code = run_command(command, resolve, options=options, watch=lambda: current_key(manager, labels),
                       notify=render.info)
    raise typer.Exit(code)


def inject(
    template: Annotated[str, typer.Option("--in", "-i", help="Template file ('-' reads stdin).",
                                          show_default=False)],
    out: Annotated[str, typer.Option("--out", "-o", help="Output file, written 0600 atomically ('-' writes stdout).",
                                     show_default=False)],
    allow_inactive: AllowInactive = False,
    json_out: JsonOpt = False,
) -> None:
    """Replace {{ tokenvault://LABEL }} and {{ tokenvault://LABEL/FIELD }} in TEMPLATE; write OUT only if every
    reference resolves (an existing OUT is replaced only on success)."""
    from meta_tokenvault.inject import parse_template, render_template

    name, text = _read_template(template)
    parsed = parse_template(text, name=name)
    rendered = render_template(parsed, state.manager(), allow_inactive=allow_inactive)
    refs = parsed.references
    if out == "-":
        _refuse_json_to_stdout(json_out, "the rendered template")
        sys.stdout.write(rendered)
        return
    path = _write_private(out, rendered.encode())
    if json_out:
        render.emit_json({"output": str(path), "bytes": len(rendered.encode()), "mode": "0600",
                          "references": [{"label": r.label, "field": r.field, "line": r.line, "col": r.col}
                                         for r in refs]})
    else:
        render.ok(f"Wrote {path} (0600, {len(refs)} reference{'s' if len(refs) != 1 else ''}).")


def export(
    label: Annotated[str, typer.Argument(help="The token to export.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="dotenv | json | k8s-secret | github-env.",
                                         show_default=False)],
    var: Annotated[str, typer.Option("--var", help="Variable / Secret key name.")] = "WHATSAPP_TOKEN",
    name: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--name", help="k8s-secret: metadata.name (default: from the label).")] = None,
    namespace: Annotated[Optional[str], typer.Option(  # noqa: UP045
        "--namespace", "-n", help="k8s-secret: metadata.namespace.")] = None,
    string_data: Annotated[bool, typer.Option("--string-data", help="k8s-secret: stringData (plain) instead of "
                                              "data (base64).")] = False,
    out: Annotated[Optional[str], typer.Option("--out", "-o", help="Write to FILE (0600, atomically) instead of "  # noqa: UP045
                                               "stdout; github-env: append to FILE instead of $GITHUB_ENV.")] = None,
    allow_inactive: AllowInactive = False,
    json_out: JsonOpt = False,
) -> None:
    """Write LABEL's token as a dotenv line, JSON, a Kubernetes Secret, or into GitHub Actions' $GITHUB_ENV."""
    import os

    from meta_tokenvault import inject as inj
    from meta_tokenvault.errors import UsageError

    if format_ not in FORMATS:
        raise UsageError(f"Unknown format {format_!r}.", hint="Use --format " + " | ".join(FORMATS) + ".")
    if format_ == "github-env" and json_out:
        raise UsageError("--json cannot be combined with --format github-env: its stdout carries the "
                         "::add-mask:: command for the runner.")
    record, secret = state.manager().resolve(label, allow_inactive=allow_inactive, purpose="export")
    if format_ == "github-env":
        target = out or os.environ.get("GITHUB_ENV")
        if not target:
            raise UsageError("GITHUB_ENV is not set: this is not a GitHub Actions step.",
                             hint="Run it inside a workflow step, or name the file with -o FILE.")
        block = inj.export_github_env(record, secret, var)
        sys.stdout.write(block.mask)  # first: the runner masks the value before anything could print it
        sys.stdout.flush()
        inj.append_private(target, block.env_block.encode())
        render.ok(f"Exported {label} v{record.version} as {var} to the following steps (masked in logs).")
        return
    if format_ == "dotenv":
        text = inj.export_dotenv(record, secret, var)
    elif format_ == "json":
        text = inj.export_json(record, secret, var)
    else:
        text = inj.export_k8s_secret(record, secret, var, name=name, namespace=namespace, string_data=string_data)
    if out is None or out == "-":
        if format_ != "json":
            _refuse_json_to_stdout(json_out, f"the {format_} export")
        sys.stdout.write(text)
        return
    path = _write_private(out, text.encode())
    if json_out:
        render.emit_json({"output": str(path), "format": format_, "label": label, "version": record.version,
                          "var": var, "mode": "0600"})
    else:
        render.ok(f"Wrote {path} (0600): {label} v{record.version} as {format_}.")


def _read_template(source: str) -> tuple[str, str]:
    from meta_tokenvault.errors import InvalidInput, NotFound

    if source == "-":
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        name = "<stdin>"
    else:
        try:
            data = Path(source).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"No template at {source}.", hint="Check the path given to -i.") from None
        except OSError as exc:
            raise InvalidInput(f"Cannot read the template {source}: {exc.strerror}.") from None
        name = source
    try:
        return name, data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name} is not UTF-8 text (byte {exc.start}).",
                           hint="Templates are text files in UTF-8.") from None


def _write_private(out: str, data: bytes) -> Path:
    from meta_tokenvault.errors import InvalidInput
    from meta_tokenvault.fileutil import atomic_write_private

    path = Path(out)
    if path.is_dir():
        raise InvalidInput(f"{out} is a folder.", hint="Give -o a file path.")
    atomic_write_private(path, data)
    return path


def _refuse_json_to_stdout(json_out: bool, what: str) -> None:
    if json_out:
        from meta_tokenvault.errors import UsageError

        raise UsageError(f"--json describes a written file, but {what} goes to stdout.",
                         hint="Write it with -o FILE, or leave out --json.")
