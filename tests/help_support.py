"""typer's top-level help rendered in-process at any width, as a terminal or a pipe gets it, and the store of
those renderings that :mod:`meta_tokenvault.cli.help` serves (``python tests/test_startup.py --write-help``).

In-process, the width is typer's own setting (``typer.rich_utils.MAX_WIDTH``, what ``TERMINAL_WIDTH`` sets: rich
then takes it as is instead of asking the terminal), stdout is a text buffer that is or is not a terminal, and
the environment is exactly the one given (rich reads TERM, COLORTERM, NO_COLOR... when it builds the console).
tests/test_help.py checks this against the real thing: typer in a pseudo-terminal of the same width.
"""

from __future__ import annotations

import io
import os
import sys
import zlib
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "cli" / "help_text.bin"


class Stdout(io.StringIO):
    """sys.stdout as rich sees it: UTF-8, a terminal or not."""

    encoding = "utf-8"  # type: ignore[assignment]

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def clean_env() -> dict[str, str]:
    """This process's environment without anything that changes typer's help (the served conditions)."""
    from meta_tokenvault.cli.help import CHANGES_OUTPUT

    drop = (*CHANGES_OUTPUT, "TERM", "COLORTERM", "NO_COLOR")
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TOKENVAULT_")}


#: The environment of each stored form (meta_tokenvault.cli.help.VARIANTS): what the store is rendered with.
FORM_ENV: dict[str, tuple[bool, dict[str, str]]] = {
    "terminal": (True, {"TERM": "xterm"}),
    "plain": (False, {}),
    "no-color": (True, {"TERM": "xterm", "NO_COLOR": "1"}),
}
#: Every setup served, with the stored form it must print: the colour systems rich detects from TERM and
#: COLORTERM (standard, 256 colours, truecolor), no TERM at all, NO_COLOR empty (= unset) or not, and a pipe
#: whatever the terminal variables say.
SETUPS: dict[str, tuple[str, bool, dict[str, str]]] = {
    "xterm": ("terminal", True, {"TERM": "xterm"}),
    "no-TERM": ("terminal", True, {}),
    "256color": ("terminal", True, {"TERM": "xterm-256color"}),
    "16color": ("terminal", True, {"TERM": "screen-16color"}),
    "kitty": ("terminal", True, {"TERM": "xterm-kitty"}),
    "truecolor": ("terminal", True, {"TERM": "xterm-256color", "COLORTERM": "truecolor"}),
    "24bit": ("terminal", True, {"TERM": "linux", "COLORTERM": "24bit"}),
    "NO_COLOR-empty": ("terminal", True, {"TERM": "xterm", "NO_COLOR": ""}),
    "NO_COLOR": ("no-color", True, {"TERM": "xterm", "NO_COLOR": "1"}),
    "NO_COLOR-truecolor": ("no-color", True, {"TERM": "xterm-256color", "COLORTERM": "truecolor", "NO_COLOR": "x"}),
    "pipe": ("plain", False, {}),
    "pipe-xterm-NO_COLOR": ("plain", False, {"TERM": "xterm-256color", "NO_COLOR": "1"}),
}


@cache
def _command() -> Any:
    import typer.core
    import typer.main
    import typer.rich_utils

    from meta_tokenvault.cli.app import app

    # decided when typer was imported: the environment of this process must not have forced anything
    assert typer.core.HAS_RICH and typer.rich_utils.FORCE_TERMINAL is None and typer.rich_utils.MAX_WIDTH is None
    return typer.main.get_command(app)


def render(width: int, tty: bool, env: Mapping[str, str], args: tuple[str, ...] = ("--help",)) -> str:
    """What ``tokenvault ARGS`` prints with typer at ``width`` columns, stdout a terminal or not, in ``env``
    (on top of :func:`clean_env`)."""
    import typer.rich_utils

    command = _command()
    saved_env, saved_out = dict(os.environ), sys.stdout
    os.environ.clear()
    os.environ.update({**clean_env(), **env})
    sys.stdout = out = Stdout(tty)
    typer.rich_utils.MAX_WIDTH = width
    try:
        code = command.main(list(args), prog_name="tokenvault", standalone_mode=False)
    finally:
        typer.rich_utils.MAX_WIDTH = None
        sys.stdout = saved_out
        os.environ.clear()
        os.environ.update(saved_env)
    assert code in (0, None)
    return out.getvalue()


