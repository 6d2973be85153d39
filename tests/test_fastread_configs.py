"""The fast read path on the other configurations - the Vault/OpenBao backend (a real OpenBao dev server), the
PostgreSQL store (a real embedded PostgreSQL) and the keyring key provider (keyring's real file-backed
backend) - against the full path (typer, SQLAlchemy, hvac): the same output, the same audit events, the same
exit codes and messages for a missing token, a wrong key or credential, a tampered record and a backend that
is down; and what each imports."""

from __future__ import annotations

import base64
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cli_support import Result, both_paths, import_two_tokens, imports_of

from meta_tokenvault.adapters.hashicorp_light import LightKvClient
from meta_tokenvault.config import Settings
from meta_tokenvault.fastread import pg_connect_args
from meta_tokenvault.jsontext import array_text, one_line_encoder

TOKEN = "EAAGconfigsProdTok" + "q1w2e3" * 20 + "PROD"
OTHER = "EAAGconfigsOtherTk" + "r4t5y6" * 20 + "OTHR"
HEAVY = ("hvac", "requests", "httpx", "sqlalchemy", "sqlmodel", "typer", "click", "rich")
CHILD = ["python3", "-c", "import os; print(os.environ['WHATSAPP_TOKEN'][-4:])"]


@dataclass
class Config:
    """A store of two tokens ('prod', 'other') in one configuration, and how to break it."""

    name: str
    env: dict[str, str]
    watch: tuple[str, ...]
    tamper: Callable[[], None] = field(repr=False)  # make 'prod' read back as something else: exit 4
    wrong_key: Callable[[pytest.MonkeyPatch], None] = field(repr=False)
    down: Callable[[pytest.MonkeyPatch], None] = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _populate(monkeypatch: pytest.MonkeyPatch) -> None:
    import_two_tokens(monkeypatch, TOKEN, OTHER)


def _sql_store() -> Any:
    from meta_tokenvault.adapters.store_sql import SqlStore

    return SqlStore.open(Settings.resolve({}, environ=os.environ).database_url)


def _swap_blobs(execute: Callable[[str], None]) -> None:
    """The 'other' token's sealed value moved onto 'prod': it opens only for 'other' (AES-GCM's AAD)."""
    execute("UPDATE tv_secret_blob SET wrapped_key = o.wrapped_key, ciphertext = o.ciphertext "
            "FROM (SELECT wrapped_key, ciphertext FROM tv_secret_blob WHERE kind = 'token' AND owner_id = "
            "(SELECT id FROM tv_token WHERE label = 'other')) AS o "
            "WHERE kind = 'token' AND owner_id = (SELECT id FROM tv_token WHERE label = 'prod')")


def _vault(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, home: Path) -> Config:
    server = request.getfixturevalue("openbao")
    scope = request.getfixturevalue("openbao_scope")
    env = {"TOKENVAULT_HOME": str(home), "TOKENVAULT_KEY_PROVIDER": "file", "TOKENVAULT_BACKEND": "vault",
           "TOKENVAULT_VAULT_ADDR": server.url, "TOKENVAULT_VAULT_TOKEN": server.root_token,
           "TOKENVAULT_VAULT_PREFIX": scope.prefix}

    def tamper() -> None:  # the path's owner rewritten outside tokenvault: it belongs to another record now
        server.bao("kv", "metadata", "put", "-custom-metadata=tokenvault_owner_id=999999",
                   "-custom-metadata=tokenvault_kind=token", f"secret/{scope.prefix}/prod")

    def wrong_key(mp: pytest.MonkeyPatch) -> None:  # a Vault token the server does not know: 403
        mp.setenv("TOKENVAULT_VAULT_TOKEN", "hvs.not-a-token-this-server-issued")

    def down(mp: pytest.MonkeyPatch) -> None:
        mp.setenv("TOKENVAULT_VAULT_ADDR", f"http://127.0.0.1:{_free_port()}")

    return Config("vault-backend", env, HEAVY + ("keyring",), tamper, wrong_key, down)


