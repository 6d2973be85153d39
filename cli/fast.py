"""``token reveal``, ``exec`` and ``token list --json`` without typer, click, rich or SQLAlchemy, when that
gives the same result.

:func:`dispatch` recognises exactly these command lines (global options first, as typer takes them)::

    tokenvault [--home P] [--db-url U] [--key-provider K] [--backend B] [--graph-url G] \\
        token reveal LABEL [--version N]
    tokenvault [global options] exec (--token|-t) LABEL[:VAR] ... [--mask] [--allow-inactive] -- CMD [ARGS...]
    tokenvault [global options] token list --json

and runs them on :func:`meta_tokenvault.fastread.open_fast`'s reader (SQLite or PostgreSQL; the local or the
Vault backend; the file, env or keyring key provider). It returns None - run the typer app instead - for
anything else: any other command or option, ``--help``, bad usage, a configuration the fast path does not take
(see :mod:`meta_tokenvault.fastread`) or that does not resolve, or a database error or unusual Vault answer
before the read finished. So usage messages and their exit codes are always typer's, and every error the fast
path does report comes from the code the typer commands run too (the service, :mod:`meta_tokenvault.inject`)
through the same boundary (:func:`meta_tokenvault.cli.main.run`). ``tests/test_startup.py`` checks both paths
give identical output and exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

    from meta_tokenvault.fastread import FastReader
    from meta_tokenvault.inject import Injected

#: The global options of :func:`meta_tokenvault.cli.app.main` (flag -> settings name); a test checks they match typer's.
GLOBAL_OPTIONS = {"--home": "home", "--db-url": "db_url", "--key-provider": "key_provider", "--backend": "backend",
                  "--graph-url": "graph_url"}
#: Options of ``token reveal`` and ``exec`` understood here; a test checks each exists on the typer command.
REVEAL_OPTIONS = ("--version",)
EXEC_VALUE_OPTIONS = ("--token", "-t")
EXEC_FLAGS = {"--mask": "mask", "--allow-inactive": "allow_inactive"}


class FastCommand:
    """A recognised command line (a plain class: a dataclass costs a few hundred microseconds to create)."""

    __slots__ = ("allow_inactive", "command", "flags", "label", "mask", "name", "tokens", "version")

    def __init__(self, name: str, flags: dict[str, Any], *, label: str = "", version: int | None = None) -> None:
        self.name = name  # "reveal" | "exec" | "list"
        self.flags = flags
        self.label = label
        self.version = version
        self.tokens: list[str] = []
        self.mask = False
        self.allow_inactive = False
        self.command: list[str] = []

    def __repr__(self) -> str:
        return f"FastCommand({self.name!r}, label={self.label!r}, tokens={self.tokens!r})"


def _value(args: list[str], i: int) -> tuple[str, int] | None:
    """The value of the option at ``args[i]`` (``--opt=V`` or ``--opt V``) and the next index."""
    name, eq, value = args[i].partition("=")
    if not eq:
        if i + 1 >= len(args):
            return None
        value, i = args[i + 1], i + 1
    if not value or value.startswith("-"):
        return None  # empty, or what click might read differently: typer decides
    return value, i + 1


def recognise(args: list[str]) -> FastCommand | None:
    """The fast command ``args`` is, or None (then typer handles them)."""
    flags: dict[str, Any] = {}
    i = 0
    while i < len(args) and args[i].startswith("--"):
        name = args[i].partition("=")[0]
        if name not in GLOBAL_OPTIONS or GLOBAL_OPTIONS[name] in flags:
            return None
        got = _value(args, i)
        if got is None:
            return None
        value, i = got
        flags[GLOBAL_OPTIONS[name]] = Path(value) if name == "--home" else value
    rest = args[i:]
    if rest[:2] == ["token", "reveal"]:
        return _reveal(flags, rest[2:])
    if rest == ["token", "list", "--json"]:
        return FastCommand("list", flags)
    if rest[:1] == ["exec"]:
        return _exec(flags, rest[1:])
    return None


def _reveal(flags: dict[str, Any], args: list[str]) -> FastCommand | None:
    labels: list[str] = []
    version: int | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.partition("=")[0] == "--version" and version is None:
            got = _value(args, i)
            if got is None or not got[0].isdigit() or not got[0].isascii():
                return None
            version, i = int(got[0]), got[1]
        elif arg.startswith("-") or labels:
            return None
        else:
            labels.append(arg)
            i += 1
    if len(labels) != 1:
        return None
    return FastCommand("reveal", flags, label=labels[0], version=version)


def _exec(flags: dict[str, Any], args: list[str]) -> FastCommand | None:
    cmd = FastCommand("exec", flags)
    i = 0
    while i < len(args) and args[i] != "--":
        arg = args[i]
        name = arg.partition("=")[0] if arg.startswith("--") else arg
        if name in EXEC_VALUE_OPTIONS and not (name == "-t" and "=" in arg):
            got = _value(args, i)
            if got is None:
                return None
            cmd.tokens.append(got[0])
            i = got[1]
        elif arg in EXEC_FLAGS and not getattr(cmd, EXEC_FLAGS[arg]):
            setattr(cmd, EXEC_FLAGS[arg], True)
            i += 1
        else:
            return None
    cmd.command = args[i + 1:]
    if not cmd.tokens or not cmd.command:
        return None
    return cmd


def dispatch(args: list[str]) -> int | None:
    """Run ``args`` on the fast path and return the exit code, or None when typer must run them.

    Errors of the read itself (unknown label, wrong key, tampered row, inactive token, a command that cannot
    be started) are raised as the :class:`~meta_tokenvault.errors.VaultError` the typer path raises.
    """
    cmd = recognise(args)
    if cmd is None:
        return None
    from meta_tokenvault.config import Settings
    from meta_tokenvault.errors import VaultError
    from meta_tokenvault.fastread import FastPathUnavailable, open_fast

    try:
        reader = open_fast(Settings.resolve(cmd.flags), explicit_backend=cmd.flags.get("backend"))
    except VaultError:
        return None  # configuration problems are reported by the full path, word for word as always
    if reader is None:
        return None
    try:
        with reader:
            if cmd.name == "reveal":
                secret = reader.reveal(cmd.label, version=cmd.version)
                sys.stdout.write(secret.reveal() + "\n")
                return 0
            if cmd.name == "list":
                from . import render

                render.emit_json_lines(reader.list_tokens_json())
                return 0
            return _run_exec(reader, cmd)
    except FastPathUnavailable:
        return None  # nothing was written and nothing run: the full path starts over


def _run_exec(reader: FastReader, cmd: FastCommand) -> int:
    """What ``meta_tokenvault.cli.commands.inject.exec_`` does without --restart-on-rotate, on the fast reader."""
    from meta_tokenvault.inject.run import ExecOptions, parse_token_specs, resolve_specs, run_command

    specs = parse_token_specs(cmd.tokens)

    def resolve() -> list[Injected]:
        injected = resolve_specs(reader, specs, allow_inactive=cmd.allow_inactive, purpose="exec")
        reader.close()  # no idle database connection for the life of CMD
        return injected

    return run_command(cmd.command, resolve, options=ExecOptions(mask=cmd.mask), notify=_notify)


def _notify(message: str) -> None:
    from . import render  # rarely needed (it compiles its patterns on import): not on exec's path

    render.info(message)
