"""The typer app and its global options. Commands live in :mod:`meta_tokenvault.cli.commands`; none of them
handles errors itself: :func:`meta_tokenvault.cli.main.run` is the one error boundary.

Imported only when a command goes through typer (:mod:`meta_tokenvault.cli.fast` serves ``token reveal`` and ``exec``
without it when it can), so typer, click and the command modules stay out of the fast path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import completion
from .state import state

app = typer.Typer(
    name="tokenvault",
    help="Secure vault and rotation manager for Meta system-user access tokens (WhatsApp Cloud API, Graph API).",
    no_args_is_help=True,
    add_completion=False,  # ours below: an explicit SHELL argument, and the same scripts
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
    graph_url: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--graph-url", help="Graph API base URL (TOKENVAULT_GRAPH_URL)."),
    ] = None,
    install_completion: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--install-completion", metavar="[SHELL]", is_eager=True,
                     expose_value=False, callback=lambda value: _completion("install", value),
                     help="Install completion for SHELL (bash, zsh, fish; default: this shell)."),
    ] = None,
    show_completion: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--show-completion", metavar="[SHELL]", is_eager=True,
                     expose_value=False, callback=lambda value: _completion("show", value),
                     help="Print the completion script for SHELL (bash, zsh, fish; default: this shell)."),
    ] = None,
) -> None:
    """Global options override TOKENVAULT_* variables, which override config.toml."""
    state.reset()
    state.flags = {"home": home, "db_url": db_url, "key_provider": key_provider, "backend": backend,
                   "graph_url": graph_url}


def _completion(what: str, value: str | None) -> None:
    from . import completion

    (completion.install if what == "install" else completion.show)(value)


def _register() -> None:
    from .commands import (
        audit,
        backend,
        business,
        core,
        demo,
        inject,
        keys,
        provision,
        reminders,
        review,
        scan,
        simulator,
        system_users,
        tokens,
    )

    core.register(app)
    app.add_typer(business.app, name="business")
    app.add_typer(tokens.app, name="token")
    app.add_typer(audit.app, name="audit")
    app.add_typer(keys.app, name="keys")
    for module in (system_users, provision, reminders, inject, simulator, backend, demo, scan, review):
        module.register(app)


_register()
completion.init()  # typer's script format for each shell, for the completion protocol (meta_tokenvault.cli.completion)