def _postgres(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, home: Path) -> Config:
    url = request.getfixturevalue("pg_url")
    server = request.getfixturevalue("postgres_server")
    env = {"TOKENVAULT_HOME": str(home), "TOKENVAULT_KEY_PROVIDER": "file", "TOKENVAULT_DB_URL": url}

    def tamper() -> None:
        conn = server.connect(url.rsplit("/", 1)[1].split("?")[0])
        try:
            with conn.cursor() as cur:
                _swap_blobs(cur.execute)
        finally:
            conn.close()

    def wrong_key(_mp: pytest.MonkeyPatch) -> None:  # the key file replaced by another key (same id)
        for key in (home / "keys").glob("master-*.key"):
            key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")

    def down(mp: pytest.MonkeyPatch) -> None:  # the server's socket is not where the URL says
        mp.setenv("TOKENVAULT_DB_URL", url.replace(f"port={server.port}", f"port={_free_port()}"))

    return Config("postgres", env, HEAVY + ("keyring", "ssl"), tamper, wrong_key, down)  # ssl: _import_psycopg2


def _keyring(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, home: Path) -> Config:
    env = {"TOKENVAULT_HOME": str(home), "TOKENVAULT_KEY_PROVIDER": "keyring",
           "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring"}

    def tamper() -> None:
        import sqlite3

        conn = sqlite3.connect(home / "tokenvault.db")
        with conn:
            _swap_blobs(conn.execute)
        conn.close()

    def wrong_key(_mp: pytest.MonkeyPatch) -> None:  # the keyring's master key replaced by another
        import keyring.core

        ring = keyring.core.load_keyring("keyrings.alt.file.PlaintextKeyring")
        current = ring.get_password("tokenvault", "current-key-id")
        ring.set_password("tokenvault", f"master-key:{current}", base64.b64encode(os.urandom(32)).decode())

    def down(mp: pytest.MonkeyPatch) -> None:  # no usable keyring backend at all
        mp.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")

    return Config("keyring", env, tuple(h for h in HEAVY), tamper, wrong_key, down)


@pytest.fixture(params=[
    pytest.param(_vault, id="vault-backend", marks=[pytest.mark.slow, pytest.mark.openbao]),
    pytest.param(_postgres, id="postgres", marks=[pytest.mark.slow, pytest.mark.postgres]),
    pytest.param(_keyring, id="keyring"),
])
def config(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, home: Path) -> Iterator[Config]:
    made: Config = request.param(request, monkeypatch, home)
    for name, value in made.env.items():
        monkeypatch.setenv(name, value)
    _populate(monkeypatch)
    yield made


def _last_events(n: int) -> list[tuple[str, str, str, str]]:
    store = _sql_store()
    try:
        store.verify_audit()  # one chain, whoever appended
        return [(e.actor, e.action, e.subject, str(e.details)) for e in store.list_audit(limit=n)]
    finally:
        store.close()


def _same(fast: Result, full: Result) -> None:
    assert (fast.code, fast.out, fast.err) == (full.code, full.out, full.err)


# --------------------------------------------------------------------------- same output, same audit events
@pytest.mark.parametrize("args,out", [
    (["token", "reveal", "prod"], TOKEN + "\n"),
    (["token", "reveal", "other", "--version", "1"], OTHER + "\n"),
    (["exec", "--token", "prod", "--", *CHILD], TOKEN[-4:] + "\n"),
], ids=["reveal", "reveal-version", "exec"])
def test_the_fast_path_gives_the_full_paths_output_and_audit_events(
        config: Config, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, args: list[str],
        out: str) -> None:
    before = len(_sql_store().list_audit())
    fast, full, fast_ran = both_paths(capfd, monkeypatch, args)
    assert fast_ran, f"{config.name}: this command line should take the fast path"
    _same(fast, full)
    assert fast.code == 0 and fast.out == out, fast.err
    events = _last_events(2)
    assert len(_sql_store().list_audit()) == before + 2
    assert events[0] == events[1] and events[0][1] in ("token.reveal", "token.exec")


