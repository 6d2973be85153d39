"""The Vault Transit key provider: the master key lives (and stays) in Vault / OpenBao.

A data key (DEK) is wrapped by ``transit/encrypt/<key>`` and unwrapped by
``transit/decrypt/<key>``; the record's associated data goes in Transit's
``associated_data`` parameter (AES-256-GCM96 AEAD, supported by OpenBao 2.x and Vault), so a
wrapped DEK moved to another record fails to open exactly like the local providers'.

Key ids are ``transit:<key_name>:v<N>`` where N is the Transit key version that encrypted
(Transit's ciphertext starts ``vault:vN:``, which is what ``wrapped`` holds, as ASCII). Rotation
is Transit's: :meth:`TransitKeyProvider.rotate_master` adds version N+1 and makes it current;
old versions keep decrypting until :meth:`TransitKeyProvider.retire_key` raises the key's
``min_decryption_version``. The key is created non-exportable without plaintext backup, so no
endpoint hands out key material.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any

from ..errors import (
    InvalidInput,
    NotFound,
    TamperedCiphertext,
    UsageError,
    VaultError,
    VaultUnavailable,
    WrongMasterKey,
)
from ..ports.keys import Availability
from .hashicorp_client import translating

_KEY_ID = re.compile(r"transit:(?P<name>[^:]+):v(?P<version>[1-9][0-9]*)")
_CIPHERTEXT = re.compile(rb"vault:v(?P<version>[1-9][0-9]*):[A-Za-z0-9+/=]+")
KEY_TYPE = "aes256-gcm96"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class TransitKeyProvider:
    """KeyProvider port on a Transit engine (see the module doc).

    ``client`` is an authenticated :class:`hvac.Client`; ``mount`` the Transit mount;
    ``key_name`` the Transit key (created by :meth:`create_key`).
    """

    name = "vault-transit"

    def __init__(self, client: Any, mount: str = "transit", key_name: str = "tokenvault") -> None:
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", key_name):
            raise InvalidInput(f"Invalid Transit key name {key_name!r}.",
                               hint="Use letters, digits, '-', '_' and '.'.")
        self.client = client
        self.mount = mount.strip("/")
        self.key_name = key_name

    def __repr__(self) -> str:
        return f"TransitKeyProvider(addr={self._addr!r}, mount={self.mount!r}, key={self.key_name!r})"

    @property
    def _addr(self) -> str:
        return str(getattr(self.client, "url", "?"))

    def _id(self, version: int) -> str:
        return f"transit:{self.key_name}:v{version}"

    def _policy(self, endpoint: str) -> str:
        return f'path "{self.mount}/{endpoint}/{self.key_name}" {{ capabilities = ["update"] }}'

    # ------------------------------------------------------------------ key state
    def _read_key(self) -> dict[str, Any] | None:
        """Transit's key config, or None if the key does not exist."""
        try:
            with translating(self._addr, f"{self.mount}/keys/{self.key_name}", "read transit key",
                             policy=f'path "{self.mount}/keys/{self.key_name}" {{ capabilities = ["read"] }}'):
                response = self.client.secrets.transit.read_key(self.key_name, mount_point=self.mount)
        except NotFound:
            return None
        data = (response or {}).get("data")
        return data if isinstance(data, dict) else None

    def _require_key(self) -> dict[str, Any]:
        key = self._read_key()
        if key is None:
            raise WrongMasterKey(
                f"Transit key {self.mount}/{self.key_name} does not exist in Vault at {self._addr}.",
                hint="Create it with `tokenvault init --key-provider vault-transit`, or check "
                "TOKENVAULT_VAULT_TRANSIT_MOUNT / TOKENVAULT_VAULT_TRANSIT_KEY.",
            )
        if not key.get("supports_encryption") or key.get("derived"):
            raise InvalidInput(
                f"Transit key {self.mount}/{self.key_name} is a {key.get('type')} key"
                f"{' with derivation' if key.get('derived') else ''}; tokenvault needs a non-derived {KEY_TYPE} key.",
                hint="Point TOKENVAULT_VAULT_TRANSIT_KEY at another (new) key name.",
            )
        return key

    def _parse_id(self, key_id: str) -> int:
        match = _KEY_ID.fullmatch(key_id)
        if match is None or match["name"] != self.key_name:
            raise WrongMasterKey(
                f"Master key {key_id!r} is not held by Transit key {self.mount}/{self.key_name}.",
                hint="The data was wrapped by another key provider or Transit key; configure that one.",
            )
        return int(match["version"])

    @staticmethod
    def _usable(key: dict[str, Any]) -> list[int]:
        # Transit lists only versions at or above min_decryption_version in "keys"
        floor = int(key.get("min_decryption_version") or 1)
        return sorted(v for v in (int(n) for n in (key.get("keys") or {})) if v >= floor)

    # ------------------------------------------------------------------ port
    def availability(self) -> Availability:
        """Whether Transit can hold the master key here, and if not why and what to do (``doctor``).

        Checked in order: reachable, unsealed and the token accepted (reading the key); the key is
        a non-derived AEAD key that cannot be exported; the token's policy grants ``update`` on
        ``encrypt/<key>`` and ``decrypt/<key>`` (``sys/capabilities-self``). A key that does not
        exist yet is fine (``tokenvault init`` creates it). Never raises; read-only requests.
        """
        needed = [f"{self.mount}/encrypt/{self.key_name}", f"{self.mount}/decrypt/{self.key_name}"]
        try:
            key = self._read_key()
            if key is not None:
                self._require_key()
            with translating(self._addr, "sys/capabilities-self", "capabilities lookup"):
                granted = self.client.sys.get_capabilities(paths=needed) or {}
        except VaultError as exc:
            return Availability(False, f"{exc.message} {exc.hint}")
        if key is not None and (key.get("exportable") or key.get("allow_plaintext_backup")):
            return Availability(False, f"Transit key {self.mount}/{self.key_name} is exportable: the master key can "
                                       "leave Vault; create a new, non-exportable key and point "
                                       "TOKENVAULT_VAULT_TRANSIT_KEY at it.")
        caps: dict[str, Any] = granted.get("data") or granted
        refused = [p for p in needed if not {"root", "update"} & set(caps.get(p) or ())]
        if refused:
            return Availability(False, f"The Vault token may not use {', '.join(refused)}; grant \"update\" on them "
                                       "(the tokenvault app policy of docs/vault.md).")
        if key is None:
            return Availability(True, f"Transit at {self._addr}/v1/{self.mount}/: key "
                                      f"{self.key_name} not created yet (`tokenvault init`)")
        return Availability(True, f"Transit key {self.mount}/{self.key_name} v{key.get('latest_version')}")

    def has_key(self) -> bool:
        return self._read_key() is not None

    def current_key_id(self) -> str:
        """``transit:<name>:v<latest>``. Raises WrongMasterKey if the key does not exist."""
        return self._id(int(self._require_key()["latest_version"]))

    def key_ids(self) -> list[str]:
        """Ids of the versions that still decrypt (>= min_decryption_version), oldest first."""
        key = self._read_key()
        return [] if key is None else [self._id(v) for v in self._usable(key)]

    def create_key(self) -> str:
        """Create the Transit key if absent (AES-256-GCM96, not exportable, no plaintext backup).

        Never replaces anything: if the key exists, its current id is returned unchanged (a new
        master key version is :meth:`rotate_master`). Needs ``create``/``update`` on
        ``<mount>/keys/<name>``.
        """
        if self._read_key() is None:
            grant = f'path "{self.mount}/keys/{self.key_name}" {{ capabilities = ["create", "update"] }}'
            with translating(self._addr, f"{self.mount}/keys/{self.key_name}", "create transit key", policy=grant):
                # Transit's create is a no-op for an existing key, so a racing creator is harmless
                self.client.secrets.transit.create_key(
                    self.key_name, key_type=KEY_TYPE, exportable=False, allow_plaintext_backup=False,
                    mount_point=self.mount)
        return self.current_key_id()

    def rotate_master(self) -> str:
        """Add a new Transit key version and make it current; return its id. Old versions keep decrypting."""
        self._require_key()
        with translating(self._addr, f"{self.mount}/keys/{self.key_name}/rotate", "rotate transit key",
                         policy=f'path "{self.mount}/keys/{self.key_name}/rotate" {{ capabilities = ["update"] }}'):
            self.client.secrets.transit.rotate_key(self.key_name, mount_point=self.mount)
        return self.current_key_id()

    def wrap(self, dek: bytes, aad: bytes, *, key_id: str | None = None) -> tuple[str, bytes]:
        """Encrypt ``dek`` in Transit with ``aad`` as associated data; return ``(key_id, b"vault:vN:...")``.

        Without ``key_id`` the latest version encrypts (the key is read first, so a missing key
        is :class:`WrongMasterKey` rather than Transit silently creating a new one); with it,
        exactly that version, which must still be usable.
        """
        key = self._require_key()
        version = int(key["latest_version"]) if key_id is None else self._parse_id(key_id)
        if version not in self._usable(key) or version > int(key["latest_version"]):
            raise WrongMasterKey(f"Transit key version {self._id(version)} is retired or does not exist.",
                                 hint="Wrap under the current key (`tokenvault keys rotate` re-wraps everything).")
        with translating(self._addr, f"{self.mount}/encrypt/{self.key_name}", "encrypt",
                         policy=self._policy("encrypt"), on_bad_request=self._classify):
            response = self.client.secrets.transit.encrypt_data(
                self.key_name, plaintext=_b64(dek), associated_data=_b64(aad), key_version=version,
                mount_point=self.mount)
        ciphertext = str(response["data"]["ciphertext"]).encode("ascii")
        match = _CIPHERTEXT.fullmatch(ciphertext)
        if match is None:
            raise VaultUnavailable(f"Transit at {self._addr} returned a ciphertext in an unknown format.")
        return self._id(int(match["version"])), ciphertext

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt a wrapped DEK. WrongMasterKey: key or version missing/retired; TamperedCiphertext:
        edited, truncated, wrong ``aad``, or its version does not match ``key_id``."""
        version = self._parse_id(key_id)
        match = _CIPHERTEXT.fullmatch(bytes(wrapped))
        if match is None:
            raise TamperedCiphertext("The wrapped data key is truncated or not a Transit ciphertext.")
        if int(match["version"]) != version:
            raise TamperedCiphertext(
                f"The wrapped data key names Transit version v{int(match['version'])}, its record says {key_id}.")
        with translating(self._addr, f"{self.mount}/decrypt/{self.key_name}", "decrypt",
                         policy=self._policy("decrypt"), on_bad_request=self._classify):
            response = self.client.secrets.transit.decrypt_data(
                self.key_name, ciphertext=bytes(wrapped).decode("ascii"), associated_data=_b64(aad),
                mount_point=self.mount)
        try:
            return base64.b64decode(str(response["data"]["plaintext"]), validate=True)
        except (KeyError, TypeError, binascii.Error):
            raise TamperedCiphertext("Transit returned no valid plaintext for the wrapped data key.") from None

    def retire_key(self, key_id: str) -> None:
        """Make ``key_id`` unusable by raising Transit's ``min_decryption_version`` past it.

        Safe only in order: ``min_decryption_version`` is a floor, so retiring vN also retires
        every older version. This therefore refuses (:class:`UsageError`) to retire the current
        version, or a version while older ones still decrypt; retiring an already retired
        version is a no-op. The material stays in Vault (an admin may lower the floor again, or
        ``trim`` the key to delete it for good). Needs ``update`` on ``<mount>/keys/<name>/config``.
        """
        version = self._parse_id(key_id)
        key = self._require_key()
        usable = self._usable(key)
        if version not in usable:
            return
        if version >= int(key["latest_version"]):
            raise UsageError(f"{key_id} is the current master key; rotate first (`tokenvault keys rotate`).")
        if usable[0] != version:
            raise UsageError(
                f"Retiring {key_id} would also retire older versions that still decrypt "
                f"({', '.join(self._id(v) for v in usable if v < version)}); retire those first.")
        with translating(self._addr, f"{self.mount}/keys/{self.key_name}/config", "retire transit key version",
                         policy=f'path "{self.mount}/keys/{self.key_name}/config" {{ capabilities = ["update"] }}'):
            self.client.secrets.transit.update_key_configuration(
                self.key_name, min_decryption_version=version + 1, mount_point=self.mount)

    # ------------------------------------------------------------------ errors
    def _classify(self, errors: Sequence[str]) -> VaultError | None:
        """Transit's 400s: which are integrity failures, which mean the key is not held."""
        text = " ".join(errors).lower()
        where = f"Transit key {self.mount}/{self.key_name}"
        if "encryption key not found" in text:
            return WrongMasterKey(f"{where} does not exist in Vault at {self._addr}.")
        if "too old" in text or "too new" in text or "no such key version" in text or "higher than the latest" in text:
            return WrongMasterKey(f"{where} no longer holds (or never held) that key version.",
                                  hint="It was retired; restore the data from a backup made before the retirement.")
        if "authentication failed" in text or "invalid ciphertext" in text or "base64" in text:
            return TamperedCiphertext("The wrapped data key does not authenticate: it was edited, truncated "
                                      "or belongs to another record.")
        return None


__all__ = ["TransitKeyProvider"]
