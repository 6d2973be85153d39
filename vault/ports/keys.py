"""The KeyProvider port: holds master keys and wraps/unwraps data keys."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..types import Availability as Availability  # a record of the start-up path, where no port (typing) is imported


@runtime_checkable
class KeyProvider(Protocol):
    """Master keys for the envelope. The master key itself may never leave the provider (Transit).

    Contract:
    * ``create_key()`` makes a new master key, makes it current and returns its id;
      it never replaces an existing key.
    * ``wrap(dek, aad)`` returns ``(key_id, wrapped)`` under the current key (or ``key_id``).
    * ``unwrap`` raises :class:`~meta_tokenvault.errors.WrongMasterKey` if the key id is not held,
      :class:`~meta_tokenvault.errors.TamperedCiphertext` if ``wrapped`` or ``aad`` do not authenticate,
      :class:`~meta_tokenvault.errors.BackendUnavailable` if the provider cannot be reached.
    * ``retire_key(key_id)`` forgets an old key once nothing is wrapped by it.
    """

    name: str

    def availability(self) -> Availability: ...

    def has_key(self) -> bool: ...

    def current_key_id(self) -> str: ...

    def key_ids(self) -> list[str]: ...

    def create_key(self) -> str: ...

    def wrap(self, dek: bytes, aad: bytes, *, key_id: str | None = None) -> tuple[str, bytes]: ...

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes: ...

    def retire_key(self, key_id: str) -> None: ...
