"""In-memory fakes of the ports, for unit tests of the service. Each passes the port's contract suite."""

from __future__ import annotations

from .. import crypto
from ..errors import WrongMasterKey
from ..ports.keys import Availability


class MemoryKeyProvider:
    """A KeyProvider holding keys in memory (never use outside tests)."""

    name = "memory"

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._current: str | None = None

    def availability(self) -> Availability:
        return Availability(True, "in-memory test provider")

    def has_key(self) -> bool:
        return self._current is not None

    def current_key_id(self) -> str:
        if self._current is None:
            raise WrongMasterKey("The memory provider has no key yet.")
        return self._current

    def key_ids(self) -> list[str]:
        return list(self._keys)

    def create_key(self) -> str:
        key = crypto.new_key()
        key_id = crypto.key_id_of(key)
        self._keys[key_id] = key
        self._current = key_id
        return key_id

    def _key(self, key_id: str) -> bytes:
        try:
            return self._keys[key_id]
        except KeyError:
            raise WrongMasterKey(f"The memory provider does not hold master key {key_id}.") from None

    def wrap(self, dek: bytes, aad: bytes, *, key_id: str | None = None) -> tuple[str, bytes]:
        kid = key_id or self.current_key_id()
        return kid, crypto.seal(self._key(kid), dek, aad)

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        return crypto.open_sealed(self._key(key_id), wrapped, aad, what="wrapped data key")

    def retire_key(self, key_id: str) -> None:
        self._keys.pop(key_id, None)

    def __repr__(self) -> str:
        return f"MemoryKeyProvider(keys={len(self._keys)})"
