"""The ``env`` key provider: the master key is ``TOKENVAULT_MASTER_KEY`` (base64 of 32 bytes).

For containers and CI, where a secret manager injects the key as an environment variable. The
provider cannot create keys: you generate one and set it. ``keys rotate`` works like this:
put the new key in ``TOKENVAULT_MASTER_KEY`` and the old one(s) in ``TOKENVAULT_MASTER_KEY_PREVIOUS``
(comma-separated), run ``tokenvault keys rotate``, then drop the previous keys from the environment.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import crypto
from ..errors import InvalidInput
from ..types import Availability
from .keys_local import GENERATE as _GENERATE
from .keys_local import LocalKeyProvider, decode_key

CURRENT = "TOKENVAULT_MASTER_KEY"
PREVIOUS = "TOKENVAULT_MASTER_KEY_PREVIOUS"


class EnvKeyProvider(LocalKeyProvider):
    name = "env"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._keys: dict[str, bytes] = {}
        self._current_id: str | None = None
        raw = environ.get(CURRENT, "")
        if raw.strip():
            key = decode_key(raw, CURRENT)
            self._current_id = crypto.key_id_of(key)
            self._keys[self._current_id] = key
        for index, part in enumerate(p for p in environ.get(PREVIOUS, "").split(",") if p.strip()):
            key = decode_key(part, f"{PREVIOUS} entry {index + 1}")
            self._keys.setdefault(crypto.key_id_of(key), key)

    def availability(self) -> Availability:
        if self._current_id is None:
            return Availability(False, f"{CURRENT} is not set")
        return Availability(True, f"key {self._current_id} from {CURRENT}")

    def _load(self, key_id: str) -> bytes | None:
        return self._keys.get(key_id)

    def _current(self) -> str | None:
        return self._current_id

    def key_ids(self) -> list[str]:
        return list(self._keys)

    def create_key(self) -> str:
        """Returns the id of TOKENVAULT_MASTER_KEY (idempotent init); the env provider never makes keys."""
        if self._current_id is None:
            raise InvalidInput(f"{CURRENT} is not set; the env key provider cannot create a key itself.",
                               hint=f"Generate one ({_GENERATE}), store it in your secret manager and export "
                                    f"{CURRENT}.")
        return self._current_id

    def _store(self, key_id: str, key: bytes) -> None:  # pragma: no cover - create_key never stores
        raise InvalidInput("The env key provider cannot store keys.")

    def _set_current(self, key_id: str) -> None:  # pragma: no cover
        raise InvalidInput("The env key provider cannot change the current key.")

    def retire_key(self, key_id: str) -> None:
        """No-op: remove the old key from TOKENVAULT_MASTER_KEY_PREVIOUS yourself."""
        self._keys.pop(key_id, None) if key_id != self._current_id else None
