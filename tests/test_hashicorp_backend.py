"""The Vault KV v2 secret backend and the hvac client against a real OpenBao dev server.

Server fixtures come from tests/plugins/openbao.py; the SecretBackend contract from
vault/testing/contract_secrets.py (the local backend runs the same class).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import hvac.exceptions as hx
import pytest
import requests

from meta_tokenvault.adapters.hashicorp_client import build_client, translate_error
from meta_tokenvault.adapters.secrets_hashicorp import HashicorpBackend
from meta_tokenvault.errors import (
    AlreadyExists,
    IntegrityError,
    InvalidInput,
    NotFound,
    VaultError,
    VaultUnavailable,
)
from meta_tokenvault.ports.secrets import SecretBackend
from meta_tokenvault.testing.contract_secrets import PROVENANCE, SecretBackendContract
from meta_tokenvault.types import Secret, SecretKind, SecretRef

pytestmark = pytest.mark.openbao

TOKEN = "EAAGm0PX4ZCpsBAKZBvault" + "Q7" * 30
DOCS = Path(__file__).resolve().parents[1] / "docs" / "vault.md"


def ref(label: str, version: int = 1, owner: int = 7, kind: SecretKind = SecretKind.TOKEN) -> SecretRef:
    return SecretRef(kind, owner, version, label)


def one_line(exc: VaultError, *forbidden: str) -> None:
    """The CLI prints ``message`` and ``hint``: one line each, no secret in either."""
    assert "\n" not in exc.message and "\n" not in exc.hint
    for value in forbidden:
        assert value not in exc.message and value not in exc.hint


@pytest.fixture
def backend(openbao: Any, openbao_scope: Any) -> HashicorpBackend:
    return HashicorpBackend(openbao.client(), mount=openbao_scope.mount, prefix=openbao_scope.prefix)


class TestHashicorpBackend(SecretBackendContract):
    """The port's contract on KV v2."""

    @pytest.fixture
    def backend(self, openbao: Any, openbao_scope: Any) -> HashicorpBackend:
        return HashicorpBackend(openbao.client(), mount=openbao_scope.mount, prefix=openbao_scope.prefix)

    def visible_metadata(self, backend: SecretBackend, ref: SecretRef) -> dict[str, str]:
        assert isinstance(backend, HashicorpBackend)
        return backend.read_custom_metadata(ref)


# ---------------------------------------------------------------------- layout and metadata
def test_layout_stable_path_and_metadata_via_bao_cli(openbao: Any, openbao_scope: Any,
                                                    backend: HashicorpBackend) -> None:
    label, prefix = "prod-whatsapp", openbao_scope.prefix
    backend.put(ref(label, 1), Secret(TOKEN + "v1"), PROVENANCE)
    backend.put(ref(label, 2), Secret(TOKEN + "v2"), PROVENANCE)
    assert backend.data_path(ref(label)) == f"secret/data/{prefix}/{label}"
    # what a deployment reads: the latest version at a stable path, field `token`
    got = requests.get(f"{openbao.url}/v1/secret/data/{prefix}/{label}",
                       headers={"X-Vault-Token": openbao.root_token}, timeout=5).json()
    assert got["data"]["data"] == {"token": TOKEN + "v2"}
    assert got["data"]["metadata"]["version"] == 2
    field = openbao.bao("kv", "get", "-field=token", f"secret/{prefix}/{label}").stdout
    assert field.strip() == TOKEN + "v2"
    old = openbao.bao("kv", "get", "-version=1", "-field=token", f"secret/{prefix}/{label}").stdout
    assert old.strip() == TOKEN + "v1"
    # provenance in custom_metadata, shown by Vault's own tools, never the value
    shown = openbao.bao("kv", "metadata", "get", "-format=json", f"secret/{prefix}/{label}").stdout
    assert TOKEN not in shown and TOKEN[-12:] not in shown
    meta = json.loads(shown)["data"]
    assert meta["custom_metadata"] == {**PROVENANCE, "tokenvault_kind": "token", "tokenvault_owner_id": "7",
                                       "tokenvault_version": "2", "managed_by": "tokenvault"}
    assert meta["cas_required"] is True
    # business secrets live under _business/<name>/<kind>
    backend.put(ref("acme", kind=SecretKind.APP_SECRET, owner=3), Secret("app-secret-value-123"), {})
    listed = openbao.bao("kv", "list", "-format=json", f"secret/{prefix}/_business/acme").stdout
    assert json.loads(listed) == ["app_secret"]


