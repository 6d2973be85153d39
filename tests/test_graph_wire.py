"""The two senders of the Graph client (vault/adapters/graph_wire.py): the http.client one tokenvault builds
itself, and httpx (an injected client, or a proxy set). Meta sees the same requests from both; TLS is
verified the same way (the CA from ``SSL_CERT_FILE`` when set, the host name checked); a proxy setting hands
the calls to httpx; connections are kept alive and shared by threads; a compressed answer is read."""

from __future__ import annotations

import gzip
import ipaddress
import json
import ssl
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from meta_oracle import assert_declared_by_meta, call_every_port_method, from_sim_log

from meta_tokenvault.adapters.graph_httpx import USER_AGENT, HttpxGraphApi
from meta_tokenvault.adapters.graph_wire import ACCEPT_ENCODING, HttpxSender, StdlibSender, build_httpx_client
from meta_tokenvault.errors import Transient
from meta_tokenvault.ports.graph import AppCredentials
from meta_tokenvault.testing.graph_sim import GraphSimulator, SimClock
from meta_tokenvault.types import Secret

SENDERS = ["stdlib", "httpx"]
START = datetime(2026, 1, 1, tzinfo=UTC)
VALID = {"data": {"is_valid": True, "app_id": "1", "user_id": "2", "scopes": ["whatsapp_business_messaging"]}}


def _api(sender: str, base_url: str, **kwargs: Any) -> HttpxGraphApi:
    """The client tokenvault builds for ``base_url`` (``stdlib``), or on the httpx client it builds when a proxy
    is set (``httpx``)."""
    client = build_httpx_client(15.0, USER_AGENT) if sender == "httpx" else None
    api = HttpxGraphApi(client, base_url=base_url, sleep=lambda _s: None, **kwargs)
    assert isinstance(api.sender, StdlibSender if sender == "stdlib" else HttpxSender)
    return api


def _close(api: HttpxGraphApi) -> None:
    api.close()
    if isinstance(api.sender, HttpxSender):
        api.sender.client.close()


# ----- the same requests --------------------------------------------------------------------------------------------

def _every_call(sender: str) -> tuple[GraphSimulator, list[Any]]:
    """Each method of the Graph port once, against a fresh demo world served over HTTP (deterministic: the same
    tokens on every run); the simulator's request log, each request's headers with the server's address (its
    port differs from run to run) checked and taken out."""
    sim, world = GraphSimulator.demo_world(clock=SimClock(START))
    with sim.serve() as server:
        api = _api(sender, server.url)
        try:
            call_every_port_method(api, world)
        finally:
            _close(api)
        netloc = server.url.split("://", 1)[1]
    requests = list(sim.requests)
    for r in requests:
        assert {k.lower(): v for k, v in dict(r.headers).items()}["host"] == netloc
    return sim, requests


def test_meta_sees_the_same_requests_from_both_senders() -> None:
    sim, by_stdlib = _every_call("stdlib")
    _, by_httpx = _every_call("httpx")
    assert len(by_stdlib) == len(by_httpx) == 8
    assert [str(r) for r in from_sim_log(by_stdlib)] == [str(r) for r in from_sim_log(by_httpx)]
    for ours, theirs in zip(by_stdlib, by_httpx, strict=True):  # every header, the values included
        mine, its = ({k.lower(): v for k, v in dict(r.headers).items() if k.lower() != "host"} for r in (ours, theirs))
        # httpx also offers br / zstd when brotli / zstandard are installed; the stdlib sender offers what it reads
        assert mine.pop("accept-encoding") == ACCEPT_ENCODING
        assert set(ACCEPT_ENCODING.split(", ")) <= set(its.pop("accept-encoding").split(", "))
        assert mine == its
    assert {k.lower(): v for k, v in dict(by_stdlib[0].headers).items()}["user-agent"] == USER_AGENT
    assert_declared_by_meta(from_sim_log(by_stdlib), sim)


# ----- a small server: TLS, compressed answers, connections counted -------------------------------------------------

