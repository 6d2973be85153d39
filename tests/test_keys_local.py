"""Local key providers (file, env, keyring) against the port contract and their own failure modes."""

from __future__ import annotations

import base64
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyrings.alt.file import PlaintextKeyring

from meta_tokenvault import crypto
from meta_tokenvault.adapters.keys_env import EnvKeyProvider
from meta_tokenvault.adapters.keys_file import FileKeyProvider
from meta_tokenvault.adapters.keys_keyring import KeyringKeyProvider
from meta_tokenvault.errors import InvalidInput, KeyringUnavailable, TamperedCiphertext, WrongMasterKey
from meta_tokenvault.testing.contract_keys import KeyProviderContract
from meta_tokenvault.testing.fakes import MemoryKeyProvider


def b64key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def file_keyring(tmp_path: Path) -> Iterator[PlaintextKeyring]:
    """A real file-backed keyring backend in the test's temp dir (keyrings.alt), chosen explicitly."""
    backend = PlaintextKeyring()
    backend.file_path = str(tmp_path / "keyring" / "keyring_pass.cfg")  # type: ignore[misc]
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


class TestFileProvider(KeyProviderContract):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> FileKeyProvider:
        return FileKeyProvider(tmp_path / "home" / "keys")


class TestKeyringProvider(KeyProviderContract):
    @pytest.fixture
    def provider(self, file_keyring: PlaintextKeyring) -> KeyringKeyProvider:
        return KeyringKeyProvider(service=f"tokenvault-test-{uuid.uuid4().hex[:8]}", backend=file_keyring)


class TestMemoryFake(KeyProviderContract):
    @pytest.fixture
    def provider(self) -> MemoryKeyProvider:
        return MemoryKeyProvider()


def test_file_provider_files_are_private_from_birth(tmp_path: Path) -> None:
    keys = tmp_path / "home" / "keys"
    provider = FileKeyProvider(keys)
    old = os.umask(0)  # even with a permissive umask
    try:
        key_id = provider.create_key()
    finally:
        os.umask(old)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for path in keys.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert (keys / f"master-{key_id}.key").exists()


def test_file_provider_refuses_a_world_readable_key(tmp_path: Path) -> None:
    provider = FileKeyProvider(tmp_path / "keys")
    key_id = provider.create_key()
    (tmp_path / "keys" / f"master-{key_id}.key").chmod(0o644)
    with pytest.raises(InvalidInput) as info:
        provider.wrap(os.urandom(32), b"aad")
    assert "chmod 600" in info.value.hint


def test_file_provider_checks_its_files_at_every_use_after_it_has_read_them(tmp_path: Path) -> None:
    """The key read once is reused only while its file is unchanged: a file made readable, replaced, removed,
    or a new ``current``, is seen at the next use, as when every use read the files."""
    keys = tmp_path / "keys"
    provider = FileKeyProvider(keys)
    key_id = provider.create_key()
    wrapped = provider.wrap(b"d" * 32, b"aad")
    assert provider.unwrap(key_id, wrapped[1], b"aad") == b"d" * 32
    path = keys / f"master-{key_id}.key"
    path.chmod(0o644)
    with pytest.raises(InvalidInput):
        provider.unwrap(key_id, wrapped[1], b"aad")
    path.chmod(0o600)
    original = path.read_bytes()
    other = keys / "other.tmp"
    other.write_bytes((base64.b64encode(os.urandom(32)).decode() + "\n").encode())
    other.chmod(0o600)
    os.replace(other, path)  # another key under this id's name
    with pytest.raises(WrongMasterKey, match="different key"):
        provider.unwrap(key_id, wrapped[1], b"aad")
    other.write_bytes(original)
    other.chmod(0o600)
    os.replace(other, path)  # (files are replaced, never rewritten in place: see the provider's docstring)
    assert provider.unwrap(key_id, wrapped[1], b"aad") == b"d" * 32
    second = FileKeyProvider(keys).create_key()  # another process makes a new current key
    assert provider.current_key_id() == second
    path.unlink()
    with pytest.raises(WrongMasterKey):
        provider.unwrap(key_id, wrapped[1], b"aad")


def test_file_provider_never_overwrites_a_key(tmp_path: Path) -> None:
    provider = FileKeyProvider(tmp_path / "keys")
    first = provider.create_key()
    content = (tmp_path / "keys" / f"master-{first}.key").read_bytes()
    second = provider.create_key()
    assert second != first and (tmp_path / "keys" / f"master-{first}.key").read_bytes() == content


