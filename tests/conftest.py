"""Shared fixtures: every test gets a clean environment (no TOKENVAULT_*, no VAULT_*, no proxy variables in any
case) and a temp home."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cli_support import CliRunner

# httpx (and the Vault/OpenBao clients) would send a test's local traffic through a proxy of the machine's
PROXY_VARIABLES = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"})

pytest_plugins: list[str] = ["plugins.postgres", "plugins.openbao", "plugins.graphsim", "plugins.leakscan",
                               "plugins.webhook"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("TOKENVAULT_", "VAULT_", "PYTHON_KEYRING")) or name.upper() in PROXY_VARIABLES:
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


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run tokenvault in-process: ``cli("token", "list", "--json", stdin="...")`` -> Result(code, out, err)."""
    from cli_support import CliRunner

    return CliRunner(capsys, monkeypatch)


@pytest.fixture
def env_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TOKENVAULT_HOME set to a fresh path, with the headless `file` key provider chosen explicitly."""
    monkeypatch.setenv("TOKENVAULT_HOME", str(home))
    monkeypatch.setenv("TOKENVAULT_KEY_PROVIDER", "file")
    return home