def test_metadata_containing_the_secret_is_refused(backend: HashicorpBackend) -> None:
    r = ref("careless")
    for bad in ({"note": TOKEN}, {"note": f"token={TOKEN};"}, {TOKEN: "key"}):
        with pytest.raises(InvalidInput) as info:
            backend.put(r, Secret(TOKEN), bad)
        one_line(info.value, TOKEN)
    assert not backend.exists(r)


def test_metadata_over_kv_limits_is_refused_before_writing(backend: HashicorpBackend) -> None:
    r = ref("big-meta")
    with pytest.raises(InvalidInput, match="limits"):
        backend.put(r, Secret(TOKEN), {"scopes": "x" * 600})
    assert not backend.exists(r)


def test_invalid_names_cannot_escape_the_prefix(backend: HashicorpBackend) -> None:
    for name in ("../other", "a/b", "", ".hidden", "x" * 129):
        with pytest.raises(InvalidInput):
            backend.put(ref(name), Secret(TOKEN))
    with pytest.raises(InvalidInput):
        HashicorpBackend(object(), prefix="a//b")


# ---------------------------------------------------------------------- check-and-set
def test_cas_conflict_between_two_writers_the_loser_overwrites_nothing(openbao: Any, openbao_scope: Any) -> None:
    """Writer B stores version 2 after writer A checked the path: A's CAS write is refused by the server."""
    other = HashicorpBackend(openbao.client(), prefix=openbao_scope.prefix)

    class SlowWriter(HashicorpBackend):
        def _read_metadata(self, path: str) -> dict[str, Any] | None:
            seen = super()._read_metadata(path)
            if seen and seen.get("current_version") == 1:
                other.put(ref("raced", 2), Secret(TOKEN + "-B"), PROVENANCE)  # B wins in between
            return seen

    a = SlowWriter(openbao.client(), prefix=openbao_scope.prefix)
    a.put(ref("raced", 1), Secret(TOKEN + "-v1"), PROVENANCE)
    with pytest.raises(AlreadyExists) as info:
        a.put(ref("raced", 2), Secret(TOKEN + "-A"), PROVENANCE)
    one_line(info.value, TOKEN)
    assert "check-and-set" in info.value.message
    assert a.get(ref("raced", 2)).reveal() == TOKEN + "-B"
    assert a.get(ref("raced", 1)).reveal() == TOKEN + "-v1"


def test_concurrent_writers_exactly_one_wins(openbao: Any, openbao_scope: Any) -> None:
    writers = [HashicorpBackend(openbao.client(), prefix=openbao_scope.prefix) for _ in range(4)]
    writers[0].put(ref("race4", 1), Secret(TOKEN), PROVENANCE)
    barrier, results = threading.Barrier(len(writers)), {}

    def write(i: int) -> None:
        barrier.wait()
        try:
            writers[i].put(ref("race4", 2), Secret(f"{TOKEN}-writer-{i}"), PROVENANCE)
            results[i] = "won"
        except AlreadyExists:
            results[i] = "refused"

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(writers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if r == "won"]
    assert len(winners) == 1 and len(results) == len(writers)
    assert writers[0].get(ref("race4", 2)).reveal() == f"{TOKEN}-writer-{winners[0]}"


def test_writes_by_hand_without_cas_are_refused(openbao: Any, openbao_scope: Any, backend: HashicorpBackend) -> None:
    backend.put(ref("guarded"), Secret(TOKEN), PROVENANCE)
    out = openbao.bao("kv", "put", f"secret/{openbao_scope.prefix}/guarded", "token=overwritten", check=False)
    assert out.returncode != 0 and "check-and-set" in out.stderr
    assert backend.get(ref("guarded")).reveal() == TOKEN


# ---------------------------------------------------------------------- version mapping edge cases
def test_gap_in_versions_is_an_integrity_error(backend: HashicorpBackend) -> None:
    backend.put(ref("gappy", 1), Secret(TOKEN))
    with pytest.raises(IntegrityError, match="KV version 1"):
        backend.put(ref("gappy", 3), Secret(TOKEN + "3"))
    assert not backend.exists(ref("gappy", 3))


