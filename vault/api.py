"""The in-process API for applications: read a token without a subprocess or a file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .types import Secret, TokenRecord

if TYPE_CHECKING:
    from .service import TokenManager


class TokenVault:
    """A read-mostly handle on a tokenvault store.

    ``TokenVault.open()`` resolves configuration exactly as the CLI does (TOKENVAULT_* variables,
    then config.toml in TOKENVAULT_HOME). Reads are audited like ``tokenvault token reveal``.
    """

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    @classmethod
    def open(cls, home: str | None = None, *, environ: Mapping[str, str] | None = None,
             **settings: object) -> TokenVault:
        """Open the store. ``home`` and keyword settings override the environment (like CLI flags)."""
        from .config import Settings
        from .wiring import build_manager

        resolved = Settings.resolve({"home": home, **settings}, environ)
        explicit = settings.get("backend")
        return cls(build_manager(resolved, environ=environ, explicit_backend=str(explicit) if explicit else None))

    @property
    def manager(self) -> TokenManager:
        """The full service, for applications that manage tokens, not only read them."""
        return self._manager

    def get(self, label: str, *, allow_inactive: bool = False) -> Secret:
        """The current token of ``label``. Raises NotFound, InvalidInput (not active), IntegrityError."""
        return self._manager.resolve(label, allow_inactive=allow_inactive, purpose="read")[1]

    def record(self, label: str) -> TokenRecord:
        """Metadata and provenance of ``label`` (never the secret)."""
        return self._manager.show_token(label)

    def close(self) -> None:
        self._manager.store.close()

    def __enter__(self) -> TokenVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenVault({self._manager.store.display_url!r})"
