"""Secrets come from stdin (when it is not a terminal) or a hidden prompt; never from argv."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from meta_tokenvault.errors import InvalidInput
from meta_tokenvault.validation import clean_token

if TYPE_CHECKING:
    from meta_tokenvault.types import Secret


def read_secret(what: str) -> Secret:
    """Read one secret: the next line of stdin when piped, else a hidden prompt naming ``what``.

    Raises :class:`InvalidInput` for empty/whitespace input or a closed stdin.
    """
    from meta_tokenvault.safety import no_core_dumps

    no_core_dumps()  # before the secret is in memory
    stream = sys.stdin
    if stream is None:
        raise InvalidInput(f"No {what} given: standard input is closed.", hint=f"Pipe the {what} on stdin.")
    if stream.isatty():
        import getpass

        try:
            raw = getpass.getpass(f"{what} (input hidden): ")
        except EOFError:
            raw = ""
    else:
        raw = stream.readline()
    try:
        return clean_token(raw)
    except InvalidInput as exc:
        raise InvalidInput(exc.message.replace("No token", f"No {what}").replace("The token", f"The {what}"),
                           hint=exc.hint) from None
