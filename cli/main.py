"""The typer app, its global options, and the ONE error boundary that maps errors to exit codes.

Commands live in :mod:`cli.commands`; none of them handles errors itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .state import state

app = typer.Typer(
    name="tokenvault",
    help="Secure vault and rotation manager for Meta system-user access tokens (WhatsApp Cloud API, Graph API).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # a token in a local variable must never reach a traceback
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    home: Annotated[Optional[Path], typer.Option("--home", help="Data folder (TOKENVAULT_HOME).")] = None,  # noqa: UP045
    db_url: Annotated[Optional[str], typer.Option("--db-url", help="Metadata DB URL (TOKENVAULT_DB_URL).")] = None,  # noqa: UP045
    key_provider: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--key-provider", help="keyring | file | env | vault-transit (TOKENVAULT_KEY_PROVIDER)."),
    ] = None,
    backend: Annotated[Optional[str], typer.Option("--backend", help="local | vault (TOKENVAULT_BACKEND).")] = None,  # noqa: UP045
    graph_url: Annotated[Optional[str], typer.Option("--graph-url", help="Graph API base URL (TOKENVAULT_GRAPH_URL).")] = None,  # noqa: UP045
) -> None:
    """Global options override TOKENVAULT_* variables, which override config.toml."""
    state.reset()
    state.flags = {"home": home, "db_url": db_url, "key_provider": key_provider, "backend": backend,
                   "graph_url": graph_url}


def _register() -> None:
    from .commands import audit, business, core, keys, tokens

    core.register(app)
    app.add_typer(business.app, name="business")
    app.add_typer(tokens.app, name="token")
    app.add_typer(audit.app, name="audit")
    app.add_typer(keys.app, name="keys")
    for optional in ("system_users", "reminders", "inject", "simulator", "backend", "demo"):
        try:
            module = __import__(f"cli.commands.{optional}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"cli.commands.{optional}":
                raise
            continue
        module.register(app)


_register()


def run(argv: list[str] | None = None) -> int:
    """Entry point: run the app and turn every error into one line, a hint and the contract's exit code."""
    import click

    from vault.errors import VaultError

    code = 0
    try:
        result = app(args=argv, prog_name="tokenvault", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except VaultError as exc:
        from .render import error

        error(exc.message, exc.hint)
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.exceptions.Abort:
        sys.stderr.write("error: aborted\n")
        code = 2
    except click.ClickException as exc:
        exc.show()
        code = 2
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted; nothing half-done was recorded as done "
                         "(interrupted rotations resume with `tokenvault run-due`)\n")
        code = 130
    except BrokenPipeError:
        code = 0
    except Exception as exc:  # noqa: BLE001 - the boundary: a bug, reported without locals or secrets
        from vault.redact import redact_text

        sys.stderr.write(f"error: unexpected {type(exc).__name__}: {redact_text(str(exc))}\n"
                         "hint: this is a bug in tokenvault; please report it with the command you ran "
                         "(never include tokens).\n")
        if os.environ.get("TOKENVAULT_DEBUG") == "1":
            import traceback

            traceback.print_exception(type(exc), exc, None)  # no frames: no locals, no source lines
        code = 1
    finally:
        state.reset()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    run()