def test_a_tombstone_path_is_recycled_for_a_new_first_version(backend: HashicorpBackend) -> None:
    """A failed import destroys version 1; importing the label again must work."""
    backend.put(ref("retry", 1, owner=10), Secret(TOKEN + "first"))
    backend.destroy(ref("retry", 1, owner=10))
    backend.put(ref("retry", 1, owner=11), Secret(TOKEN + "second"))
    assert backend.get(ref("retry", 1, owner=11)).reveal() == TOKEN + "second"


def test_a_live_path_of_another_record_is_not_touched(backend: HashicorpBackend) -> None:
    backend.put(ref("taken", 1, owner=20), Secret(TOKEN))
    with pytest.raises(AlreadyExists):
        backend.put(ref("taken", 1, owner=21), Secret(TOKEN + "x"))
    with pytest.raises(IntegrityError, match="another record"):
        backend.get(ref("taken", 1, owner=21))
    assert not backend.exists(ref("taken", 1, owner=21))
    backend.destroy(ref("taken", 1, owner=21))  # not ours: left alone
    assert backend.get(ref("taken", 1, owner=20)).reveal() == TOKEN


def test_a_version_written_outside_tokenvault_is_an_integrity_error(openbao: Any, openbao_scope: Any,
                                                                   backend: HashicorpBackend) -> None:
    openbao.bao("kv", "put", f"secret/{openbao_scope.prefix}/manual", "password=hunter2")
    with pytest.raises(IntegrityError, match="not a tokenvault secret"):
        backend.get(ref("manual", 1))


