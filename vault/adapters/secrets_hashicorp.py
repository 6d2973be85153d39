"""The Vault / OpenBao secret backend: token values in a KV v2 engine.

Layout (``mount="secret"``, ``prefix="tokenvault"``)::

    secret/tokenvault/<label>                          kind TOKEN     (SecretRef.name = label)
    secret/tokenvault/_business/<name>/app_secret      kind APP_SECRET (SecretRef.name = business)
    secret/tokenvault/_business/<name>/admin_token     kind ADMIN_TOKEN

Why this mapping:

* **KV version = tokenvault version.** ``SecretRef.version`` N is KV version N of the path, so
  Vault's own history, ``bao kv get -version=N`` and tokenvault agree, and a deployment that
  reads the *latest* version (``secret/data/tokenvault/<label>`` field ``token``) gets the token
  tokenvault most recently stored, with no copy step.
* **Check-and-set on every write.** Version N is written with ``cas=N-1`` (``cas=0`` for the
  first), so two writers can never overwrite each other: the loser gets
  :class:`~meta_tokenvault.errors.AlreadyExists` and the stored value is untouched. The path's metadata is
  also set to ``cas_required=true`` so other tools must use CAS too.
* **The data is ``{"token": value}``** and nothing else: that is the field Vault Agent templates
  and External Secrets read.
* **Provenance in ``custom_metadata``** (business, system user, app, scopes, fingerprint, plus
  ``tokenvault_kind``/``tokenvault_owner_id``/``tokenvault_version``), written through the metadata
  endpoint after the data. It is per *path* (KV has no per-version custom metadata), so it
  describes the latest version. Values that contain the secret are refused.

Consequences, documented because KV version numbers only ever grow:

* a version whose KV slot was used once (even if since destroyed) cannot be written again
  (:class:`AlreadyExists`); the one exception is version 1 of a path whose every version is
  destroyed or deleted: such a tombstone (e.g. a failed import being retried) is recycled;
* writing version N when the path holds fewer than N-1 versions (the backend was switched to
  Vault mid-life) raises :class:`IntegrityError`: KV could only store it under another number;
* ``get`` of a version that is missing, deleted or destroyed raises :class:`NotFound`; a path
  whose metadata names another record (owner/kind), or a version that does not hold a string
  ``token``, raises :class:`IntegrityError` (it was relabelled or written outside tokenvault).

Integrity at rest is Vault's (its barrier encrypts and authenticates storage); anyone whose
policy can write the path is trusted by Vault. The service additionally compares fingerprints.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..errors import AlreadyExists, IntegrityError, InvalidInput, NotFound, VaultError
from ..types import Availability, Secret, SecretKind, SecretRef
from .hashicorp_client import translating

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_RESERVED_KEYS = ("tokenvault_kind", "tokenvault_owner_id", "tokenvault_version", "managed_by")
# KV v2 custom_metadata limits (Vault and OpenBao): 64 keys, 128-byte keys, 512-byte values
_MAX_META_KEYS, _MAX_META_KEY, _MAX_META_VALUE = 64, 128, 512
_CALLER_BUG = "This is a bug in the caller: metadata is provenance, never the value."


def _check_prefix(prefix: str) -> str:
    parts = [p for p in prefix.strip("/").split("/")]
    if not parts or not all(_SEGMENT.fullmatch(p) for p in parts):
        raise InvalidInput(f"Invalid Vault path prefix {prefix!r}.",
                           hint="Use '/'-separated segments of letters, digits, '-', '_' and '.'.")
    return "/".join(parts)


class HashicorpBackend:
    """SecretBackend port on a KV v2 engine of HashiCorp Vault or OpenBao (see the module doc).

    ``client`` is an authenticated :class:`hvac.Client` (:func:`~.hashicorp_client.build_client`).
    ``max_versions``: None leaves the mount's setting (KV's default keeps 10 versions; older
    ones vanish and then read as :class:`NotFound`); set it to keep more history per path.
    """

    name = "vault"

    def __init__(self, client: Any, mount: str = "secret", prefix: str = "tokenvault", *,
                 max_versions: int | None = None) -> None:
        self.client = client
        self.mount = _check_prefix(mount)
        self.prefix = _check_prefix(prefix)
        self.max_versions = max_versions

    def __repr__(self) -> str:
        return f"HashicorpBackend(addr={self._addr!r}, mount={self.mount!r}, prefix={self.prefix!r})"

    # ------------------------------------------------------------------ paths
    @property
    def _addr(self) -> str:
        return str(getattr(self.client, "url", "?"))

    def path_for(self, ref: SecretRef) -> str:
        """The KV path (without mount) of ``ref``'s secret. Raises InvalidInput for unsafe names."""
        if not _SEGMENT.fullmatch(ref.name):
            raise InvalidInput(f"{ref.name!r} cannot name a Vault path.",
                               hint="Use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit.")
        if ref.kind is SecretKind.TOKEN:
            return f"{self.prefix}/{ref.name}"
        return f"{self.prefix}/_business/{ref.name}/{ref.kind.value}"

    def data_path(self, ref: SecretRef) -> str:
        """``<mount>/data/<path>``: the API path a deployment reads (latest version, field ``token``)."""
        return f"{self.mount}/data/{self.path_for(ref)}"

    def _policy(self, path: str, caps: str) -> str:
        return f'path "{self.mount}/data/{path}" {{ capabilities = [{caps}] }} (and metadata/, destroy/)'

    # ------------------------------------------------------------------ port
    def availability(self) -> Availability:
        """Whether tokenvault can work here, and if not why and what to do (for ``tokenvault doctor``).

        Checked in order, stopping at the first failure: reachable and unsealed; the token (or
        AppRole login) is accepted; ``mount`` is a KV version 2 engine; the token's policy grants
        what tokenvault needs under the prefix (``sys/capabilities-self``). The reason of a failure
        is the error's message and hint; of a success, where secrets go and when the token expires.
        Never raises; makes read-only requests.
        """
        probe = f"{self.prefix}/_doctor-probe"
        try:
            with translating(self._addr, "sys/seal-status", "read seal status"):
                if self.client.sys.read_seal_status().get("sealed"):
                    return Availability(False, f"Vault at {self._addr} is sealed; unseal it (`bao operator "
                                               "unseal` / `vault operator unseal`, or check auto-unseal).")
            with translating(self._addr, "auth/token/lookup-self", "token lookup"):
                token = (self.client.auth.token.lookup_self() or {}).get("data") or {}
            with translating(self._addr, f"sys/internal/ui/mounts/{self.mount}", "read mount"):
                mount = self.client.read(f"sys/internal/ui/mounts/{self.mount}")
            data = (mount or {}).get("data") or {}
            if data.get("type") != "kv" or str((data.get("options") or {}).get("version")) != "2":
                return Availability(False, f"{self.mount}/ at {self._addr} is not a KV version 2 engine; enable one "
                                           f"(`bao secrets enable -path={self.mount} kv-v2`) or set "
                                           "TOKENVAULT_VAULT_MOUNT.")
            needed = {f"{self.mount}/data/{probe}": {"create", "read", "update"},
                      f"{self.mount}/metadata/{probe}": {"read", "update"}}
            with translating(self._addr, "sys/capabilities-self", "capabilities lookup"):
                granted = self.client.sys.get_capabilities(paths=list(needed)) or {}
        except VaultError as exc:
            return Availability(False, f"{exc.message} {exc.hint}")
        caps: dict[str, Any] = granted.get("data") or granted
        for path, want in needed.items():
            have = set(caps.get(path) or ())
            if "root" not in have and not want <= have:
                missing = ", ".join(sorted(want - have))
                return Availability(False, f"The Vault token may not {missing} {path.removesuffix('_doctor-probe')}* "
                                           "(policy grants: " + (", ".join(sorted(have)) or "nothing") + "); "
                                           "grant the tokenvault app policy of docs/vault.md.")
        ttl = int(token.get("ttl") or 0)
        expiry = "token never expires" if ttl == 0 else f"token expires in {ttl // 3600}h{ttl % 3600 // 60:02d}m"
        return Availability(True, f"KV v2 at {self._addr}/v1/{self.mount}/ (prefix {self.prefix}); {expiry}")

    def put(self, ref: SecretRef, secret: Secret, metadata: Mapping[str, str] | None = None) -> None:
        """Store ``secret`` as KV version ``ref.version`` with check-and-set.

        Raises :class:`AlreadyExists` (nothing overwritten) when that version exists or another
        writer won, :class:`IntegrityError` when the path's history has a gap before it,
        :class:`InvalidInput` for metadata that contains the secret or breaks KV's limits,
        :class:`~meta_tokenvault.errors.VaultUnavailable` when Vault cannot be used.
        """
        path = self.path_for(ref)
        custom = self._custom_metadata(ref, secret, metadata)
        meta = self._read_metadata(path)
        current = int(meta.get("current_version") or 0) if meta else 0
        if meta and current >= ref.version:
            if ref.version == 1 and not self._live_versions(meta):
                # a tombstone (every version destroyed/deleted, e.g. a failed import): recycle it
                with translating(self._addr, f"{self.mount}/metadata/{path}", "delete metadata",
                                 policy=self._policy(path, '"delete"')):
                    self.client.secrets.kv.v2.delete_metadata_and_all_versions(path, mount_point=self.mount)
                current = 0
            else:
                raise AlreadyExists(
                    f"Vault path {self.mount}/{path} already holds version {ref.version}"
                    f" (current KV version {current}); nothing was overwritten.",
                    hint="KV version numbers are never reused; store the next version instead.",
                )
        elif meta and self._live_versions(meta) and not self._owned_by(meta, ref):
            raise AlreadyExists(
                f"Vault path {self.mount}/{path} holds another record's secret; nothing was overwritten.",
                hint=f"Choose another name, or delete the old path (`bao kv metadata delete {self.mount}/{path}`).",
            )
        if current < ref.version - 1:
            raise IntegrityError(
                f"Vault path {self.mount}/{path} is at KV version {current}; version {ref.version} "
                "cannot be stored under its own number.",
                hint="The Vault path and the metadata store disagree (backend switched mid-life?); "
                "see docs/vault.md before moving secrets between backends.",
            )
        with translating(self._addr, f"{self.mount}/data/{path}", "write",
                         policy=self._policy(path, '"create", "update"')):
            # cas: the write succeeds only if the path is exactly at version N-1
            self.client.secrets.kv.v2.create_or_update_secret(
                path, {"token": secret.reveal()}, cas=ref.version - 1, mount_point=self.mount)
        body: dict[str, object] = {"custom_metadata": custom, "cas_required": True}
        if self.max_versions is not None:
            body["max_versions"] = self.max_versions
        with translating(self._addr, f"{self.mount}/metadata/{path}", "write metadata",
                         policy=self._policy(path, '"create", "update"')):
            # the adapter directly: hvac's update_metadata would also reset delete_version_after
            self.client.adapter.post(f"/v1/{self.mount}/metadata/{path}", json=body)

    def get(self, ref: SecretRef) -> Secret:
        """Return KV version ``ref.version``. NotFound if missing/deleted/destroyed; see module doc."""
        path = self.path_for(ref)
        try:
            with translating(self._addr, f"{self.mount}/data/{path}", "read",
                             policy=self._policy(path, '"read"')):
                response = self.client.secrets.kv.v2.read_secret_version(
                    path, version=ref.version, mount_point=self.mount, raise_on_deleted_version=True)
        except NotFound:
            raise NotFound(
                f"No stored {ref.kind.value} for {ref.name!r} version {ref.version} in Vault "
                f"({self.mount}/{path}).",
                hint="It was destroyed, deleted or never stored (KV keeps max_versions); rotate or re-import.",
            ) from None
        payload = (response or {}).get("data") or {}
        kv_meta = payload.get("metadata") or {}
        value = (payload.get("data") or {}).get("token")
        if kv_meta.get("version") != ref.version or not isinstance(value, str):
            raise IntegrityError(
                f"Vault path {self.mount}/{path} version {ref.version} is not a tokenvault secret.",
                hint="It was written outside tokenvault; restore it or rotate the token.")
        custom = kv_meta.get("custom_metadata") or {}
        if not self._owned_by({"custom_metadata": custom}, ref):
            raise IntegrityError(
                f"Vault path {self.mount}/{path} belongs to another record than {ref.name!r}.",
                hint="The path was reused or edited outside tokenvault; restore it or rotate the token.")
        return Secret(value)

    def exists(self, ref: SecretRef) -> bool:
        """True if version ``ref.version`` is stored, live (not deleted/destroyed) and ours. Reads metadata only."""
        meta = self._read_metadata(self.path_for(ref))
        if not meta or not self._owned_by(meta, ref):
            return False
        return ref.version in self._live_versions(meta)

    def destroy(self, ref: SecretRef) -> None:
        """Permanently destroy KV version ``ref.version`` (other versions stay). Idempotent;
        a path that belongs to another record is left alone."""
        path = self.path_for(ref)
        meta = self._read_metadata(path)
        if not meta or not self._owned_by(meta, ref):
            return
        with translating(self._addr, f"{self.mount}/destroy/{path}", "destroy",
                         policy=f'path "{self.mount}/destroy/{path}" {{ capabilities = ["update"] }}'):
            self.client.secrets.kv.v2.destroy_secret_versions(path, versions=[ref.version], mount_point=self.mount)

    # ------------------------------------------------------------------ helpers
    def read_custom_metadata(self, ref: SecretRef) -> dict[str, str]:
        """The path's ``custom_metadata`` as Vault shows it to its own tools ({} if none)."""
        meta = self._read_metadata(self.path_for(ref))
        return {str(k): str(v) for k, v in ((meta or {}).get("custom_metadata") or {}).items()}

    def _read_metadata(self, path: str) -> dict[str, Any] | None:
        try:
            with translating(self._addr, f"{self.mount}/metadata/{path}", "read metadata",
                             policy=f'path "{self.mount}/metadata/{path}" {{ capabilities = ["read"] }}'):
                response = self.client.secrets.kv.v2.read_secret_metadata(path, mount_point=self.mount)
        except NotFound:
            return None
        data = (response or {}).get("data")
        return data if isinstance(data, dict) else None

    @staticmethod
    def _live_versions(meta: Mapping[str, Any]) -> set[int]:
        versions = meta.get("versions") or {}
        return {int(n) for n, v in versions.items()
                if isinstance(v, dict) and not v.get("destroyed") and not v.get("deletion_time")}

    @staticmethod
    def _owned_by(meta: Mapping[str, Any], ref: SecretRef) -> bool:
        # paths written before this metadata existed (or by hand) carry no owner: not a mismatch
        custom = meta.get("custom_metadata") or {}
        owner, kind = custom.get("tokenvault_owner_id"), custom.get("tokenvault_kind")
        return (owner is None or owner == str(ref.owner_id)) and (kind is None or kind == ref.kind.value)

    @staticmethod
    def _custom_metadata(ref: SecretRef, secret: Secret, metadata: Mapping[str, str] | None) -> dict[str, str]:
        value = secret.reveal()
        # KV v2 refuses empty custom_metadata values; an empty field (e.g. no WABA ids) is simply left out
        custom = {str(k): str(v) for k, v in (metadata or {}).items() if str(v) != ""}
        for key in _RESERVED_KEYS:
            custom.pop(key, None)
        custom.update(tokenvault_kind=ref.kind.value, tokenvault_owner_id=str(ref.owner_id),
                      tokenvault_version=str(ref.version), managed_by="tokenvault")
        if len(custom) > _MAX_META_KEYS:
            raise InvalidInput(f"Too many metadata entries for Vault ({len(custom)} > {_MAX_META_KEYS}).")
        for key, item in custom.items():
            # a caller bug must not copy the token into metadata, which is far less protected
            if value and (key == value or (len(value) >= 8 and value in key)):
                raise InvalidInput("A metadata key contains the secret; nothing was stored.", hint=_CALLER_BUG)
            if value and (item == value or (len(value) >= 8 and value in item)):
                raise InvalidInput(f"Metadata entry {key[:40]!r} contains the secret; nothing was stored.",
                                   hint=_CALLER_BUG)
            if not key or len(key.encode()) > _MAX_META_KEY or len(item.encode()) > _MAX_META_VALUE:
                raise InvalidInput(f"Metadata entry {key[:40]!r} exceeds Vault's custom_metadata limits "
                                   f"({_MAX_META_KEY}-byte keys, {_MAX_META_VALUE}-byte values).")
        return custom


__all__ = ["HashicorpBackend"]
