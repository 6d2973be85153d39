"""The simulator as httpx transports (sync and async): no sockets, same core as the HTTP server."""

from __future__ import annotations

import asyncio

import httpx

from .wire import Endpoint, WireRequest, WireResponse, parse_query


def _wire(request: httpx.Request, body: bytes) -> WireRequest:
    url = request.url
    base = f"{url.scheme}://{url.netloc.decode('ascii')}"
    headers = {k.lower(): v for k, v in request.headers.items()}
    return WireRequest(request.method, url.path, parse_query(url.query.decode("ascii")), headers, body, base)


def _response(request: httpx.Request, wire: WireResponse) -> httpx.Response:
    if wire.drop:
        raise httpx.ReadTimeout("simulated timeout: the Graph API simulator dropped the request", request=request)
    return httpx.Response(wire.status, headers=wire.headers, content=wire.body, request=request)


class SimTransport(httpx.BaseTransport):
    """``httpx.Client(transport=SimTransport(sim))``; fault ``timeout`` raises :class:`httpx.ReadTimeout`."""

    def __init__(self, sim: Endpoint) -> None:
        self.sim = sim

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        return _response(request, self.sim.handle(_wire(request, body)))


class AsyncSimTransport(httpx.AsyncBaseTransport):
    """The async twin: the core runs in a worker thread, so latency does not block the event loop."""

    def __init__(self, sim: Endpoint) -> None:
        self.sim = sim

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        wire = await asyncio.to_thread(self.sim.handle, _wire(request, body))
        return _response(request, wire)
