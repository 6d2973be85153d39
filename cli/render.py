"""Output: rich tables for people, one JSON document for scripts, one-line errors.

Every string a person sees goes through :func:`safe` here: names from the Graph API, labels and actors from
the database, values from the environment may carry terminal escapes or rich markup. JSON output is data
(escaped by :mod:`json`) and stays as it is."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any


def safe(value: object, *, markup: bool = False) -> str:
    """``value`` as text fit for a terminal: credentials in URLs removed
    (:func:`meta_tokenvault.redact.strip_userinfo`), control characters removed
    (:func:`meta_tokenvault.redact.printable`: escape sequences, bells, carriage returns, bidi overrides;
    newlines are kept) and, with ``markup`` (text that rich will parse: table cells and titles), rich markup
    escaped so ``[link=...]`` is shown, not obeyed. The one sanitiser of every renderer."""
    from meta_tokenvault.redact import printable, strip_userinfo

    text = printable(strip_userinfo("" if value is None else str(value)))
    if markup and "[" in text:
        text = _BRACKET_RE.sub(_escape_bracket, text)
    return text


# Each "[" with the backslashes before it. rich reads "\\[" as "[" anywhere, and where a tag could start
# ("[" + a letter, "#", "/" or "@" ... "]", its tag pattern) it halves the backslashes before it too.
_BRACKET_RE = re.compile(r"(\\*)\[")
_RICH_TAG_RE = re.compile(r"[a-z#/@][^[]*?]")


def _escape_bracket(match: re.Match[str]) -> str:
    backslashes = len(match.group(1))
    if _RICH_TAG_RE.match(match.string, match.end()):
        return "\\" * (2 * backslashes + 1) + "["
    return "\\" * (backslashes + 1) + "["


def emit_json(data: Any) -> None:
    """Exactly one JSON document on stdout, nothing else."""
    from meta_tokenvault.jsontext import default

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=default) + "\n")


def emit_json_lines(lines: list[str]) -> None:
    """One JSON array on stdout, one element per line, from the elements' texts (``token list --json``: the
    store writes them, ``TokenManager.list_tokens_json``). Still one document, and fast for 100,000 elements
    (``indent`` would make :mod:`json` fall back to its pure-Python encoder, ~5x slower)."""
    from meta_tokenvault.jsontext import array_pieces

    write = sys.stdout.write
    for piece in array_pieces(lines):
        write(piece)


def stamp(value: datetime | None, never: str = "never") -> str:
    """A compact UTC time for table cells (the column header says UTC)."""
    return value.strftime("%Y-%m-%d %H:%M") if value else never


def when(value: datetime | None, never: str = "never") -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else never


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[object]], *,
          wrap: Sequence[str] = (), empty: str | None = None) -> None:
    """A table for people. Cells never wrap (ids and dates stay whole) except in the ``wrap`` columns,
    which take the room that is left; at least 100 columns wide even when piped (rich would use 80).
    ``empty``: said instead (on stderr, like :func:`info`) when there is no row: a table of headers alone
    looks like a failure."""
    cells = [[safe(cell, markup=True) for cell in row] for row in rows]
    if not cells and empty is not None:
        info(empty)
        return
    import shutil

    from rich.console import Console
    from rich.table import Table

    t = Table(title=safe(title, markup=True) if title else None, show_lines=False, header_style="bold", box=None,
              pad_edge=False)
    needed = 2 * (len(columns) - 1)  # padding between columns
    for i, column in enumerate(columns):
        longest = max([len(column), *(len(row[i]) for row in cells)])
        if column in wrap:
            least = max(len(column), min(30, longest))
            t.add_column(column, overflow="fold", ratio=1, min_width=least)
        else:  # ids, labels and dates are never cut: they are what people copy
            least = longest
            t.add_column(column, no_wrap=True, min_width=least)
        needed += least
    for row in cells:
        t.add_row(*row)
    # never narrower than what the table needs (a wide table scrolls; a cut id is useless), 100 when piped
    width = max(100, shutil.get_terminal_size((100, 24)).columns, needed)
    Console(width=width, emoji=False).print(t)  # no :emoji: codes either: what is shown is what is stored


def info(message: str) -> None:
    """A message for people, on stderr so stdout stays clean for data."""
    sys.stderr.write(safe(message) + "\n")


def ok(message: str) -> None:
    sys.stderr.write(f"✓ {safe(message)}\n")


def error(message: str, hint: str | None) -> None:
    """The one-line error (and hint) of the boundary; the message may quote anything (a Graph error, a name), so a
    newline in it becomes a space: no quoted text can add a line that looks like ours."""
    sys.stderr.write(f"error: {safe(message).replace(chr(10), ' ')}\n")
    if hint:
        sys.stderr.write(f"hint: {safe(hint).replace(chr(10), ' ')}\n")


def keyvalues(pairs: Sequence[tuple[str, object]]) -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"{key.ljust(width)}  {safe(value)}\n")
