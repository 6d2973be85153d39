"""The SecretBackend port: where secret values live (local encrypted store, or Vault KV v2)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from ..types import Secret, SecretRef
from .keys import Availability


@runtime_checkable
class SecretBackend(Protocol):
    """Stores one value per :class:`SecretRef` (kind, owner, version).

    Contract (checked by :class:`meta_tokenvault.testing.contract_secrets.SecretBackendContract`):
    * ``put`` stores a *new* version; putting a ref that exists raises
      :class:`~meta_tokenvault.errors.AlreadyExists` and leaves the stored value intact
      (check-and-set: two writers never overwrite each other).
    * ``get`` returns exactly what was put, or raises :class:`~meta_tokenvault.errors.NotFound`;
      an altered value raises :class:`~meta_tokenvault.errors.IntegrityError`.
    * ``metadata`` is provenance (never the value) that the backend may show to its own tools.
    * ``destroy`` removes one version's value (used after revocation when asked); idempotent.
    * failures to reach the backend raise :class:`~meta_tokenvault.errors.BackendUnavailable`.
    """

    name: str

    def availability(self) -> Availability: ...

    def put(self, ref: SecretRef, secret: Secret, metadata: Mapping[str, str] | None = None) -> None: ...

    def get(self, ref: SecretRef) -> Secret: ...

    def exists(self, ref: SecretRef) -> bool: ...

    def destroy(self, ref: SecretRef) -> None: ...