def test_token_list_json_is_the_full_paths(config: Config, capfd: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    fast, full, fast_ran = both_paths(capfd, monkeypatch, ["token", "list", "--json"])
    assert fast_ran
    _same(fast, full)
    # both print the texts written from the rows (queries.token_json_lines): the records' JSON, byte for byte
    store = _sql_store()
    try:
        assert fast.out == array_text([one_line_encoder()(r.as_json()) for r in store.list_tokens()])
    finally:
        store.close()


# --------------------------------------------------------------------------- the same refusals
def test_a_missing_token_is_exit_3_on_both_paths(config: Config, capfd: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for args in (["token", "reveal", "nope"], ["exec", "--token", "nope", "--", *CHILD],
                 ["token", "reveal", "prod", "--version", "9"]):
        fast, full, fast_ran = both_paths(capfd, monkeypatch, args)
        _same(fast, full)
        assert fast.code == 3 and fast.err.startswith("error: "), fast.err
        # the label is checked in the store before any secret is read; a missing Vault version is a 404,
        # which the fast path leaves to hvac's error table
        assert fast_ran == (config.name != "vault-backend" or args[-1] != "9")


def test_a_tampered_record_is_exit_4_on_both_paths_and_audits_nothing(
        config: Config, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config.tamper()
    before = len(_sql_store().list_audit())
    for args in (["token", "reveal", "prod"], ["exec", "--token", "prod", "--", *CHILD]):
        fast, full, fast_ran = both_paths(capfd, monkeypatch, args)
        assert fast_ran
        _same(fast, full)
        assert fast.code == 4 and fast.out == "" and fast.err.startswith("error: "), fast.err
    assert len(_sql_store().list_audit()) == before


def test_a_wrong_key_or_credential_fails_alike_on_both_paths(
        config: Config, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config.wrong_key(monkeypatch)
    before = len(_sql_store().list_audit())
    fast, full, fast_ran = both_paths(capfd, monkeypatch, ["token", "reveal", "prod"])
    _same(fast, full)
    assert fast.code == (5 if config.name == "vault-backend" else 4), fast.err
    assert fast.out == "" and fast.err.startswith("error: "), fast.err
    if config.name == "vault-backend":
        assert "permission denied" in fast.err
    assert fast_ran == (config.name != "vault-backend")  # a 403 is answered by the full path's table
    assert len(_sql_store().list_audit()) == before


def test_a_backend_that_is_down_fails_alike_on_both_paths(
        config: Config, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    config.down(monkeypatch)
    for args in (["token", "reveal", "prod"], ["exec", "--token", "prod", "--", *CHILD]):
        fast, full, _fast_ran = both_paths(capfd, monkeypatch, args)
        _same(fast, full)
        assert fast.code not in (0, 1) and fast.out == "" and fast.err.startswith("error: "), fast.err
        assert "unexpected" not in fast.err and len(fast.err.splitlines()) <= 2


# --------------------------------------------------------------------------- what start-up imports
@pytest.mark.slow
@pytest.mark.parametrize("args", [["token", "reveal", "prod"], ["exec", "--token", "prod", "--", "true"]],
                         ids=["reveal", "exec"])
def test_fast_commands_import_no_heavy_library(config: Config, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENVAULT_", "VAULT_"))}
    env.update(config.env)
    code, loaded, _out = imports_of(args, env, config.watch)
    assert code == 0
    assert loaded == [], f"{config.name}: `tokenvault {' '.join(args)}` imported {loaded}"


# --------------------------------------------------------------------------- the light clients' choices
@pytest.mark.parametrize("addr,token,secret_id,usable", [
    ("https://vault.example.com:8200", "hvs.tok-xyz", None, True),
    ("http://127.0.0.1:8200/", "hvs.tok-xyz", None, True),
    ("https://vault.example.com/prefix", "hvs.tok-xyz", None, True),
    ("https://vault.example.com:8200", None, None, False),
    ("https://vault.example.com:8200", "t", "sid", False),
    ("vault.example.com:8200", "t", None, False),
    ("https://user:pw@vault.example.com", "t", None, False),
    ("https://vault.example.com:99999", "t", None, False),
    ("https://vault.example.com?x=1", "t", None, False),
], ids=["https", "http-slash", "path", "no-token", "approle-secret-id", "no-scheme", "userinfo", "bad-port",
        "query"])
def test_the_light_kv_client_takes_only_the_plain_case(addr: str, token: str | None, secret_id: str | None,
                                                      usable: bool) -> None:
    env = {"TOKENVAULT_VAULT_ADDR": addr, **({"TOKENVAULT_VAULT_TOKEN": token} if token else {}),
           **({"TOKENVAULT_VAULT_SECRET_ID": secret_id} if secret_id else {})}
    settings = Settings.resolve({}, environ=env)
    client = LightKvClient.from_settings(settings, env)
    assert (client is not None) == usable
    if client is not None:
        assert client.url == addr.rstrip("/") and token not in repr(client)


@pytest.mark.parametrize("url,args", [
    ("postgresql+psycopg2://postgres@/tv_x?host=/tmp/sock&port=5433",
     {"user": "postgres", "dbname": "tv_x", "host": "/tmp/sock", "port": "5433"}),
    ("postgresql://u%40x:p%2Fw@db.example.com:6543/prod",
     {"user": "u@x", "password": "p/w", "host": "db.example.com", "port": 6543, "dbname": "prod"}),
    ("postgresql+asyncpg://u@h/db", None),
    ("postgresql+psycopg://u@h/db", None),
    ("postgresql://u@/db?host=a&host=b", None),
    ("sqlite:///x.db", None),
], ids=["socket-query", "quoted-credentials", "asyncpg", "psycopg3", "two-hosts", "sqlite"])
def test_postgres_urls_become_the_connect_arguments_sqlalchemy_would_pass(url: str,
                                                                         args: dict[str, Any] | None) -> None:
    assert pg_connect_args(url) == args
    if args is not None:  # as SQLAlchemy's psycopg2 dialect would connect
        from sqlalchemy.dialects.postgresql.psycopg2 import PGDialect_psycopg2
        from sqlalchemy.engine import make_url

        _cargs, kwargs = PGDialect_psycopg2().create_connect_args(make_url(url))
        assert {k: str(v) for k, v in kwargs.items()} == {k: str(v) for k, v in args.items()}


@pytest.mark.postgres
def test_the_postgres_schema_version_is_the_full_paths(request: pytest.FixtureRequest) -> None:
    # read in one statement (no catalog query): an empty database is 0, the version table found as the full
    # path finds it (SQLAlchemy's has_table: through search_path), whatever the current schema
    from meta_tokenvault.fastread import PgFastStore

    url = request.getfixturevalue("pg_url")
    server = request.getfixturevalue("postgres_server")

    def versions() -> tuple[int, int]:
        import sqlalchemy as sa

        from meta_tokenvault import migrations

        store = PgFastStore.connect_url(url)
        assert store is not None
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                return store.schema_version(), migrations.current_version(conn)
        finally:
            store.close()
            engine.dispose()

    assert versions() == (0, 0)
    database = url.rsplit("/", 1)[1].split("?")[0]
    conn = server.connect(database)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE SCHEMA other")
            cur.execute("CREATE TABLE other.tv_schema_version (version integer, applied_at timestamp)")
            cur.execute("INSERT INTO other.tv_schema_version VALUES (7, now())")
            assert versions() == (0, 0)  # not on the search path
            cur.execute(f'ALTER DATABASE "{database}" SET search_path TO "$user", public, other')
            cur.execute("CREATE TABLE public.tv_schema_version (version integer, applied_at timestamp)")
            cur.execute("INSERT INTO public.tv_schema_version VALUES (3, now())")
            assert versions() == (3, 3)  # the first on the path
            cur.execute("DROP TABLE public.tv_schema_version")
            assert versions() == (7, 7)  # a later schema of the path: both paths find it
    finally:
        conn.close()


# --------------------------------------------------------------------------- the light KV client over TLS
@dataclass
class TlsKv:
    url: str
    ca_cert: Path
    seen: list[dict[str, str]]


@pytest.fixture
def tls_kv(tmp_path: Path) -> Iterator[TlsKv]:
    """A KV v2 look-alike over HTTPS with a self-signed certificate for 127.0.0.1; records each request."""
    import datetime as dt
    import ipaddress
    import json
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenvault-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "ca.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            body = json.dumps({"data": {"data": {"token": TOKEN}, "metadata": {
                "version": 1, "custom_metadata": {"tokenvault_owner_id": "1", "tokenvault_kind": "token"}}}})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TlsKv(f"https://127.0.0.1:{server.server_address[1]}", cert_path, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_light_client_verifies_tls_with_the_configured_ca_and_sends_token_and_namespace(tls_kv: TlsKv) -> None:
    from meta_tokenvault.adapters.secrets_hashicorp import HashicorpBackend
    from meta_tokenvault.types import Secret, SecretKind, SecretRef

    env = {"TOKENVAULT_VAULT_ADDR": tls_kv.url, "TOKENVAULT_VAULT_TOKEN": "hvs.light-client-token",
           "TOKENVAULT_VAULT_NAMESPACE": "team-a", "TOKENVAULT_VAULT_CACERT": str(tls_kv.ca_cert)}
    client = LightKvClient.from_settings(Settings.resolve({}, environ=env), env)
    assert client is not None
    backend = HashicorpBackend(client, mount="secret", prefix="tokenvault")
    assert backend.get(SecretRef(SecretKind.TOKEN, 1, 1, "prod")) == Secret(TOKEN)
    [request] = tls_kv.seen
    assert request["path"] == "/v1/secret/data/tokenvault/prod?version=1"
    assert request["x-vault-token"] == "hvs.light-client-token" and request["x-vault-namespace"] == "team-a"
    assert request["x-vault-request"] == "true"


def test_the_default_ca_bundle_is_certifis_found_without_importing_certifi(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.machinery
    import importlib.util
    import subprocess
    import sys

    import certifi
    import requests.utils

    from meta_tokenvault.adapters import hashicorp_light
    from meta_tokenvault.fallback import FastPathUnavailable

    probe = ("import sys; from meta_tokenvault.adapters.hashicorp_light import _default_ca_bundle; "
             "print(_default_ca_bundle()); print('certifi' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == [certifi.where(), "False"] and requests.utils.DEFAULT_CA_BUNDLE_PATH == certifi.where()
    # a package folder without the file (a zipped install...): certifi answers; no certifi: the full path
    (tmp_path / "certifi").mkdir()
    elsewhere = importlib.machinery.ModuleSpec("certifi", None, origin=str(tmp_path / "certifi" / "__init__.py"),
                                               is_package=True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: elsewhere)
    assert hashicorp_light._default_ca_bundle() == certifi.where()
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FastPathUnavailable):
        hashicorp_light._default_ca_bundle()


def test_an_untrusted_certificate_is_left_to_the_full_path_which_reports_it(tls_kv: TlsKv) -> None:
    from meta_tokenvault.adapters.hashicorp_client import client_from_settings
    from meta_tokenvault.adapters.secrets_hashicorp import HashicorpBackend
    from meta_tokenvault.errors import VaultUnavailable
    from meta_tokenvault.fallback import FastPathUnavailable
    from meta_tokenvault.types import SecretKind, SecretRef

    env = {"TOKENVAULT_VAULT_ADDR": tls_kv.url, "TOKENVAULT_VAULT_TOKEN": "hvs.light-client-token"}
    settings = Settings.resolve({}, environ=env)  # no CA configured: the self-signed certificate is not trusted
    ref = SecretRef(SecretKind.TOKEN, 1, 1, "prod")
    light = LightKvClient.from_settings(settings, env)
    assert light is not None
    with pytest.raises(FastPathUnavailable):
        HashicorpBackend(light).get(ref)
    with pytest.raises(VaultUnavailable, match="TLS verification failed"):
        HashicorpBackend(client_from_settings(settings)).get(ref)
    assert tls_kv.seen == []  # neither sent the token to a server it could not verify
