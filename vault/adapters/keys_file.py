"""The ``file`` key provider: 32-byte master keys in files 0600 under ``TOKENVAULT_HOME/keys`` (0700).

For headless machines without an OS keyring. Each key is ``master-<key id>.key`` (base64), created with
O_EXCL and never overwritten; ``current`` names the current key and is replaced atomically. A key file
that other users can read is refused: the key must be as private as the secrets it protects.

Each use of a key checks its file (``stat``: present, private, unchanged); the file is read again only when it
changed (another inode, size, modification or change time), so a bulk rotation, which wraps and unwraps a data
key several times per token, does not read and decode the same files thousands of times. (A file rewritten in
place, at the same size, within one tick of the kernel's file clock would look unchanged; tokenvault never
rewrites these files in place: a key file is created once, ``current`` is replaced.)
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
        self._keys: dict[str, tuple[tuple[int, ...], bytes]] = {}  # key id -> (its file's signature, the key)
        self._current_read: tuple[tuple[int, ...], str | None] | None = None  # ("current"'s signature, its id)
        self._current_path = str(self.keys_dir / "current")
        self._paths: dict[str, tuple[Path, str]] = {}  # key id -> its file, built once (pathlib costs more than stat)

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
        known_path = self._paths.get(key_id)
        if known_path is None:
            made = self._path(key_id)
            known_path = self._paths[key_id] = (made, str(made))
        path = known_path[0]
        try:
            info = os.stat(known_path[1])
        except FileNotFoundError:
            return None
        problem = private_file_problem(path, info, "key file")
        if problem is not None:
            raise problem.error()
        signature = _signature(info)
        known = self._keys.get(key_id)
        if known is not None and known[0] == signature:
            return known[1]
        try:
            text = path.read_text()
        except PermissionError:
            raise BackendUnavailable(f"Cannot read the key file {path}: permission denied.") from None
        key = decode_key(text, f"The key file {path.name}")
        self._keys[key_id] = (signature, key)
        return key

    # the writes import what they need when they run: the start-up path (reveal, exec) only reads keys
    def _store(self, key_id: str, key: bytes) -> None:
        import contextlib

        from ..fileutil import create_private_file, ensure_private_dir

        ensure_private_dir(self.keys_dir)
        with contextlib.suppress(InvalidInput):  # the same key stored twice is the same file: keep it
            create_private_file(self._path(key_id), (encode_key(key) + "\n").encode())

    def _current(self) -> str | None:
        path = self._current_path
        try:
            signature = _signature(os.stat(path))
            known = self._current_read
            if known is not None and known[0] == signature:
                return known[1]
            with open(path, encoding="utf-8") as f:
                value = f.read().strip() or None
        except FileNotFoundError:
            ids = self.key_ids()
            return ids[0] if len(ids) == 1 else None
        self._current_read = (signature, value)
        return value

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


def _signature(info: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is replaced or rewritten: its inode, size, modification and change times."""
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns
