"""Base for key providers that hold raw 32-byte master keys on this machine (file, env, keyring).

Wrapping is AES-256-GCM (:func:`meta_tokenvault.crypto.seal`) under the master key with the record's associated
data. Key ids are :func:`meta_tokenvault.crypto.key_id_of` of the key, so a wrong key is recognised by its id
before any decryption is attempted.
"""

from __future__ import annotations

import binascii  # what base64.b64decode/b64encode call (base64 itself imports struct: ~0.5 ms of start-up)

from .. import crypto
from ..errors import InvalidInput, WrongMasterKey

GENERATE = 'python3 -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"'


def decode_key(text: str, where: str) -> bytes:
    """Decode base64 key material; the message names ``where`` and never echoes the value."""
    try:
        key = binascii.a2b_base64(text.strip().encode("ascii"), strict_mode=True)  # b64decode(validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not valid base64.",
                           hint=f"It must be base64 of exactly 32 random bytes, e.g. {GENERATE}") from None
    if len(key) != crypto.KEY_BYTES:
        raise InvalidInput(f"{where} decodes to {len(key)} bytes; a master key is exactly 32 bytes.",
                           hint=f"Generate one with {GENERATE}")
    return key


def encode_key(key: bytes) -> str:
    return binascii.b2a_base64(key, newline=False).decode()  # base64.b64encode(key).decode()


class LocalKeyProvider:
    """Subclasses implement :meth:`_load`, :meth:`_store`, :meth:`_current`, :meth:`_set_current`,
    :meth:`key_ids` and :meth:`retire_key`; this class does the cryptography."""

    name = "local"

    def _load(self, key_id: str) -> bytes | None:
        raise NotImplementedError

    def _store(self, key_id: str, key: bytes) -> None:
        raise NotImplementedError

    def _current(self) -> str | None:
        raise NotImplementedError

    def _set_current(self, key_id: str) -> None:
        raise NotImplementedError

    def key_ids(self) -> list[str]:
        raise NotImplementedError

    def retire_key(self, key_id: str) -> None:
        raise NotImplementedError

    def has_key(self) -> bool:
        current = self._current()
        return current is not None and self._load(current) is not None

    def current_key_id(self) -> str:
        current = self._current()
        if current is None or self._load(current) is None:
            raise WrongMasterKey(f"The {self.name} key provider holds no master key.",
                                 hint="Run `tokenvault init`, or configure the key that init created.")
        return current

    def create_key(self) -> str:
        """A new random key becomes current; existing keys stay (never replaced)."""
        key = crypto.new_key()
        key_id = crypto.key_id_of(key)
        self._store(key_id, key)
        self._set_current(key_id)
        return key_id

    def _key(self, key_id: str) -> bytes:
        key = self._load(key_id)
        if key is None:
            held = ", ".join(self.key_ids()) or "none"
            raise WrongMasterKey(
                f"The data was sealed with master key {key_id}, which the {self.name} key provider does not hold "
                f"(it holds: {held}).")
        if crypto.key_id_of(key) != key_id:
            raise WrongMasterKey(f"The {self.name} key stored as {key_id} is a different key.")
        return key

    def wrap(self, dek: bytes, aad: bytes, *, key_id: str | None = None) -> tuple[str, bytes]:
        kid = key_id or self.current_key_id()
        return kid, crypto.seal(self._key(kid), dek, aad)

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        return crypto.open_sealed(self._key(key_id), wrapped, aad, what="wrapped data key")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(keys={len(self.key_ids())})"
