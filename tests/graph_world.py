"""A real tokenvault (store, crypto, Graph client) wired to the Graph API simulator, for tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from meta_tokenvault.config import Settings
from meta_tokenvault.service import TokenManager
from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
from meta_tokenvault.types import Secret
from meta_tokenvault.wiring import build_manager

SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")


@dataclass
class World:
    """The simulator, its demo world, and how to build managers that share one store."""

    sim: GraphSimulator
    ids: Any  # the simulator's DemoWorld
    home: Path
    db_url: str | None = None

    def settings(self) -> Settings:
        return Settings(home=self.home, key_provider="file", db_url=self.db_url)

    def manager(self, *, create: bool = False, **adapter: Any) -> TokenManager:
        client = httpx.Client(transport=self.sim.transport())
        graph = {"base_delay": 0.01, **adapter}
        m = build_manager(self.settings(), create=create, graph_client=client, clock=self.sim.clock, environ={})
        _tune_graph(m, graph)
        return m

    def env(self, graph_url: str) -> dict[str, str]:
        """Environment for a `tokenvault` subprocess on this world's store, talking HTTP to ``graph_url``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENVAULT_", "VAULT_"))}
        env.update(TOKENVAULT_HOME=str(self.home), TOKENVAULT_KEY_PROVIDER="file", TOKENVAULT_GRAPH_URL=graph_url)
        if self.db_url:
            env["TOKENVAULT_DB_URL"] = self.db_url
        return env


def _tune_graph(manager: TokenManager, options: dict[str, Any]) -> None:
    """Make the adapter's retry pauses short (tests); the code path stays the production one."""
    factory = manager._graph_factory
    assert factory is not None

    def tuned() -> Any:
        graph = factory()
        for key, value in options.items():
            setattr(graph, key, value)
        return graph

    manager._graph_factory = tuned


def make_world(tmp_path: Path, *, start: datetime | None = None, db_url: str | None = None,
               realtime: bool = False) -> World:
    clock = SimClock(start or datetime(2026, 1, 1, tzinfo=UTC), realtime=realtime)
    sim, ids = GraphSimulator.demo_world(clock=clock)
    world = World(sim, ids, tmp_path / "home", db_url)
    seed(world)
    return world


def served_world(tmp_path: Path, *, start: datetime) -> Iterator[tuple[World, str]]:
    """A :func:`make_world` whose simulator answers over HTTP while the generator is open: ``(world, its URL)``,
    for ``tokenvault`` subprocesses. Use it as a fixture's body: ``yield from served_world(...)``."""
    world = make_world(tmp_path, start=start)
    with world.sim.serve() as server:
        yield world, server.url


def seed(world: World) -> None:
    """Initialise the world's store and register its demo business (acme) with synced system users."""
    ids = world.ids
    m = world.manager(create=True)
    try:
        m.initialize("file")
        m.add_business("acme", ids.business_id, ids.app_id, Secret(ids.app_secret), Secret(ids.admin_token))
        m.sync_system_users("acme")
    finally:
        m.store.close()


def valid_minted(sim: GraphSimulator) -> list[str]:
    """Values of every token minted through the API that Meta (the simulator) still accepts."""
    return [t.value for t in sim.minted if sim.token_state(t.value) == "valid"]
