"""tokenvault: a secure vault and rotation manager for Meta system-user access tokens.

The public Python API is small and stable::

    from meta_tokenvault import TokenVault
    token = TokenVault.open().get("prod-whatsapp")   # a Secret; repr shows only '…1234'
    requests.post(url, headers={"Authorization": f"Bearer {token.reveal()}"})

Everything listed in ``__all__`` is public; the rest may change. Importing this package is cheap:
the database and crypto libraries load on first use.
"""

from __future__ import annotations

from .errors import (
    AuditChainBroken,
    BackendUnavailable,
    Conflict,
    Deferred,
    GraphError,
    IntegrityError,
    NotFound,
    SevenDayWindow,
    TokenInvalid,
    UsageError,
    VaultError,
)

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

    from .api import TokenVault
    from .types import Secret, TokenRecord, TokenStatus

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``TokenVault`` and the record types on first use: every ``tokenvault`` command imports this package
    (``tokenvault --help`` needs neither; :mod:`meta_tokenvault.types` costs ~10 ms of dataclasses)."""
    if name == "TokenVault":
        from .api import TokenVault

        globals()["TokenVault"] = TokenVault
        return TokenVault
    if name in ("Secret", "TokenRecord", "TokenStatus"):
        from . import types

        value = getattr(types, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AuditChainBroken",
    "BackendUnavailable",
    "Conflict",
    "Deferred",
    "GraphError",
    "IntegrityError",
    "NotFound",
    "Secret",
    "SevenDayWindow",
    "TokenInvalid",
    "TokenRecord",
    "TokenStatus",
    "TokenVault",
    "UsageError",
    "VaultError",
    "__version__",
]
