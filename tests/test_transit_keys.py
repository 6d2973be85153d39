"""Transit key provider against a real OpenBao dev server (tests/plugins/openbao.py)."""

from __future__ import annotations

import os
import socket
from typing import Any

import hvac.exceptions as hx
import pytest

from meta_tokenvault import crypto
from meta_tokenvault.adapters.hashicorp_client import build_client
from meta_tokenvault.adapters.keys_transit import TransitKeyProvider
from meta_tokenvault.errors import InvalidInput, TamperedCiphertext, UsageError, VaultUnavailable, WrongMasterKey
from meta_tokenvault.ports.keys import KeyProvider
from meta_tokenvault.testing.contract_keys import AAD, KeyProviderContract
from meta_tokenvault.testing.fakes import MemoryKeyProvider
from meta_tokenvault.types import Secret, SecretKind, SecretRef

pytestmark = pytest.mark.openbao


class TestTransit(KeyProviderContract):
    @pytest.fixture
    def provider(self, openbao: Any, openbao_scope: Any) -> TransitKeyProvider:
        return TransitKeyProvider(openbao.client(), mount=openbao_scope.transit_mount,
                                  key_name=openbao_scope.transit_key)

    def new_current_key(self, provider: KeyProvider) -> str:
        assert isinstance(provider, TransitKeyProvider)
        return provider.rotate_master()


class TestMemoryProviderRunsTheSameSuite(KeyProviderContract):
    """The suite is written to the port, not to Transit: the in-memory fake passes it too."""

    @pytest.fixture
    def provider(self) -> MemoryKeyProvider:
        return MemoryKeyProvider()


# ---------------------------------------------------------------------- Transit specifics
@pytest.fixture
def transit(openbao: Any, openbao_scope: Any) -> TransitKeyProvider:
    return TransitKeyProvider(openbao.client(), mount=openbao_scope.transit_mount, key_name=openbao_scope.transit_key)


def test_key_ids_name_the_transit_version(transit: TransitKeyProvider) -> None:
    name = transit.key_name
    assert transit.create_key() == f"transit:{name}:v1"
    key_id, wrapped = transit.wrap(os.urandom(32), AAD)
    assert key_id == f"transit:{name}:v1" and wrapped.startswith(b"vault:v1:")
    assert transit.rotate_master() == f"transit:{name}:v2"
    assert transit.key_ids() == [f"transit:{name}:v1", f"transit:{name}:v2"]
    assert transit.wrap(os.urandom(32), AAD)[1].startswith(b"vault:v2:")


def test_create_key_on_an_existing_key_returns_the_current_id(transit: TransitKeyProvider, openbao: Any) -> None:
    transit.create_key()
    current = transit.rotate_master()
    assert transit.create_key() == current
    assert openbao.client().secrets.transit.read_key(transit.key_name)["data"]["latest_version"] == 2


def test_rotation_then_rewrap_then_retire(transit: TransitKeyProvider) -> None:
    transit.create_key()
    refs = [SecretRef(SecretKind.TOKEN, owner, 1, f"label-{owner}") for owner in range(5)]
    sealed = [crypto.seal_secret(transit, Secret(f"EAAtransit-{r.owner_id:04d}-token"), r) for r in refs]
    new = transit.rotate_master()
    moved = [crypto.rewrap(transit, s, r, to_key_id=new) for s, r in zip(sealed, refs, strict=True)]
    assert {m.key_id for m in moved} == {new}
    transit.retire_key(sealed[0].key_id)
    for m, r in zip(moved, refs, strict=True):
        assert crypto.open_secret(transit, m, r).reveal() == f"EAAtransit-{r.owner_id:04d}-token"
    with pytest.raises(WrongMasterKey):
        crypto.open_secret(transit, sealed[0], refs[0])
    transit.retire_key(sealed[0].key_id)  # again: a no-op


def test_retire_refuses_the_current_key_and_out_of_order(transit: TransitKeyProvider) -> None:
    v1 = transit.create_key()
    v2 = transit.rotate_master()
    transit.rotate_master()
    with pytest.raises(UsageError, match="current"):
        transit.retire_key(transit.current_key_id())
    with pytest.raises(UsageError, match="retire those first"):
        transit.retire_key(v2)
    transit.retire_key(v1)
    transit.retire_key(v2)
    assert transit.key_ids() == [transit.current_key_id()]


def test_the_master_key_never_leaves_vault(transit: TransitKeyProvider, openbao: Any) -> None:
    transit.create_key()
    transit.rotate_master()
    root = openbao.client()
    config = root.secrets.transit.read_key(transit.key_name)["data"]
    assert config["exportable"] is False and config["allow_plaintext_backup"] is False
    assert config["type"] == "aes256-gcm96"
    # the key listing holds version -> creation time, never material
    assert all(isinstance(v, int) for v in config["keys"].values())
    for key_type in ("encryption-key", "hmac-key"):
        with pytest.raises(hx.VaultError):
            root.secrets.transit.export_key(transit.key_name, key_type=key_type)
    with pytest.raises(hx.VaultError):
        root.secrets.transit.backup_key(transit.key_name)
    cli = openbao.bao("read", f"transit/export/encryption-key/{transit.key_name}", check=False)
    assert cli.returncode != 0 and "not exportable" in cli.stderr
    assert transit.availability().ok


def test_a_wrapped_key_moved_to_another_version_is_tampered(transit: TransitKeyProvider) -> None:
    v1 = transit.create_key()
    v2 = transit.rotate_master()
    _, wrapped = transit.wrap(os.urandom(32), AAD, key_id=v1)
    with pytest.raises(TamperedCiphertext, match="names Transit version v1"):
        transit.unwrap(v2, wrapped, AAD)
    with pytest.raises(WrongMasterKey):
        transit.unwrap("transit:another-key:v1", wrapped, AAD)


def test_a_missing_transit_key_is_wrong_master_key_and_is_not_created(transit: TransitKeyProvider) -> None:
    assert not transit.has_key() and transit.key_ids() == []
    with pytest.raises(WrongMasterKey) as info:
        transit.wrap(os.urandom(32), AAD)
    assert "tokenvault init" in info.value.hint
    with pytest.raises(WrongMasterKey):
        transit.current_key_id()
    with pytest.raises(WrongMasterKey):
        transit.unwrap(f"transit:{transit.key_name}:v1", b"vault:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", AAD)
    assert not transit.has_key()


def test_a_key_that_is_not_aead_is_refused(openbao: Any, openbao_scope: Any) -> None:
    root = openbao.client()
    root.secrets.transit.create_key(openbao_scope.transit_key, key_type="ed25519")
    signer = TransitKeyProvider(root, key_name=openbao_scope.transit_key)
    with pytest.raises(InvalidInput, match="ed25519"):
        signer.wrap(os.urandom(32), AAD)
    assert not signer.availability().ok


def test_unreachable_transit_is_vault_unavailable(openbao: Any) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = TransitKeyProvider(build_client(f"http://127.0.0.1:{port}", token=openbao.root_token))
    for call in (lambda: down.wrap(os.urandom(32), AAD),
                 lambda: down.unwrap("transit:tokenvault:v1", b"vault:v1:AA", AAD), down.create_key, down.has_key):
        with pytest.raises(VaultUnavailable) as info:
            call()
        assert info.value.exit_code == 5 and "unreachable" in info.value.message
        assert openbao.root_token not in info.value.message + info.value.hint
    assert not down.availability().ok
    assert openbao.root_token not in repr(down)
