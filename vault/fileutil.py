"""Files private from birth: 0600 files and 0700 folders, atomic writes (temp in the same folder + replace)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from .errors import BackendUnavailable, InvalidInput


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 from creation; an existing folder is left as is."""
    if path.is_dir():
        return
    old = os.umask(0o077)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except PermissionError:
        raise BackendUnavailable(
            f"Cannot create the folder {path}: permission denied.",
            hint="Set TOKENVAULT_HOME to a folder you can write, or fix its permissions.",
        ) from None
    except OSError as exc:
        raise BackendUnavailable(f"Cannot create the folder {path}: {exc.strerror}.") from None
    finally:
        os.umask(old)


def create_private_file(path: Path, data: bytes) -> None:
    """Create a new file 0600 with ``data``; refuses to replace an existing file (O_EXCL)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} exists already; refusing to overwrite it.") from None
    except PermissionError:
        raise BackendUnavailable(f"Cannot create {path}: permission denied.",
                                 hint="Make the folder writable or choose another TOKENVAULT_HOME.") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def atomic_write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically with mode 0600: a 0600 temp file in the same folder, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except PermissionError:
        raise BackendUnavailable(f"Cannot write {path}: permission denied.",
                                 hint="Make the folder writable, or choose another output path.") from None
    except FileNotFoundError:
        raise InvalidInput(f"Cannot write {path}: its folder does not exist.") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
