"""A faithful in-memory simulator of the part of Meta's Graph API tokenvault speaks (docs/simulator.md).

::

    sim, demo = GraphSimulator.demo_world()
    client = httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com/v24.0")
    with sim.serve() as server:          # or a real local HTTP server: server.url
        ...
"""

from __future__ import annotations

from .auth import appsecret_proof
from .clock import SimClock
from .core import KNOBS, GraphSimulator
from .faults import FAULT_KINDS
from .server import SimServer
from .state import SimState
from .wire import WireRequest, WireResponse
from .world import SEVEN_DAY_MESSAGE, WHATSAPP_SCOPES, DemoWorld, MintedToken, SimRequest

__all__ = [
    "FAULT_KINDS",
    "KNOBS",
    "SEVEN_DAY_MESSAGE",
    "WHATSAPP_SCOPES",
    "DemoWorld",
    "GraphSimulator",
    "MintedToken",
    "SimClock",
    "SimRequest",
    "SimServer",
    "SimState",
    "WireRequest",
    "WireResponse",
    "appsecret_proof",
]