def render_form(width: int, form: str) -> str:
    tty, env = FORM_ENV[form]
    return render(width, tty, env)


def write_store(path: Path = DATA) -> None:
    """Render every stored width and form with typer and write them, compressed, where
    :func:`meta_tokenvault.cli.help.stored_help` reads them: a line naming the typer and rich distributions
    that rendered them, a table of big-endian uint32 offsets (one per text, and the end), then the texts, each a
    zlib stream. Text 0 is the base the terminal forms are compressed
    against (its 80-column rendering); then, per width, the terminal form, and the other forms compressed
    against the terminal form of their width."""
    from meta_tokenvault.cli.help import VARIANTS, WIDTHS

    def deflate(text: bytes, zdict: bytes) -> bytes:
        packer = zlib.compressobj(9, zdict=zdict)
        return packer.compress(text) + packer.flush()

    base = render_form(80, "terminal").encode("utf-8")
    blobs = [zlib.compress(base, 9)]
    for width in WIDTHS:
        texts = {form: render_form(width, form).encode("utf-8") for form in VARIANTS}
        blobs.append(deflate(texts["terminal"], base))
        blobs.extend(deflate(texts[form], texts["terminal"]) for form in VARIANTS[1:])
    offsets = [4 * (len(blobs) + 1)]
    for blob in blobs:
        offsets.append(offsets[-1] + len(blob))
    path.write_bytes(" ".join(rendering_distributions()).encode("ascii") + b"\n"
                     + b"".join(o.to_bytes(4, "big") for o in offsets) + b"".join(blobs))


def rendering_distributions() -> list[str]:
    """The ``.dist-info`` folder names of the typer and rich this process renders the help with, as
    :func:`meta_tokenvault.cli.help.rendered_by` finds them: beside the imported package."""
    import importlib
    from importlib.metadata import version

    names = []
    for name in ("typer", "rich"):
        module = importlib.import_module(name)
        dist = f"{name}-{version(name)}.dist-info"
        assert (Path(module.__file__ or "").parent.parent / dist).is_dir(), dist
        names.append(dist)
    return names


_PROBE = """
import json, os, sys
from meta_tokenvault.cli.main import run
code = run(json.loads(sys.argv[1]), fast=sys.argv[2] == "fast")
sys.stdout.flush()
sys.stderr.write("\\nPROBE " + json.dumps({"code": code, "typer": "typer" in sys.modules}) + "\\n")
"""


def in_terminal(args: list[str], width: int, env: Mapping[str, str], *, tty: bool = True,
                fast: bool = True) -> tuple[int, bytes, bool]:
    """Run ``tokenvault ARGS`` in a fresh interpreter whose stdin (and stdout, if ``tty``; else a pipe) is a
    pseudo-terminal ``width`` columns wide, in ``env`` (on top of :func:`clean_env`), through the fast path or
    typer: its exit code, the bytes it printed (the terminal's output processing off: no CR added), and whether
    it imported typer."""
    import fcntl
    import json
    import pty
    import struct
    import subprocess
    import termios

    master, slave = pty.openpty()
    try:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, width, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        proc = subprocess.Popen([sys.executable, "-c", _PROBE, json.dumps(args), "fast" if fast else "typer"],
                                stdin=slave, stdout=slave if tty else subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**clean_env(), "PYTHONIOENCODING": "utf-8", **env}, cwd=ROOT)
        os.close(slave)
        slave = -1
        chunks = []
        while tty:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    marker = err.decode("utf-8", "replace").rsplit("PROBE ", 1)
    assert len(marker) == 2, err
    data = json.loads(marker[1])
    return data["code"], b"".join(chunks) if tty else out, data["typer"]
