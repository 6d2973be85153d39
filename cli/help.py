"""``tokenvault --help`` without typer, when typer would print exactly the stored text.

typer's rich help imports typer, click, rich, ``rich.markdown`` (markdown-it), pygments and every command
module: ~8x the bare interpreter before anything is printed (~17x from a wheel install). The top-level help
depends only on the width rich lays it out at and on how rich styles it, so it is rendered ahead, by typer
itself, at every width of :data:`WIDTHS` in each of three forms (:data:`VARIANTS`) and stored compressed in
``help_text.bin`` next to this module (``python tests/test_startup.py --write-help``). tests/test_help.py renders
every width and form again with typer (with each colour setup served) and fails on any byte that differs, as
tests/test_startup.py checks the fast parser against typer's options.

The forms are what rich prints for typer's help:

* ``plain``: stdout is not a terminal (a pipe, a file): no escape sequences at all;
* ``terminal``: stdout is a terminal whose ``TERM`` is not ``dumb``/``unknown``: bold, dim and the standard
  colours typer's theme uses (cyan, green, yellow), the same SGR codes whichever colour system rich detects
  (standard, 256 colours, truecolor from ``TERM``/``COLORTERM``: rich only ever downgrades a colour);
* ``no-color``: the same with ``NO_COLOR`` set to a non-empty value (rich keeps bold and dim, drops colours).

It is served only where typer's output would be these very bytes: POSIX, stdout's encoding is UTF-8 (rich's
box characters), the width rich would choose is one of :data:`WIDTHS` (rich asks stdin, stdout, then stderr for
a terminal size, else 80), a terminal is not dumb, none of the variables that change typer's or rich's output
otherwise is set (:data:`CHANGES_OUTPUT`), and the typer and rich that would be imported are the versions the
store was rendered with (their ``.dist-info`` folders beside them: :func:`rendered_by`). Anywhere else - a
wider or narrower terminal, a dumb one, another rich, ``-h`` of a subcommand - typer prints it, as before.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: Environment variables typer or rich read that can change the help's text otherwise than
#: :func:`variant` accounts for (width, terminal detection, forced colours, rich on/off).
CHANGES_OUTPUT = ("COLUMNS", "TERMINAL_WIDTH", "JUPYTER_COLUMNS", "FORCE_COLOR", "PY_COLORS", "TTY_COMPATIBLE",
                  "TTY_INTERACTIVE", "GITHUB_ACTIONS", "TYPER_USE_RICH", "_TYPER_FORCE_DISABLE_TERMINAL",
                  "DATABRICKS_RUNTIME_VERSION")
TOP_LEVEL = (["--help"], ["-h"])
#: The stored forms, in their order in help_text.bin (see the module's docstring).
VARIANTS = ("terminal", "plain", "no-color")
TERMINAL, PLAIN, NO_COLOR = range(3)
#: The widths stored: every terminal width from FIRST_WIDTH to LAST_WIDTH.
FIRST_WIDTH, LAST_WIDTH = 40, 240
WIDTHS = range(FIRST_WIDTH, LAST_WIDTH + 1)
DATA_FILE = "help_text.bin"


def rich_width() -> int:
    """The width rich's console takes when nothing sets it: the first of stdin, stdout, stderr that is a
    terminal, else 80 (a pseudo-terminal reporting 0 columns counts as 80)."""
    for fd in (0, 1, 2):
        try:
            return os.get_terminal_size(fd).columns or 80
        except (AttributeError, ValueError, OSError):
            continue
    return 80


def variant(environ: Mapping[str, str] | None = None) -> int | None:
    """Which stored form typer would print here (:data:`TERMINAL`, :data:`PLAIN`, :data:`NO_COLOR`), or None
    when it is none of them (typer prints the help)."""
    env = os.environ if environ is None else environ
    out = sys.stdout
    try:
        tty = out.isatty()
    except (AttributeError, ValueError):
        return None
    if (os.name != "posix" or (getattr(out, "encoding", "") or "").lower().replace("_", "-") != "utf-8"
            or any(name in env for name in CHANGES_OUTPUT)):
        return None
    if not tty:
        return PLAIN
    if env.get("TERM", "").lower() in ("dumb", "unknown"):  # rich: no styles, and 80 columns whatever the size
        return None
    return NO_COLOR if env.get("NO_COLOR", "") != "" else TERMINAL


def rendered_by(names: list[str]) -> bool:
    """Whether the typer and rich this interpreter would import are the distributions ``names`` (their
    ``.dist-info`` folder names, e.g. ``rich-15.0.0.dist-info``): for each, the first ``sys.path`` entry
    holding the package (as the import system looks) must hold that folder. Nothing is imported."""
    for dist in names:
        package = dist.split("-", 1)[0]
        for entry in sys.path:
            if os.path.isfile(os.path.join(entry or ".", package, "__init__.py")):
                if not os.path.isdir(os.path.join(entry or ".", dist)):
                    return False
                break
        else:
            return False
    return True


def stored_help(width: int, form: int, *, as_installed: bool = False) -> str | None:
    """The stored top-level help at ``width`` in the form ``form``; None for a width not stored, and with
    ``as_installed`` None unless the typer and rich that would be imported here are the versions it was
    rendered with (:func:`rendered_by`)."""
    if width not in WIDTHS:
        return None
    import zlib

    with open(os.path.join(os.path.dirname(__file__), DATA_FILE), "rb") as file:
        data = file.read()
    # a line naming the typer and rich distributions it was rendered with, then a table of big-endian uint32
    # offsets (from the table's start), then the compressed texts
    header, _, data = data.partition(b"\n")
    if as_installed and not rendered_by(header.decode("ascii").split()):
        return None

    def blob(index: int) -> bytes:
        start, end = (int.from_bytes(data[4 * i:4 * i + 4], "big") for i in (index, index + 1))
        return data[start:end]

    # blob 0: the base every terminal form is compressed against; then per width: terminal, plain, no-color
    # (those two compressed against the terminal form of their width)
    base = zlib.decompress(blob(0))
    first = 1 + (width - FIRST_WIDTH) * len(VARIANTS)
    inflate = zlib.decompressobj(zdict=base)
    text = inflate.decompress(blob(first)) + inflate.flush()
    if form != TERMINAL:
        inflate = zlib.decompressobj(zdict=text)
        text = inflate.decompress(blob(first + form)) + inflate.flush()
    return text.decode("utf-8")


def serve(args: list[str]) -> bool:
    """Print the stored top-level help and return True when ``args`` asks for it and typer would print the
    same; False (typer prints it) otherwise."""
    if args not in TOP_LEVEL:
        return False
    form = variant()
    text = None if form is None else stored_help(rich_width(), form, as_installed=True)
    if text is None:
        return False
    sys.stdout.write(text)
    return True
