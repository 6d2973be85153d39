"""Global options and the lazily built manager shared by every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from meta_tokenvault.config import Settings
    from meta_tokenvault.service import TokenManager


@dataclass
class State:
    """The global options of this command and what is built from them, once."""

    flags: dict[str, Any] = field(default_factory=dict)
    json: bool = False
    _settings: Settings | None = None
    _manager: TokenManager | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from meta_tokenvault.config import Settings

            self._settings = Settings.resolve(self.flags)
        return self._settings

    def manager(self, *, create: bool = False, **wiring: Any) -> TokenManager:
        """The manager, built once per command; ``wiring`` goes to :func:`meta_tokenvault.wiring.build_manager`."""
        if self._manager is None:
            from meta_tokenvault.wiring import build_manager

            self._manager = build_manager(self.settings(), create=create, **{**self.wiring_options(), **wiring})
        return self._manager

    def wiring_options(self) -> dict[str, Any]:
        """What only the CLI knows: the backend named by --backend, and how to ask for an AppRole secret id."""
        return {"explicit_backend": self.flags.get("backend"), "vault_secret_id": read_vault_secret_id}

    def reset(self) -> None:
        if self._manager is not None:
            self._manager.close()
        self._settings = None
        self._manager = None


def read_vault_secret_id() -> str:
    """The AppRole secret id from stdin (when piped) or a hidden prompt; asked only when Vault needs it."""
    from .prompts import read_secret

    return read_secret("Vault AppRole secret id").reveal()


state = State()
