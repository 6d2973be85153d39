"""pytest plugin: the Graph API simulator (meta_tokenvault.testing.graph_sim).

Fixtures
--------
``sim_clock``
    A :class:`SimClock` at 2026-01-01T00:00:00Z; it moves only when a test moves it.
``graph_sim``
    A fresh :class:`GraphSimulator` holding ``demo_world`` on ``sim_clock``.
``graph_world``
    The :class:`DemoWorld` of ``graph_sim`` (ids, app secret, admin token).
``graph_server``
    ``graph_sim`` served on 127.0.0.1 and a free port in a background thread (``.url``); closed after the test.
``graph_client``
    An ``httpx.Client`` on ``graph_sim``'s transport, base URL ``https://graph.facebook.com/v24.0``.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from meta_tokenvault.testing.graph_sim import DemoWorld, GraphSimulator, SimClock, SimServer


@pytest.fixture
def sim_clock() -> SimClock:
    return SimClock()


@pytest.fixture
def graph_sim(sim_clock: SimClock) -> GraphSimulator:
    sim, _ = GraphSimulator.demo_world(clock=sim_clock)
    return sim


@pytest.fixture
def graph_world(graph_sim: GraphSimulator) -> DemoWorld:
    assert graph_sim.demo is not None
    return graph_sim.demo


@pytest.fixture
def graph_server(graph_sim: GraphSimulator) -> Iterator[SimServer]:
    with graph_sim.serve() as server:
        yield server


@pytest.fixture
def graph_client(graph_sim: GraphSimulator) -> Iterator[httpx.Client]:
    with httpx.Client(transport=graph_sim.transport(), base_url="https://graph.facebook.com/v24.0") as client:
        yield client