# ---------------------------------------------------------------------- the client
def test_vault_env_variables_and_token_file_are_ignored(openbao: Any, openbao_scope: Any,
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """VAULT_ADDR/VAULT_TOKEN/VAULT_CACERT, ~/.vault-token and requests' proxy/CA variables never leak in."""
    (tmp_path / ".vault-token").write_text("bogus-token-from-file")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    monkeypatch.setenv("VAULT_TOKEN", "bogus-token-from-env")
    monkeypatch.setenv("VAULT_CACERT", str(tmp_path / "missing-ca.pem"))
    monkeypatch.setenv("VAULT_NAMESPACE", "bogus-namespace")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing-bundle.pem"))
    # hvac itself would take them (this is what we guard against)
    assert hvac_client_without_args().token == "bogus-token-from-env"
    client = build_client(openbao.url, token=openbao.root_token)
    assert client.url == openbao.url and client.token == openbao.root_token
    assert client.adapter.namespace is None
    backend = HashicorpBackend(client, prefix=openbao_scope.prefix)
    backend.put(ref("env-proof"), Secret(TOKEN))
    assert backend.get(ref("env-proof")).reveal() == TOKEN


def hvac_client_without_args() -> Any:
    import hvac

    return hvac.Client()


def test_build_client_refuses_missing_or_ambiguous_configuration() -> None:
    with pytest.raises(InvalidInput, match="address"):
        build_client(None, token="t")
    with pytest.raises(InvalidInput, match="address"):
        build_client("vault.example.com:8200", token="t")
    with pytest.raises(InvalidInput, match="credentials") as info:
        build_client("http://127.0.0.1:9")
    assert "TOKENVAULT_VAULT_TOKEN" in info.value.hint
    with pytest.raises(InvalidInput, match="choose one"):
        build_client("http://127.0.0.1:9", token="t", role_id="r", secret_id="s")


def test_approle_login(openbao: Any, openbao_scope: Any) -> None:
    root = openbao.client()
    mount = f"approle-{openbao_scope.transit_key}"
    root.sys.enable_auth_method("approle", path=mount)
    policy = f'path "secret/data/{openbao_scope.prefix}/*" {{ capabilities = ["create", "read", "update"] }}\n' \
             f'path "secret/metadata/{openbao_scope.prefix}/*" {{ capabilities = ["create", "read", "update"] }}'
    root.sys.create_or_update_policy(name=mount, policy=policy)
    root.auth.approle.create_or_update_approle("tokenvault", token_policies=[mount], mount_point=mount)
    role_id = root.auth.approle.read_role_id("tokenvault", mount_point=mount)["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("tokenvault", mount_point=mount)["data"]["secret_id"]

    client = build_client(openbao.url, role_id=role_id, secret_id=secret_id, approle_mount=mount)
    assert client.token and client.token != openbao.root_token
    backend = HashicorpBackend(client, prefix=openbao_scope.prefix)
    backend.put(ref("approle"), Secret(TOKEN), PROVENANCE)
    assert backend.get(ref("approle")).reveal() == TOKEN

    with pytest.raises(VaultUnavailable, match="AppRole login") as info:
        build_client(openbao.url, role_id=role_id, secret_id="not-the-secret-id", approle_mount=mount)
    assert info.value.exit_code == 5
    one_line(info.value, "not-the-secret-id", secret_id)


def test_hvac_is_imported_lazily() -> None:
    code = ("import sys, meta_tokenvault.adapters.secrets_hashicorp, meta_tokenvault.adapters.keys_transit, "
            "meta_tokenvault.adapters.hashicorp_client, meta_tokenvault.testing.contract_secrets, meta_tokenvault.testing.contract_keys; "
            "sys.exit('hvac' in sys.modules or 'requests' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=60).returncode == 0


# ---------------------------------------------------------------------- failures a user meets
def test_server_stopped_mid_operation_is_vault_unavailable(openbao_throwaway: Any) -> None:
    server = openbao_throwaway
    backend = HashicorpBackend(server.client(), prefix="stopping")
    backend.put(ref("doomed"), Secret(TOKEN))
    server.stop()
    for call in (lambda: backend.get(ref("doomed")), lambda: backend.put(ref("doomed", 2), Secret(TOKEN)),
                 lambda: backend.exists(ref("doomed")), lambda: backend.destroy(ref("doomed"))):
        with pytest.raises(VaultUnavailable) as info:
            call()
        assert info.value.exit_code == 5
        assert info.value.message == f"Vault at {server.url} is unreachable: connection refused."
        one_line(info.value, TOKEN, server.root_token)
    availability = backend.availability()
    assert not availability.ok and "unreachable" in availability.reason


def test_sealed_server_says_unseal(openbao_throwaway: Any) -> None:
    server = openbao_throwaway
    backend = HashicorpBackend(server.client(), prefix="sealing")
    backend.put(ref("sealed"), Secret(TOKEN))
    server.seal()
    with pytest.raises(VaultUnavailable) as info:
        backend.get(ref("sealed"))
    assert info.value.exit_code == 5
    assert info.value.message == f"Vault at {server.url} is sealed."
    assert "unseal" in info.value.hint
    one_line(info.value, TOKEN, server.root_token)
    availability = backend.availability()
    assert not availability.ok and "sealed" in availability.reason


def test_forbidden_path_names_the_path_and_the_policy(openbao: Any, openbao_scope: Any) -> None:
    root = openbao.client()
    name = f"read-only-{openbao_scope.transit_key}"
    root.sys.create_or_update_policy(
        name=name, policy=f'path "secret/data/{openbao_scope.prefix}/elsewhere" {{ capabilities = ["read"] }}')
    limited = root.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
    backend = HashicorpBackend(openbao.client(limited), prefix=openbao_scope.prefix)
    with pytest.raises(VaultUnavailable) as info:
        backend.put(ref("forbidden"), Secret(TOKEN), PROVENANCE)
    exc = info.value
    assert exc.exit_code == 5
    assert "permission denied" in exc.message
    assert f"secret/metadata/{openbao_scope.prefix}/forbidden" in exc.message
    assert f'path "secret/metadata/{openbao_scope.prefix}/forbidden"' in exc.hint
    one_line(exc, TOKEN, limited, openbao.root_token)


def test_documented_policy_is_enough(openbao: Any, openbao_scope: Any) -> None:
    """The KV + Transit policy in docs/vault.md, with this test's names, allows everything tokenvault does."""
    from meta_tokenvault.adapters.keys_transit import TransitKeyProvider

    blocks = re.findall(r"```hcl\n(# tokenvault app policy.*?)```", DOCS.read_text(), flags=re.S)
    assert blocks, "docs/vault.md lost its app policy block"
    hcl = blocks[0].replace("secret/data/tokenvault/", f"secret/data/{openbao_scope.prefix}/")
    hcl = hcl.replace("secret/metadata/tokenvault/", f"secret/metadata/{openbao_scope.prefix}/")
    hcl = hcl.replace("secret/destroy/tokenvault/", f"secret/destroy/{openbao_scope.prefix}/")
    hcl = hcl.replace("transit/encrypt/tokenvault", f"transit/encrypt/{openbao_scope.transit_key}")
    hcl = hcl.replace("transit/decrypt/tokenvault", f"transit/decrypt/{openbao_scope.transit_key}")
    hcl = hcl.replace("transit/keys/tokenvault", f"transit/keys/{openbao_scope.transit_key}")
    root = openbao.client()
    name = f"app-{openbao_scope.transit_key}"
    root.sys.create_or_update_policy(name=name, policy=hcl)
    token = root.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
    TransitKeyProvider(root, key_name=openbao_scope.transit_key).create_key()  # an admin creates the key

    client = openbao.client(token)
    backend = HashicorpBackend(client, prefix=openbao_scope.prefix)
    assert backend.availability().ok
    backend.put(ref("policy", 1), Secret(TOKEN), PROVENANCE)
    backend.put(ref("policy", 2), Secret(TOKEN + "2"), PROVENANCE)
    assert backend.get(ref("policy", 1)).reveal() == TOKEN and backend.exists(ref("policy", 2))
    backend.destroy(ref("policy", 1))
    backend.put(ref("acme", kind=SecretKind.ADMIN_TOKEN), Secret(TOKEN), {})
    keys = TransitKeyProvider(client, key_name=openbao_scope.transit_key)
    key_id, wrapped = keys.wrap(b"k" * 32, b"aad")
    assert keys.unwrap(key_id, wrapped, b"aad") == b"k" * 32
    # and nothing more: no other prefix, no key export
    with pytest.raises(VaultUnavailable, match="permission denied"):
        HashicorpBackend(client, prefix="someone-else").put(ref("x"), Secret(TOKEN))


# ---------------------------------------------------------------------- the error table
@pytest.mark.parametrize(
    ("exc", "expected", "fragment"),
    [
        pytest.param(requests.exceptions.ConnectionError("Failed to establish a new connection: [Errno 111] "
                                                         "Connection refused"), VaultUnavailable,
                     "is unreachable: connection refused", id="refused"),
        pytest.param(requests.exceptions.ConnectTimeout("timed out"), VaultUnavailable, "timed out", id="timeout"),
        pytest.param(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"), VaultUnavailable,
                     "TLS verification failed", id="tls"),
        pytest.param(requests.exceptions.ConnectionError("Name or service not known"), VaultUnavailable,
                     "host name not found", id="dns"),
        pytest.param(hx.VaultDown(errors=["Vault is sealed"]), VaultUnavailable, "is sealed", id="sealed"),
        pytest.param(hx.VaultDown(errors=["standby"]), VaultUnavailable, "unavailable (503", id="503"),
        pytest.param(hx.VaultNotInitialized(errors=["Vault is not initialized"]), VaultUnavailable,
                     "not initialized", id="uninit"),
        pytest.param(hx.Forbidden(errors=["permission denied"]), VaultUnavailable, "permission denied", id="403"),
        pytest.param(hx.Unauthorized(errors=["missing client token"]), VaultUnavailable, "permission denied",
                     id="401"),
        pytest.param(hx.InvalidPath('{"data":{"data":{"token":"EAAleakedInBody"}}}'), NotFound, "Nothing found",
                     id="404-body-not-quoted"),
        pytest.param(hx.InvalidRequest(errors=["check-and-set parameter did not match the current version"]),
                     AlreadyExists, "nothing was overwritten", id="cas"),
        pytest.param(hx.InvalidRequest(errors=["bad\nthing"]), VaultUnavailable, "rejected", id="400"),
        pytest.param(hx.RateLimitExceeded(errors=["slow down"]), VaultUnavailable, "rate-limited", id="429"),
        pytest.param(hx.InternalServerError(errors=["boom"]), VaultUnavailable, "InternalServerError", id="500"),
        pytest.param(hx.UnexpectedError("EAAleakedInText"), VaultUnavailable, "UnexpectedError", id="other"),
    ],
)
def test_translate_error_table(exc: Exception, expected: type[VaultError], fragment: str) -> None:
    mapped = translate_error(exc, addr="http://vault:8200", path="secret/data/tv/x", action="read",
                             policy='path "secret/data/tv/*" { capabilities = ["read"] }')
    assert type(mapped) is expected
    assert fragment in mapped.message
    one_line(mapped, "EAAleaked")
    if expected is VaultUnavailable:
        assert mapped.exit_code == 5
    if "permission" in fragment:
        assert 'path "secret/data/tv/*"' in mapped.hint and "secret/data/tv/x" in mapped.message
