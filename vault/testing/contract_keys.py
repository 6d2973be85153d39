"""The KeyProvider contract suite: every key provider (keyring, file, env, Transit, fakes) runs it.

Subclass it and supply a ``provider`` fixture giving a provider with *no key yet* and an
isolated home (a temp dir, a unique keyring service, a unique Transit key name...)::

    class TestTransit(KeyProviderContract):
        @pytest.fixture
        def provider(self, openbao, openbao_scope):
            return TransitKeyProvider(openbao.client(), key_name=openbao_scope.transit_key)

Hooks: :meth:`new_current_key` makes a *new* master key current (``create_key()`` by default;
Transit rotates instead, because its ``create_key`` returns the existing key), and
:meth:`unknown_key_id` names a key the provider does not hold.

Checked, from the docstring of :class:`meta_tokenvault.ports.keys.KeyProvider`: ``create_key`` returns an id
that becomes current; wrap/unwrap round trip with associated data; wrong associated data or an
edited/truncated wrapped key -> TamperedCiphertext; an unknown key id -> WrongMasterKey;
``create_key`` never replaces key material (old wrapped keys still open); after a new key is
current, old wraps still open and re-wrap to the new id works (also through
:func:`meta_tokenvault.crypto.rewrap`); ``retire_key`` makes the old id unusable (WrongMasterKey).
"""

from __future__ import annotations

import os

import pytest

from .. import crypto
from ..errors import TamperedCiphertext, WrongMasterKey
from ..ports.keys import KeyProvider
from ..types import Secret, SecretKind, SecretRef

AAD = b"tokenvault/v1|token|42|1"
OTHER_AAD = b"tokenvault/v1|token|43|1"


