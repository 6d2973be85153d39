"""What the three ways out of the vault share: the service they read from, names and their checks."""

from __future__ import annotations

import os
import re

from ..errors import InvalidInput
from ..types import Secret, TokenRecord, TokenStatus

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Protocol
else:  # exec imports this module for its checks and names: no typing there. TokenSource is a type for
    Protocol = object  # mypy only (not runtime_checkable: nothing asks isinstance() of it)

DEFAULT_VAR = "WHATSAPP_TOKEN"

# The labels meta_tokenvault.service.validate_label accepts: not starting with '.' or '-'.
LABEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class TokenSource(Protocol):
    """What injection needs from the service (:class:`meta_tokenvault.service.TokenManager` is one)."""

    def show_token(self, label: str) -> TokenRecord: ...

    def resolve(self, label: str, *, allow_inactive: bool = False,
                purpose: str = "read") -> tuple[TokenRecord, Secret]: ...


def check_usable(record: TokenRecord, allow_inactive: bool, where: str = "") -> None:
    """Raises InvalidInput for a token that is not active, unless ``allow_inactive``."""
    if record.status is not TokenStatus.ACTIVE and not allow_inactive:
        prefix = f"{where}: " if where else ""
        raise InvalidInput(
            f"{prefix}token {record.label!r} is {record.status.value}; refusing to hand it out.",
            hint="Rotate it (`tokenvault token rotate`), or pass --allow-inactive if you really mean it.")


def check_var(var: str) -> None:
    """Raises InvalidInput unless ``var`` is a valid environment variable name."""
    if not VAR_RE.match(var):
        raise InvalidInput(f"{var!r} is not a valid variable name.",
                           hint="Use letters, digits and '_', not starting with a digit (e.g. WHATSAPP_TOKEN).")


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte of ``data`` is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
