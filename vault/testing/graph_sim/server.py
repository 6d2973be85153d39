"""The simulator as a local HTTP server: stdlib ThreadingHTTPServer in a background thread."""

from __future__ import annotations

import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from os import PathLike
from types import TracebackType
from typing import Protocol
from urllib.parse import urlsplit

from .wire import Endpoint, WireRequest, WireResponse, parse_query


class Servable(Endpoint, Protocol):
    """An endpoint with a state that can be saved: ``generation`` moves with every change."""

    @property
    def generation(self) -> int: ...

    def save(self, path: str | PathLike[str]) -> None: ...


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        host = headers.get("host") or self.server.host_port
        request = WireRequest(self.command, split.path, parse_query(split.query), headers, body, f"http://{host}")
        try:
            response = self.server.sim.handle(request)
        except Exception as exc:  # noqa: BLE001 - a simulator bug or a bad knob: say so instead of hanging up
            traceback.print_exc(file=sys.stderr)
            response = WireResponse.of_json(500, {"error": {"message": f"graph simulator failure: {exc!r}",
                                                            "type": "SimulatorError", "code": 1}})
        self.server.after_request()
        if response.drop:
            self.close_connection = True  # no response at all: the client sees the connection closed
            return
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_POST = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: request lines carry tokens


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sim: Servable, address: tuple[str, int], state_path: str | PathLike[str] | None) -> None:
        self.sim = sim
        self.state_path = state_path
        self._saved = sim.generation
        self._save_lock = threading.Lock()
        super().__init__(address, _Handler)
        self.host_port = f"{address[0]}:{self.server_port}"

    def after_request(self) -> None:
        """With a state file, save after every request that changed the state."""
        if self.state_path is None:
            return
        with self._save_lock:
            generation = self.sim.generation
            if generation != self._saved:
                self.sim.save(self.state_path)
                self._saved = generation


class SimServer:
    """A running server: ``url`` (``http://127.0.0.1:PORT``), ``port``, ``close()``; a context manager.

    ``state_path``: save the state there after every change (and on close). ``poll_interval``: how often
    the serving thread checks for shutdown (short, so ``close()`` is quick in tests).
    """

    def __init__(self, sim: Servable, host: str = "127.0.0.1", port: int = 0, *,
                 state_path: str | PathLike[str] | None = None, poll_interval: float = 0.01) -> None:
        self.sim = sim
        self._server = _Server(sim, (host, port), state_path)
        self.host = host
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": poll_interval},
                                        name=f"graph-sim-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False

    def close(self) -> None:
        """Stop serving, close the socket, save the state file if any. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        if self._server.state_path is not None:
            self.sim.save(self._server.state_path)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SimServer({self.url})"
