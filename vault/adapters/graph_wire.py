"""How a Graph API request goes on the wire: two senders behind :class:`~.graph_httpx.HttpxGraphApi`.

The adapter builds a request (method, full URL with its query string, form fields, headers) and hands it to a
sender, which returns ``(status, headers, body bytes)`` or raises :class:`SendFailed` naming what went wrong
and whether the request may have reached Meta. Everything else - retries, pacing, ``appsecret_proof``, JSON,
the error table, the messages - is the adapter's, once, whichever sender carried the request.

* :class:`HttpxSender`: an ``httpx.Client``. The path for an injected client (tests,
  ``httpx.Client(transport=simulator.transport())``, the demo) and for anything unusual.
* :class:`StdlibSender`: :mod:`http.client` with a keep-alive connection pool, for the client tokenvault builds
  itself when the plain case holds (:func:`stdlib_sender_for`). An httpx call cost ~0.9 ms of CPU against
  ~0.25 ms for http.client (docs/performance.md, "Bulk rotation"). It speaks to the server the way the httpx
  client tokenvault builds does: the same headers (``User-Agent``, ``Accept``, ``Accept-Encoding: gzip,
  deflate``, ``Connection: keep-alive``), the same form encoding, the same timeouts (connect, then each read
  and write), no redirects followed, no cookies kept, and the same TLS verification - the SSL context is
  httpx's own :func:`httpx.create_ssl_context` (``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set, else certifi's
  bundle, the host name checked). When httpx would route the request through a proxy (``HTTP_PROXY``,
  ``HTTPS_PROXY``, ``ALL_PROXY``, in either case, or the platform's settings: ``urllib.request.getproxies``,
  which httpx reads too), or the address is not a plain ``http(s)://host[:port][/path]``, the httpx client
  is used instead.
"""

from __future__ import annotations

import select
import threading
import zlib
from collections.abc import Mapping
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Any

from .plain_url import plain_http_url

if TYPE_CHECKING:
    import http.client
    import ssl

    import httpx

ACCEPT_ENCODING = "gzip, deflate"  # what httpx sends when neither brotli nor zstandard is installed


class SendFailed(Exception):
    """The request got no answer. ``name``: the httpx exception class that says what happened (both senders
    use its names, so the messages are the same); ``timeout``: it timed out; ``lost``: it may have reached Meta
    (sent, then no answer), as opposed to a failure while connecting, which proves it did not."""

    def __init__(self, name: str, *, timeout: bool, lost: bool) -> None:
        super().__init__(name)
        self.name, self.timeout, self.lost = name, timeout, lost


Answer = tuple[int, Mapping[str, str], bytes]


class HttpxSender:
    """A request through an ``httpx.Client`` (thread-safe, as the client is)."""

    def __init__(self, client: httpx.Client, *, owned: bool) -> None:
        self.client, self._owned = client, owned

    def send(self, method: str, url: str, form: Mapping[str, str] | None, headers: dict[str, str]) -> Answer:
        import httpx

        try:
            response = self.client.request(method, url, data=form, headers=headers)
        except httpx.TimeoutException as exc:
            raise SendFailed(type(exc).__name__, timeout=True,
                             lost=isinstance(exc, httpx.ReadTimeout | httpx.WriteTimeout)) from None
        except httpx.TransportError as exc:
            # Only connect-phase errors (refused, DNS, pool, proxy) prove the request never reached Meta.
            raise SendFailed(type(exc).__name__, timeout=False,
                             lost=isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError)
                             ) from None
        return response.status_code, response.headers, response.content

    def close(self) -> None:
        if self._owned:
            self.client.close()


def build_httpx_client(timeout: float, user_agent: str) -> httpx.Client:
    """The httpx client tokenvault builds when none is injected (and the stdlib sender does not apply)."""
    import httpx

    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": user_agent},
        follow_redirects=False,
        cookies=NoCookies(),  # the Graph API needs none; parsing each answer's for the jar cost ~0.5 ms a call
    )


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing: the Graph API is called with tokens, never cookies."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any) -> None:
        return None


def stdlib_sender_for(base_url: str, *, timeout: float, user_agent: str) -> StdlibSender | None:
    """A :class:`StdlibSender` for ``base_url`` in the plain case, else None (the httpx client is used)."""
    from urllib.request import getproxies

    parts = plain_http_url(base_url)
    if parts is None or parts.hostname is None:
        return None
    proxies = getproxies()  # what httpx's trust_env reads (its get_environment_proxies)
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return None  # httpx would go through the proxy (or not, per NO_PROXY): it decides
    context = None
    if parts.scheme == "https":
        import httpx

        context = httpx.create_ssl_context()  # the same verification and CA settings as the httpx client
    return StdlibSender(parts.scheme, parts.netloc, parts.hostname, parts.port, timeout=timeout,
                        connect_timeout=min(timeout, 10.0), user_agent=user_agent, context=context)


