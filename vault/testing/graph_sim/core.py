"""GraphSimulator: an in-memory Meta Graph API built from docs/graph-api.md (the reference we speak).

The top of the simulator's layers: the :class:`~.state.SimState` (world, clock, knobs) with the router's
``handle`` and the adapters (httpx transport, HTTP server, state file) on it. Nothing in the package imports
this module but ``__init__``.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from ...fileutil import atomic_write_private
from . import router
from .clock import SimClock
from .knobs import KNOBS
from .persist import dump, restore
from .state import SimState
from .wire import WireRequest, WireResponse
from .world import WHATSAPP_SCOPES, DemoWorld

if TYPE_CHECKING:
    import httpx

    from .server import SimServer

__all__ = ["KNOBS", "GraphSimulator"]


class GraphSimulator(SimState):
    """A faithful, thread-safe, in-memory Graph API: one lock around the state, latency slept outside it.

    Serve it as an httpx transport (:meth:`transport`) or a local HTTP server (:meth:`serve`). Knobs are
    plain attributes (see docs/simulator.md); each plays one variant of a point the reference marks
    **unconfirmed**.
    """

    # ----- serving --------------------------------------------------------------------------------------------

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport: ``httpx.Client(transport=sim.transport(), base_url="https://graph.facebook.com")``."""
        from .transport import SimTransport  # lazy, like the server: importing the simulator stays cheap

        return SimTransport(self)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        from .transport import AsyncSimTransport

        return AsyncSimTransport(self)

    def serve(self, host: str = "127.0.0.1", port: int = 0, *,
              state_path: str | PathLike[str] | None = None) -> SimServer:
        """Start a local HTTP server in a background thread (already listening); close it when done.

        ``state_path``: :meth:`save` there after every request that changed the state, and on close.
        """
        from .server import SimServer

        return SimServer(self, host, port, state_path=state_path)

    def handle(self, request: WireRequest) -> WireResponse:
        """The one request-handling core used by the transport and the server (see :mod:`.router`)."""
        return router.handle(self, request)

    # ----- persistence ----------------------------------------------------------------------------------------

    def save(self, path: str | PathLike[str]) -> None:
        """Write the whole state as JSON to ``path``: mode 0600 from creation, atomic replace."""
        with self._lock:
            data = json.dumps(dump(self), indent=1).encode()
        atomic_write_private(Path(path), data)

    @classmethod
    def load(cls, path: str | PathLike[str]) -> GraphSimulator:
        """A simulator from a file written by :meth:`save` (clock, world, tokens, knobs, RNG state)."""
        return restore(cls, json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def demo_world(cls, clock: SimClock | None = None, *, seed: int = 0) -> tuple[GraphSimulator, DemoWorld]:
        """A ready world: one business, its app, an old admin (30 days), a new admin (1 hour), an employee,
        a WABA with a phone number, and an admin token issued by hand to the old admin."""
        sim = cls(clock=clock, seed=seed)
        now = sim.clock.now()
        biz, app_id, waba, phone = "1000000000001", "2000000000002", "3000000000003", "4000000000004"
        secret = hashlib.sha256(b"tokenvault demo app secret").hexdigest()[:32]
        sim.add_business(biz, "Demo Business")
        sim.add_app(app_id, secret, biz, name="tokenvault-demo")
        sim.add_waba(biz, waba, [phone], name="Demo WABA")
        old = sim.add_system_user(biz, name="tokenvault-admin", role="ADMIN", created_time=now - timedelta(days=30),
                                  su_id="5000000000005", installed_apps=[app_id])
        new = sim.add_system_user(biz, name="tokenvault-new-admin", role="ADMIN",
                                  created_time=now - timedelta(hours=1), su_id="5000000000006",
                                  installed_apps=[app_id])
        emp = sim.add_system_user(biz, name="tokenvault-employee", role="EMPLOYEE",
                                  created_time=now - timedelta(days=30), su_id="5000000000007",
                                  installed_apps=[app_id])
        sim.assign_waba(emp, waba)
        token = sim.issue_token(app_id, old, ("business_management", *WHATSAPP_SCOPES))
        world = DemoWorld(business_id=biz, business_name="Demo Business", app_id=app_id, app_secret=secret,
                          old_admin_id=old, new_admin_id=new, employee_id=emp, waba_id=waba, phone_number_id=phone,
                          admin_token=token)
        sim.demo = world
        return sim, world

    def __repr__(self) -> str:
        w = self.world
        return (f"GraphSimulator(now={self.clock.now().isoformat()}, businesses={len(w.businesses)}, "
                f"system_users={len(w.system_users)}, tokens={len(w.tokens)})")
