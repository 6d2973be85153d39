"""Global options and the lazily built manager shared by every command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vault.config import Settings
    from vault.service import TokenManager


@dataclass
class State:
    flags: dict[str, Any] = field(default_factory=dict)
    json: bool = False
    _settings: Settings | None = None
    _manager: TokenManager | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from vault.config import Settings

            self._settings = Settings.resolve(self.flags)
        return self._settings

    def manager(self, *, create: bool = False) -> TokenManager:
        if self._manager is None:
            from vault.wiring import build_manager

            self._manager = build_manager(self.settings(), create=create)
        return self._manager

    def reset(self) -> None:
        if self._manager is not None:
            self._manager.store.close()
        self._settings = None
        self._manager = None


state = State()
