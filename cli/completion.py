"""Shell completion: ``tokenvault --show-completion [SHELL]`` and ``--install-completion [SHELL]``.

The scripts and the completion protocol are typer's (``_TOKENVAULT_COMPLETE=complete_bash`` and so on: the
shell runs ``tokenvault`` with that variable set and the words typed so far, and typer answers with the
candidates). What is ours: SHELL may be named (``bash``, ``zsh``, ``fish``; typer also knows ``powershell``
and ``pwsh``) instead of only being detected from the parent process, which does not work in a script or
a Dockerfile. :func:`meta_tokenvault.cli.main.run` sends the completion protocol straight to typer (the fast path never
sees it), and none of this is imported by the fast path.
"""

from __future__ import annotations

import os

import typer

PROG = "tokenvault"
#: The variable the generated scripts set when they ask for completions (typer's naming).
COMPLETE_VAR = "_TOKENVAULT_COMPLETE"
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def init() -> None:
    """Register typer's completion classes (its script format for each shell) with the click it runs on."""
    from typer._completion_classes import completion_init  # typer.completion imports it from here

    completion_init()


def _shell(value: str) -> str:
    """The shell named, else the shell this command runs under; UsageError-like exit 2 when neither."""
    from .render import error

    if value:
        if value not in SHELLS:
            error(f"Unknown shell {value!r}.", f"Choose one of {', '.join(SHELLS)}.")
            raise typer.Exit(2)
        return value
    import shellingham  # type: ignore[import-untyped]

    try:
        name, _path = shellingham.detect_shell()
    except shellingham.ShellDetectionFailure:
        name = os.path.basename(os.environ.get("SHELL", ""))
    if name not in SHELLS:
        error("Could not tell which shell this is.", "Name it: --show-completion bash|zsh|fish.")
        raise typer.Exit(2)
    return str(name)


def script(shell: str) -> str:
    """The completion script for ``shell`` (it names ``tokenvault`` and :data:`COMPLETE_VAR`)."""
    from typer._completion_shared import get_completion_script

    init()
    return get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)


def show(value: str | None) -> None:
    """``--show-completion [SHELL]``: print the script and stop."""
    if value is None:
        return
    typer.echo(script(_shell(value)))
    raise typer.Exit(0)


def install(value: str | None) -> None:
    """``--install-completion [SHELL]``: write the script where SHELL reads it (typer's places: ~/.bashrc
    sources ~/.bash_completions/tokenvault.sh, ~/.zfunc for zsh, ~/.config/fish/completions) and stop."""
    if value is None:
        return
    from typer._completion_shared import install as install_script

    init()
    shell, path = install_script(shell=_shell(value), prog_name=PROG, complete_var=COMPLETE_VAR)
    typer.echo(f"{shell} completion installed in {path}; it takes effect in a new shell.")
    raise typer.Exit(0)