class _Served:
    def __init__(self, server: ThreadingHTTPServer, scheme: str) -> None:
        self.server, self.connections, self.posts = server, 0, 0
        host, port = server.server_address[:2]
        self.url = f"{scheme}://{'localhost' if scheme == 'https' else host}:{port}"


@pytest.fixture
def answer_server() -> Iterator[Any]:
    """``start(scheme="http", context=None, gzip_body=False, close_after=False)``: a server answering every GET
    with debug_token's answer for a valid token and every POST with a minted token (HTTP/1.1, keep-alive;
    ``close_after``: the connection closed after a GET's answer, without saying so; ``drop_post``: a POST's
    connection closed without an answer), counting the connections it accepts and the POSTs it received."""
    started: list[ThreadingHTTPServer] = []

    def start(scheme: str = "http", context: ssl.SSLContext | None = None, gzip_body: bool = False,
              close_after: bool = False, drop_post: bool = False) -> _Served:
        body = json.dumps(VALID).encode()
        sent = gzip.compress(body) if gzip_body else body

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                served.connections += 1

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if gzip_body:
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(sent)))
                self.end_headers()
                self.wfile.write(sent)
                self.close_connection = close_after

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                served.posts += 1
                if drop_post:  # the request arrived; the connection is closed without an answer
                    self.close_connection = True
                    return
                minted = json.dumps({"access_token": "EAAminted"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(minted)))
                self.end_headers()
                self.wfile.write(minted)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
                return None

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        served = _Served(server, scheme)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return served

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _self_signed(tmp_path: Path, names: list[str]) -> tuple[Path, Path]:
    """A self-signed certificate for ``names`` (DNS names; 127.0.0.1 too) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([*(x509.DNSName(n) for n in names),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{names[0]}.pem", tmp_path / f"{names[0]}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def _tls_server(answer_server: Any, cert: Path, key: Path) -> _Served:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    served: _Served = answer_server("https", context)
    return served


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


APP = AppCredentials("1", Secret("app-secret"))


@pytest.mark.parametrize("sender", SENDERS)
def test_tls_verification_fails_without_the_ca_and_succeeds_with_it(
        sender: str, tmp_path: Path, answer_server: Any, no_ca_env: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path, ["localhost"])
    served = _tls_server(answer_server, cert, key)
    api = _api(sender, served.url)
    try:
        with pytest.raises(Transient, match=r"cannot reach the Graph API at https://localhost:\d+ \(ConnectError\)"):
            api.debug_token(Secret("EAAsome"), APP)
    finally:
        _close(api)
    no_ca_env.setenv("SSL_CERT_FILE", str(cert))  # the CA setting the httpx client honours, read when it is built
    api = _api(sender, served.url)
    try:
        assert api.debug_token(Secret("EAAsome"), APP).is_valid
    finally:
        _close(api)


@pytest.mark.parametrize("sender", SENDERS)
def test_tls_checks_the_host_name(sender: str, tmp_path: Path, answer_server: Any,
                                  no_ca_env: pytest.MonkeyPatch) -> None:
    cert, key = _self_signed(tmp_path, ["graph.example"])  # trusted, but for another name (and 127.0.0.1)
    served = _tls_server(answer_server, cert, key)
    no_ca_env.setenv("SSL_CERT_FILE", str(cert))
    api = _api(sender, served.url)  # https://localhost:port
    try:
        with pytest.raises(Transient, match=r"\(ConnectError\)"):
            api.debug_token(Secret("EAAsome"), APP)
    finally:
        _close(api)


# ----- which sender -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY"])
def test_a_proxy_setting_hands_the_calls_to_httpx(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    plain = HttpxGraphApi()
    assert isinstance(plain.sender, StdlibSender)
    plain.close()
    monkeypatch.setenv(variable, "http://127.0.0.1:9")
    proxied = HttpxGraphApi()
    try:
        assert isinstance(proxied.sender, HttpxSender)
    finally:
        proxied.close()


@pytest.mark.parametrize("url", ["https://user:pw@graph.facebook.com", "ftp://graph.facebook.com",
                                 "https://graph.facebook.com:notaport", "https://graph.facebook.com/?x=1"],
                         ids=["userinfo", "scheme", "port", "query"])
def test_an_unusual_address_goes_through_httpx(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    api = HttpxGraphApi(base_url=url)
    try:
        assert isinstance(api.sender, HttpxSender)
    finally:
        api.close()


def test_an_injected_client_is_used() -> None:
    import httpx

    sim, world = GraphSimulator.demo_world(clock=SimClock(START))
    with httpx.Client(transport=sim.transport()) as client:
        api = HttpxGraphApi(client)
        assert isinstance(api.sender, HttpxSender) and api.sender.client is client
        assert api.debug_token(Secret(world.admin_token), AppCredentials(world.app_id, Secret(world.app_secret)))
        api.close()
        assert not client.is_closed  # the caller's client: the caller closes it
    assert len(sim.requests) == 1


# ----- the stdlib sender's connections and answers ------------------------------------------------------------------

def test_connections_are_kept_alive_and_shared_by_threads(answer_server: Any) -> None:
    served = answer_server()
    api = _api("stdlib", served.url)
    assert isinstance(api.sender, StdlibSender)
    try:
        for _ in range(5):
            assert api.debug_token(Secret("EAAsome"), APP).is_valid
        assert served.connections == api.sender.connections == 1
        with ThreadPoolExecutor(4) as pool:
            assert all(pool.map(lambda _i: api.debug_token(Secret("EAAsome"), APP).is_valid, range(40)))
        assert 1 <= api.sender.connections <= 4 and served.connections == api.sender.connections
    finally:
        api.close()


def test_a_connection_the_server_closed_while_idle_is_not_reused(answer_server: Any) -> None:
    """An idle keep-alive connection the server has closed (its keep-alive timeout) is replaced before the
    request is sent: a mint sent on it would be "lost" (sent, no answer) and not retried."""
    import select

    served = answer_server(close_after=True)  # answers as if keeping the connection, then closes it
    api = _api("stdlib", served.url)
    assert isinstance(api.sender, StdlibSender)
    try:
        assert api.debug_token(Secret("EAAsome"), APP).is_valid
        (idle,) = api.sender._idle
        assert idle.sock is not None and select.select([idle.sock], [], [], 10)[0]  # the server's close arrived
        minted = api.generate_token("1", APP, Secret("EAAadmin"), ("whatsapp_business_messaging",))
        assert minted.reveal() == "EAAminted"
        assert served.connections == api.sender.connections == 2
    finally:
        api.close()


@pytest.mark.parametrize("sender", SENDERS)
def test_a_mint_whose_connection_closed_without_an_answer_is_lost_not_retried(sender: str, answer_server: Any) -> None:
    served = answer_server(drop_post=True)
    api = _api(sender, served.url)
    try:
        with pytest.raises(Transient, match=r"broke before Meta answered \(RemoteProtocolError\)\. A token may have "
                                            r"been minted"):
            api.generate_token("1", APP, Secret("EAAadmin"), ("whatsapp_business_messaging",))
        assert served.posts == 1
    finally:
        _close(api)


def test_a_gzip_answer_is_read(answer_server: Any) -> None:
    served = answer_server(gzip_body=True)
    api = _api("stdlib", served.url)
    try:
        assert api.debug_token(Secret("EAAsome"), APP).is_valid
    finally:
        api.close()


def test_a_refused_connection_is_a_transient_error_that_never_reached_meta() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = _api("stdlib", f"http://127.0.0.1:{port}", max_attempts=1)
    try:
        with pytest.raises(Transient, match=r"cannot reach the Graph API at http://127.0.0.1:\d+ \(ConnectError\)"):
            api.generate_token("1", APP, Secret("EAAadmin"), ("whatsapp_business_messaging",))
    finally:
        api.close()
