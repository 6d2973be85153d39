"""How JSON output is written: the one encoder of every ``--json`` document and of ``token list --json``'s
rows-to-text path.

:func:`default` is what values JSON does not know become (a datetime its ISO text, an enum its value, anything
else its ``str``); :func:`one_line_encoder` writes one value on one line with :mod:`json`'s default
separators (``", "``, ``": "``) and ``ensure_ascii``. :mod:`meta_tokenvault.cli.render` prints with these, and
:func:`meta_tokenvault.queries.token_json_lines` writes each token's object text with the very same string
encoder (:data:`encode_string`), so both give the same bytes (a test compares them on many records).

Stdlib only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from json.encoder import encode_basestring_ascii as encode_string  # '"…"', escaped as json does (C if there)

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any


def default(value: Any) -> Any:
    """A value :mod:`json` cannot write, as one it can."""
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "value"):
        return value.value
    return str(value)


def one_line_encoder() -> Callable[[Any], str]:
    """``json.JSONEncoder(default=default, check_circular=False).encode`` for dicts and lists, with the C
    encoder built once instead of once per element (what ``encode`` does each call: ~15% of the JSON of
    100,000 tokens). Same output; the plain encoder where the C accelerator is missing."""
    import json.encoder as je

    plain = json.JSONEncoder(default=default, check_circular=False).encode
    make = getattr(je, "c_make_encoder", None)
    if make is None:
        return plain
    c_encode = make(None, default, je.encode_basestring_ascii, None, ": ", ", ", False, False, True)

    def encode(value: Any) -> str:
        if type(value) is dict:
            return "".join(c_encode(value, 0))
        return plain(value)

    return encode


def array_pieces(lines: list[str], block: int = 1000) -> Iterator[str]:
    """One JSON array with one element per line, from the elements' texts (still one document), in pieces of
    ``block`` lines: written piece by piece, 100,000 tokens' text is never copied whole."""
    yield "[\n"
    for start in range(0, len(lines), block):
        yield (",\n" if start else "") + ",\n".join(lines[start:start + block])
    yield "\n]\n"


def array_text(lines: list[str]) -> str:
    """:func:`array_pieces` as one string."""
    return "".join(array_pieces(lines))


__all__ = ["array_pieces", "array_text", "default", "encode_string", "one_line_encoder"]