def test_env_provider_round_trip_and_rotation_with_previous_keys() -> None:
    old, new = b64key(), b64key()
    provider = EnvKeyProvider({"TOKENVAULT_MASTER_KEY": old})
    key_id, wrapped = provider.wrap(os.urandom(32), b"aad")
    assert provider.create_key() == key_id  # idempotent: the env key
    rotated = EnvKeyProvider({"TOKENVAULT_MASTER_KEY": new, "TOKENVAULT_MASTER_KEY_PREVIOUS": old})
    dek = rotated.unwrap(key_id, wrapped, b"aad")
    new_id, rewrapped = rotated.wrap(dek, b"aad")
    assert new_id != key_id and new_id == rotated.current_key_id()
    only_new = EnvKeyProvider({"TOKENVAULT_MASTER_KEY": new})
    assert only_new.unwrap(new_id, rewrapped, b"aad") == dek
    with pytest.raises(WrongMasterKey) as info:
        only_new.unwrap(key_id, wrapped, b"aad")
    assert key_id in info.value.message
    with pytest.raises(TamperedCiphertext):
        only_new.unwrap(new_id, rewrapped, b"other")


@pytest.mark.parametrize(
    "value", ["not base64!!", base64.b64encode(b"short").decode(), base64.b64encode(os.urandom(33)).decode()],
    ids=["bad-base64", "too-short", "too-long"],
)
def test_env_provider_bad_key_is_bad_input_without_echo(value: str) -> None:
    with pytest.raises(InvalidInput) as info:
        EnvKeyProvider({"TOKENVAULT_MASTER_KEY": value})
    assert "TOKENVAULT_MASTER_KEY" in info.value.message and value not in str(info.value) + info.value.hint


def test_env_provider_without_a_key_says_how_to_make_one() -> None:
    provider = EnvKeyProvider({})
    assert not provider.availability().ok and not provider.has_key()
    with pytest.raises(InvalidInput) as info:
        provider.create_key()
    assert "os.urandom(32)" in info.value.hint


def test_keyring_fail_backend_is_unavailable_and_names_alternatives() -> None:
    from keyring.backends.fail import Keyring as FailKeyring

    provider = KeyringKeyProvider(backend=None)
    provider._backend = FailKeyring()
    provider._explicit = False
    assert not provider.availability().ok
    with pytest.raises(KeyringUnavailable) as info:
        provider.create_key()
    assert info.value.exit_code == 5
    for name in ("file", "env", "vault-transit"):
        assert name in info.value.hint


def test_plaintext_keyring_not_chosen_explicitly_is_refused(file_keyring: PlaintextKeyring,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    implicit = KeyringKeyProvider(service="tv-implicit")
    implicit._backend = file_keyring  # what keyring's discovery returned, not the user's choice
    assert not implicit.availability().ok
    assert "does not protect secrets" in implicit.availability().reason
    explicit = KeyringKeyProvider(service="tv-explicit", backend=file_keyring)
    assert explicit.availability().ok


def test_keyring_errors_are_translated(file_keyring: PlaintextKeyring) -> None:
    from keyring.errors import KeyringLocked

    class LockedKeyring(PlaintextKeyring):  # a real backend that reports being locked
        def get_password(self, service: str, username: str) -> str | None:
            raise KeyringLocked("locked")

    provider = KeyringKeyProvider(service="tv-locked", backend=LockedKeyring())
    with pytest.raises(KeyringUnavailable) as info:
        provider.has_key()
    assert "locked" in info.value.message.lower() and "file" in info.value.hint


def test_keyring_key_survives_a_new_process_view(file_keyring: PlaintextKeyring) -> None:
    first = KeyringKeyProvider(service="tv-persist", backend=file_keyring)
    key_id, wrapped = first.wrap(os.urandom(32), b"aad") if first.has_key() else (None, b"")
    key_id = first.create_key()
    kid, wrapped = first.wrap(b"k" * 32, b"aad")
    again = KeyringKeyProvider(service="tv-persist", backend=PlaintextKeyring())
    again._backend.file_path = file_keyring.file_path  # type: ignore[attr-defined]
    assert again.current_key_id() == key_id and again.unwrap(kid, wrapped, b"aad") == b"k" * 32
    assert crypto.key_id_of(b"k" * 32) != key_id
