"""The ``keyring`` key provider: master keys in the OS keyring through the real `keyring` package.

Keys are stored base64 under the service name (default ``tokenvault``) with the username
``master-key:<key id>``; ``current-key-id`` names the current one. Never falls back silently: a machine
whose only backend is the ``fail`` keyring, an empty chainer, or a plaintext backend the user did not
choose explicitly is reported as *not available*, with the reason, and ``init`` then asks for
``--key-provider file|env|vault-transit``. Every keyring error is translated to
:class:`~meta_tokenvault.errors.KeyringUnavailable` here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import KeyringUnavailable
from ..ports.keys import Availability
from .keys_local import LocalKeyProvider, decode_key, encode_key

T = TypeVar("T")
_CURRENT = "current-key-id"
_PREFIX = "master-key:"
_INDEX = "key-ids"


def _insecure(backend: Any) -> str | None:
    """Why ``backend`` must not hold master keys unless chosen explicitly (None if it is fine)."""
    module = type(backend).__module__
    name = type(backend).__name__
    if module.startswith("keyring.backends.fail"):
        return "no OS keyring backend is available (keyring's 'fail' backend)"
    if module.startswith("keyring.backends.chainer") and not getattr(backend, "backends", None):
        return "the keyring chainer has no backends"
    if module.startswith("keyrings.alt") or "Plaintext" in name or "Null" in name:
        return f"the only keyring backend is {module}.{name}, which does not protect secrets"
    priority = getattr(backend, "priority", 1)
    try:
        if float(priority) < 1:
            return f"the keyring backend {module}.{name} has low priority ({priority}); it is not a real OS keyring"
    except (TypeError, ValueError):
        pass
    return None


class KeyringKeyProvider(LocalKeyProvider):
    name = "keyring"

    def __init__(self, service: str = "tokenvault", backend: Any = None) -> None:
        self.service = service
        self._backend = backend
        self._explicit = backend is not None or bool(os.environ.get("PYTHON_KEYRING_BACKEND"))

    def _ring(self) -> Any:
        if self._backend is None:
            import keyring
            import keyring.core

            chosen = os.environ.get("PYTHON_KEYRING_BACKEND")
            # honour an explicit choice even if keyring already cached another backend in this process
            self._backend = keyring.core.load_keyring(chosen) if chosen else keyring.get_keyring()
        return self._backend

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        import keyring.errors

        try:
            return fn()
        except keyring.errors.KeyringLocked:
            raise KeyringUnavailable(f"The OS keyring is locked ({what}).",
                                     hint="Unlock it (log in to the desktop session) or choose --key-provider "
                                          "file|env|vault-transit.") from None
        except keyring.errors.KeyringError as exc:
            raise KeyringUnavailable(f"The OS keyring failed to {what}: {type(exc).__name__}.") from None
        except OSError as exc:  # file-backed backends: a read-only or full disk, a missing folder
            raise KeyringUnavailable(f"The OS keyring failed to {what}: {exc.strerror or type(exc).__name__}.") \
                from None

    def availability(self) -> Availability:
        try:
            backend = self._ring()
        except Exception as exc:  # noqa: BLE001 - keyring discovery can raise anything; report, don't crash
            return Availability(False, f"keyring could not load a backend ({type(exc).__name__})")
        reason = _insecure(backend)
        never_usable = reason is not None and ("'fail'" in reason or "no backends" in reason)
        if reason and (never_usable or not self._explicit):
            return Availability(False, reason)
        return Availability(True, f"{type(backend).__module__}.{type(backend).__name__}")

    def _require(self) -> Any:
        avail = self.availability()
        if not avail.ok:
            raise KeyringUnavailable(f"No usable OS keyring: {avail.reason}.")
        return self._ring()

    def _get(self, username: str) -> str | None:
        ring = self._require()
        value: str | None = self._call("read a key", lambda: ring.get_password(self.service, username))
        return value

    def _set(self, username: str, value: str) -> None:
        ring = self._require()
        self._call("store a key", lambda: ring.set_password(self.service, username, value))

    def _load(self, key_id: str) -> bytes | None:
        text = self._get(_PREFIX + key_id)
        return None if text is None else decode_key(text, f"The keyring entry for key {key_id}")

    def _store(self, key_id: str, key: bytes) -> None:
        if self._get(_PREFIX + key_id) is None:
            self._set(_PREFIX + key_id, encode_key(key))
        ids = self.key_ids()
        if key_id not in ids:
            self._set(_INDEX, ",".join([*ids, key_id]))

    def _current(self) -> str | None:
        return self._get(_CURRENT)

    def _set_current(self, key_id: str) -> None:
        self._set(_CURRENT, key_id)

    def key_ids(self) -> list[str]:
        # keyring has no portable "list entries": keep an index entry next to the keys
        raw = self._get(_INDEX) or ""
        return [k for k in raw.split(",") if k]

    def retire_key(self, key_id: str) -> None:
        import keyring.errors

        if key_id == self._current():
            return
        ring = self._require()
        try:
            ring.delete_password(self.service, _PREFIX + key_id)
        except keyring.errors.PasswordDeleteError:
            pass
        except keyring.errors.KeyringError as exc:
            raise KeyringUnavailable(f"The OS keyring failed to delete a key: {type(exc).__name__}.") from None
        self._set(_INDEX, ",".join(k for k in self.key_ids() if k != key_id))
