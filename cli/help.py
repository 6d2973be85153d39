"""``tokenvault --help`` without typer, when typer would print exactly the stored text.

typer's rich help imports typer, click, rich, ``rich.markdown`` (markdown-it), pygments and every command
module: ~8x the bare interpreter before anything is printed. The top-level help is the same text every time
for a given width and terminal, so it is rendered ahead (:mod:`meta_tokenvault.cli.help_text`, by typer itself:
``python tests/test_startup.py --write-help``) and ``tests/test_startup.py`` renders it again with typer and
fails when the two differ, as it checks the fast parser against typer's options.

It is served only where typer's output would be these very bytes: stdout is not a terminal (no colours or
styles), its encoding is UTF-8 (rich's box characters), the width rich would choose is the stored one (rich
asks stdin, stdout, then stderr for a terminal size, else 80), and none of the variables that change typer's or
rich's output is set (:data:`CHANGES_OUTPUT`). Anywhere else - every ``--help`` at a terminal, ``-h`` of a
subcommand - typer prints it, as before.
"""

from __future__ import annotations

import os
import sys

#: Environment variables typer or rich read that can change the help's text (width, colours, terminal
#: detection, rich on/off).
CHANGES_OUTPUT = ("COLUMNS", "TERMINAL_WIDTH", "JUPYTER_COLUMNS", "FORCE_COLOR", "PY_COLORS", "TTY_COMPATIBLE",
                  "TTY_INTERACTIVE", "GITHUB_ACTIONS", "TYPER_USE_RICH", "_TYPER_FORCE_DISABLE_TERMINAL",
                  "DATABRICKS_RUNTIME_VERSION")
TOP_LEVEL = (["--help"], ["-h"])


def rich_width() -> int:
    """The width rich's console takes when nothing sets it: the first of stdin, stdout, stderr that is a
    terminal, else 80 (a pseudo-terminal reporting 0 columns counts as 80)."""
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def can_serve(environ: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """Whether typer would print exactly the stored top-level help here."""
    from .help_text import WIDTH

    env = os.environ if environ is None else environ
    out = sys.stdout
    try:
        if out.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    return (os.name == "posix" and (getattr(out, "encoding", "") or "").lower().replace("_", "-") == "utf-8"
            and not any(name in env for name in CHANGES_OUTPUT) and rich_width() == WIDTH)


def serve(args: list[str]) -> bool:
    """Print the stored top-level help and return True when ``args`` asks for it and typer would print the
    same; False (typer prints it) otherwise."""
    if args not in TOP_LEVEL or not can_serve():
        return False
    from .help_text import TOP_LEVEL_HELP

    sys.stdout.write(TOP_LEVEL_HELP)
    return True
