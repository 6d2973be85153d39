"""Checks on what users type: labels and pasted tokens. Pure; raise :class:`InvalidInput` (exit 2)."""

from __future__ import annotations

from .errors import InvalidInput

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from .types import Secret

LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def validate_label(label: str, what: str = "label") -> str:
    """Labels are 1-128 chars of letters, digits, '-', '_' and '.', not starting with '.' or '-'."""
    if not label or len(label) > 128 or not set(label) <= LABEL_CHARS or label[0] in ".-":
        raise InvalidInput(
            f"Invalid {what} {label!r}.",
            hint="Use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. prod-whatsapp).",
        )
    return label


def validate_on_invalid(policy: str) -> str:
    """A token's ``on_invalid`` policy: ``reissue`` (run-due mints a new one) or ``alert`` (only notify)."""
    if policy not in ("reissue", "alert"):
        raise InvalidInput(f"Invalid on-invalid policy {policy!r}.",
                           hint="Use --on-invalid reissue (run-due mints a new token) or alert (only notify).")
    return policy


def clean_token(raw: str) -> Secret:
    """Turn what was read from stdin/prompt into a Secret: strip whitespace, refuse empty or multi-part input."""
    value = raw.strip()
    if not value:
        raise InvalidInput("No token was given: the input was empty or only whitespace.",
                           hint="Pipe the token on stdin (e.g. `pbpaste | tokenvault token import ...`) "
                                "or type it at the hidden prompt.")
    if any(ch.isspace() for ch in value):
        raise InvalidInput("The token contains whitespace; it looks like more than one value was pasted.",
                           hint="Paste exactly one token, on one line.")
    if not value.isprintable():
        raise InvalidInput("The token contains control characters.", hint="Paste exactly one token, on one line.")
    from .types import Secret  # here: the command modules import this module for their help, without records

    return Secret(value)


__all__ = ["LABEL_CHARS", "clean_token", "validate_label", "validate_on_invalid"]
