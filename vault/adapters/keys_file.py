"""The ``file`` key provider: 32-byte master keys in files 0600 under ``TOKENVAULT_HOME/keys`` (0700).

For headless machines without an OS keyring. Each key is ``master-<key id>.key`` (base64), created with
O_EXCL and never overwritten; ``current`` names the current key and is replaced atomically. A key file
that other users can read is refused: the key must be as private as the secrets it protects.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BackendUnavailable, InvalidInput
from ..safety import private_file_problem
from ..types import Availability
from .keys_local import LocalKeyProvider, decode_key, encode_key

_PREFIX, _SUFFIX = "master-", ".key"


class FileKeyProvider(LocalKeyProvider):
    name = "file"

    def __init__(self, keys_dir: Path) -> None:
        self.keys_dir = Path(keys_dir)

    def availability(self) -> Availability:
        folder = self.keys_dir if self.keys_dir.exists() else self.keys_dir.parent
        if folder.exists() and not os.access(folder, os.R_OK | os.W_OK | os.X_OK):
            return Availability(False, f"{folder} is not readable and writable by this user")
        return Availability(True, f"key files in {self.keys_dir}")

    def _path(self, key_id: str) -> Path:
        if not key_id or not key_id.isalnum():
            raise InvalidInput(f"Invalid key id {key_id!r}.")
        return self.keys_dir / f"{_PREFIX}{key_id}{_SUFFIX}"

    def _load(self, key_id: str) -> bytes | None:
        if not key_id or not key_id.isalnum():
            return None  # not an id this provider ever made
        path = self._path(key_id)
        try:
            info = path.stat()
        except FileNotFoundError:
            return None
        problem = private_file_problem(path, info, "key file")
        if problem is not None:
            raise problem.error()
        try:
            text = path.read_text()
        except PermissionError:
            raise BackendUnavailable(f"Cannot read the key file {path}: permission denied.") from None
        return decode_key(text, f"The key file {path.name}")

    # the writes import what they need when they run: the start-up path (reveal, exec) only reads keys
    def _store(self, key_id: str, key: bytes) -> None:
        import contextlib

        from ..fileutil import create_private_file, ensure_private_dir

        ensure_private_dir(self.keys_dir)
        with contextlib.suppress(InvalidInput):  # the same key stored twice is the same file: keep it
            create_private_file(self._path(key_id), (encode_key(key) + "\n").encode())

    def _current(self) -> str | None:
        try:
            value = (self.keys_dir / "current").read_text().strip()
        except FileNotFoundError:
            ids = self.key_ids()
            return ids[0] if len(ids) == 1 else None
        return value or None

    def _set_current(self, key_id: str) -> None:
        from ..fileutil import atomic_write_private, ensure_private_dir

        ensure_private_dir(self.keys_dir)
        atomic_write_private(self.keys_dir / "current", (key_id + "\n").encode())

    def key_ids(self) -> list[str]:
        if not self.keys_dir.is_dir():
            return []
        return sorted(p.name[len(_PREFIX):-len(_SUFFIX)] for p in self.keys_dir.glob(f"{_PREFIX}*{_SUFFIX}"))

    def retire_key(self, key_id: str) -> None:
        """Delete an old key file (never the current one)."""
        if key_id == self._current():
            raise InvalidInput("Refusing to retire the current master key.")
        import contextlib

        with contextlib.suppress(FileNotFoundError):
            self._path(key_id).unlink()