class StdlibSender:
    """A request over :mod:`http.client`, on a pool of keep-alive connections to the one host (thread-safe:
    a connection is used by one request at a time)."""

    def __init__(self, scheme: str, netloc: str, host: str, port: int | None, *, timeout: float,
                 connect_timeout: float, user_agent: str, context: ssl.SSLContext | None) -> None:
        self.scheme, self.host, self.port = scheme, host, port
        self._prefix = f"{scheme}://{netloc}"  # the adapter's URLs start with its base URL, as given
        self._timeout, self._connect_timeout = timeout, connect_timeout
        self._context = context
        self._headers = {"Accept": "*/*", "Accept-Encoding": ACCEPT_ENCODING, "Connection": "keep-alive",
                         "User-Agent": user_agent}
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self.connections = 0  # connections opened (for tests and reports)

    def __repr__(self) -> str:
        return f"StdlibSender({self._prefix})"

    def send(self, method: str, url: str, form: Mapping[str, str] | None, headers: dict[str, str]) -> Answer:
        import http.client
        from urllib.parse import urlencode

        if not url.startswith(self._prefix + "/"):
            raise ValueError(f"{url.split('?')[0]} is not on {self._prefix}")  # a bug, not a network failure
        target = url[len(self._prefix):]
        body = urlencode(form).encode() if form is not None else None
        sent = {**self._headers, **headers}
        if body is not None:
            sent["Content-Length"] = str(len(body))
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        conn = self._checkout()
        phase = "write"
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in sent.items():
                conn.putheader(name, value)
            conn.endheaders(body)
            phase = "read"
            response = conn.getresponse()
            data = response.read()
        except TimeoutError:
            conn.close()
            raise SendFailed("WriteTimeout" if phase == "write" else "ReadTimeout", timeout=True, lost=True) from None
        except http.client.RemoteDisconnected:  # closed without an answer (an OSError too): httpx's name for it
            conn.close()
            raise SendFailed("RemoteProtocolError", timeout=False, lost=True) from None
        except OSError:
            conn.close()
            raise SendFailed("WriteError" if phase == "write" else "ReadError", timeout=False, lost=True) from None
        except http.client.HTTPException:  # a malformed status line, a header too long, a short body...
            conn.close()
            raise SendFailed("RemoteProtocolError", timeout=False, lost=True) from None
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, answer_headers, _decoded(data, answer_headers.get("content-encoding"))

    def _checkout(self) -> http.client.HTTPConnection:
        """An idle connection the server has not closed, or a new one (connected here: a failure means the
        request never left)."""
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()  # closed by the server while idle (or it sent something unasked): not reusable
        import http.client

        if self._context is not None:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self._connect_timeout,
                                               context=self._context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self._connect_timeout)
        try:
            conn.connect()
        except TimeoutError:
            conn.close()
            raise SendFailed("ConnectTimeout", timeout=True, lost=False) from None
        except OSError:  # refused, DNS, TLS verification (ssl.SSLError is an OSError)
            conn.close()
            raise SendFailed("ConnectError", timeout=False, lost=False) from None
        assert conn.sock is not None
        conn.sock.settimeout(self._timeout)  # then each read and each write has the read/write timeout
        self.connections += 1
        return conn

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _readable(sock: Any) -> bool:
    """An idle keep-alive socket that is readable was closed by the server (or is out of step)."""
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _decoded(data: bytes, encoding: str | None) -> bytes:
    """The body with its ``Content-Encoding`` undone (gzip, deflate, as httpx does; others left as they are).
    A body that does not decode becomes empty, which the adapter reports as an answer that is not JSON."""
    if not encoding:
        return data
    try:
        for coding in reversed([c.strip().lower() for c in encoding.split(",")]):
            if coding in ("gzip", "x-gzip"):
                data = zlib.decompress(data, zlib.MAX_WBITS | 16)
            elif coding == "deflate":
                try:
                    data = zlib.decompress(data)
                except zlib.error:
                    data = zlib.decompress(data, -zlib.MAX_WBITS)
    except zlib.error:
        return b""
    return data


__all__ = ["ACCEPT_ENCODING", "HttpxSender", "NoCookies", "SendFailed", "StdlibSender", "build_httpx_client",
           "stdlib_sender_for"]