class KeyProviderContract:
    """Base class of contract tests; subclasses provide the ``provider`` fixture (no key yet)."""

    @pytest.fixture
    def provider(self) -> KeyProvider:  # pragma: no cover - always overridden
        raise NotImplementedError("subclasses provide a `provider` fixture")

    # ------------------------------------------------------------------ hooks
    def new_current_key(self, provider: KeyProvider) -> str:
        """Make a new master key current and return its id (a key rotation)."""
        return provider.create_key()

    def unknown_key_id(self, provider: KeyProvider) -> str:
        """A key id the provider certainly does not hold."""
        return "tokenvault-contract-unknown-key"

    # ------------------------------------------------------------------ tests
    def test_is_a_key_provider(self, provider: KeyProvider) -> None:
        assert isinstance(provider, KeyProvider)
        assert isinstance(provider.name, str) and provider.name
        availability = provider.availability()
        assert availability.ok, availability.reason

    def test_create_key_returns_id_and_becomes_current(self, provider: KeyProvider) -> None:
        assert not provider.has_key()
        key_id = provider.create_key()
        assert isinstance(key_id, str) and key_id
        assert provider.has_key()
        assert provider.current_key_id() == key_id
        assert key_id in provider.key_ids()

    def test_wrap_unwrap_round_trip_with_aad(self, provider: KeyProvider) -> None:
        key_id = provider.create_key()
        dek = os.urandom(32)
        wrapped_id, wrapped = provider.wrap(dek, AAD)
        assert wrapped_id == key_id
        assert dek not in wrapped
        assert provider.unwrap(wrapped_id, wrapped, AAD) == dek

    def test_wrong_aad_is_tampered(self, provider: KeyProvider) -> None:
        provider.create_key()
        key_id, wrapped = provider.wrap(os.urandom(32), AAD)
        with pytest.raises(TamperedCiphertext):
            provider.unwrap(key_id, wrapped, OTHER_AAD)

    @pytest.mark.parametrize("edit", ["flip-last", "flip-middle", "truncate", "empty"])
    def test_edited_wrapped_key_is_tampered(self, provider: KeyProvider, edit: str) -> None:
        provider.create_key()
        key_id, wrapped = provider.wrap(os.urandom(32), AAD)
        data = bytearray(wrapped)
        if edit == "flip-last":
            data[-2] = ord("A") if data[-2] != ord("A") else ord("B")
        elif edit == "flip-middle":
            mid = len(data) * 3 // 4
            data[mid] = ord("A") if data[mid] != ord("A") else ord("B")
        elif edit == "truncate":
            del data[len(data) // 2:]
        else:
            data = bytearray()
        with pytest.raises(TamperedCiphertext):
            provider.unwrap(key_id, bytes(data), AAD)

    def test_unknown_key_id_is_wrong_master_key(self, provider: KeyProvider) -> None:
        provider.create_key()
        _, wrapped = provider.wrap(os.urandom(32), AAD)
        with pytest.raises(WrongMasterKey):
            provider.unwrap(self.unknown_key_id(provider), wrapped, AAD)
        with pytest.raises(WrongMasterKey):
            provider.wrap(os.urandom(32), AAD, key_id=self.unknown_key_id(provider))

    def test_create_key_never_replaces_key_material(self, provider: KeyProvider) -> None:
        first = provider.create_key()
        dek = os.urandom(32)
        _, wrapped = provider.wrap(dek, AAD)
        provider.create_key()
        assert first in provider.key_ids()
        assert provider.unwrap(first, wrapped, AAD) == dek

    def test_new_key_keeps_old_wraps_and_rewraps(self, provider: KeyProvider) -> None:
        old = provider.create_key()
        dek = os.urandom(32)
        _, wrapped = provider.wrap(dek, AAD)
        new = self.new_current_key(provider)
        assert new != old
        assert provider.current_key_id() == new
        assert {old, new} <= set(provider.key_ids())
        assert provider.unwrap(old, wrapped, AAD) == dek
        again_id, again = provider.wrap(provider.unwrap(old, wrapped, AAD), AAD, key_id=new)
        assert again_id == new
        assert provider.unwrap(new, again, AAD) == dek
        fresh_id, _ = provider.wrap(os.urandom(32), AAD)
        assert fresh_id == new

    def test_wrap_under_an_explicit_older_key(self, provider: KeyProvider) -> None:
        old = provider.create_key()
        self.new_current_key(provider)
        dek = os.urandom(32)
        key_id, wrapped = provider.wrap(dek, AAD, key_id=old)
        assert key_id == old
        assert provider.unwrap(old, wrapped, AAD) == dek

    def test_envelope_rewrap_through_crypto(self, provider: KeyProvider) -> None:
        provider.create_key()
        ref = SecretRef(SecretKind.TOKEN, 42, 1, "contract")
        sealed = crypto.seal_secret(provider, Secret("EAAenvelopeContract0001"), ref)
        new = self.new_current_key(provider)
        moved = crypto.rewrap(provider, sealed, ref, to_key_id=new)
        assert moved.key_id == new and moved.ciphertext == sealed.ciphertext
        assert crypto.open_secret(provider, moved, ref).reveal() == "EAAenvelopeContract0001"
        other = SecretRef(SecretKind.TOKEN, 43, 1, "contract")
        with pytest.raises(TamperedCiphertext):
            crypto.open_secret(provider, moved, other)

    def test_retire_key_makes_old_id_unusable(self, provider: KeyProvider) -> None:
        old = provider.create_key()
        dek = os.urandom(32)
        _, wrapped = provider.wrap(dek, AAD)
        new = self.new_current_key(provider)
        _, rewrapped = provider.wrap(provider.unwrap(old, wrapped, AAD), AAD, key_id=new)
        provider.retire_key(old)
        assert old not in provider.key_ids()
        assert provider.current_key_id() == new
        with pytest.raises(WrongMasterKey):
            provider.unwrap(old, wrapped, AAD)
        assert provider.unwrap(new, rewrapped, AAD) == dek


__all__ = ["AAD", "OTHER_AAD", "KeyProviderContract"]
