"""The local secret backend: AES-256-GCM envelopes in the metadata database.

Each value is sealed under its own data key with associated data naming its record
(:meth:`SecretRef.associated_data`), and the data key is wrapped by the master key of the
configured :class:`~meta_tokenvault.ports.keys.KeyProvider`. The database therefore holds only
ciphertext and wrapped keys; a row copied onto another record does not open.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..crypto import SealedSecret, open_secret, seal_secret
from ..errors import NotFound
from ..types import Availability, Secret, SecretRef

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from ..ports.keys import KeyProvider
    from .store_sql import SqlStore


class LocalBackend:
    """SecretBackend port over :class:`SqlStore` blobs."""

    name = "local"

    def __init__(self, store: SqlStore, keys: KeyProvider) -> None:
        self.store = store
        self.keys = keys

    def availability(self) -> Availability:
        return self.keys.availability()

    def put(self, ref: SecretRef, secret: Secret, metadata: Mapping[str, str] | None = None) -> None:
        """Seal and insert; an existing (kind, owner, version) raises AlreadyExists and is left intact."""
        sealed = seal_secret(self.keys, secret, ref)
        self.store.put_blob(ref.kind.value, ref.owner_id, ref.version, sealed.key_id, sealed.wrapped_key,
                            sealed.ciphertext)

    def get(self, ref: SecretRef) -> Secret:
        blob = self.store.get_blob(ref.kind.value, ref.owner_id, ref.version)
        if blob is None:
            raise NotFound(f"No stored {ref.kind.value} for {ref.name!r} version {ref.version}.",
                           hint="The secret was destroyed or never stored; import or rotate the token.")
        return open_secret(self.keys, SealedSecret(blob.key_id, blob.wrapped_key, blob.ciphertext), ref)

    def exists(self, ref: SecretRef) -> bool:
        return self.store.get_blob(ref.kind.value, ref.owner_id, ref.version) is not None

    def destroy(self, ref: SecretRef) -> None:
        self.store.delete_blob(ref.kind.value, ref.owner_id, ref.version)
