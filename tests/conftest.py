"""Shared fixtures: every test gets a clean environment (no TOKENVAULT_*, no VAULT_*) and a temp home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins: list[str] = []


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("TOKENVAULT_", "VAULT_", "PYTHON_KEYRING")):
            monkeypatch.delenv(name, raising=False)
    # keyring config and data of the real user must never be touched by tests
    xdg = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg / "run"))
    (xdg / "run").mkdir(mode=0o700)
    yield


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fresh TOKENVAULT_HOME path (not yet created: `init` creates it 0700)."""
    return tmp_path / "tvhome"
