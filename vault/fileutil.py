"""Files private from birth: 0600 files and 0700 folders, atomic writes (temp in the same folder + replace)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import BackendUnavailable, InvalidInput

_WRITABLE_HINT = ("Make the folder writable (permissions, read-only mount, disk space), or choose another "
                  "TOKENVAULT_HOME or output path.")


def _unwritable(what: str, path: Path, exc: OSError) -> BackendUnavailable:
    """One line for any OS refusal (permission, read-only file system, no space, a file in the way)."""
    reason = "permission denied" if isinstance(exc, PermissionError) else (exc.strerror or type(exc).__name__)
    return BackendUnavailable(f"Cannot {what} {path}: {reason}.", hint=_WRITABLE_HINT)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 from creation; an existing folder is left as is.

    Raises :class:`BackendUnavailable` (exit 5) when it cannot be created (a read-only or full file
    system, no permission, a file where the folder should be).
    """
    if path.is_dir():
        return
    old = os.umask(0o077)
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise BackendUnavailable(f"Cannot create the folder {path}: a file is in the way.",
                                 hint=_WRITABLE_HINT) from None
    except OSError as exc:
        raise _unwritable("create the folder", path, exc) from None
    finally:
        os.umask(old)


def create_private_file(path: Path, data: bytes) -> None:
    """Create a new file 0600 with ``data``; refuses to replace an existing file (O_EXCL).

    Raises :class:`InvalidInput` if it exists, :class:`BackendUnavailable` if it cannot be written;
    a partly written file is removed.
    """
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} exists already; refusing to overwrite it.") from None
    except OSError as exc:
        raise _unwritable("create", path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(path)
        if isinstance(exc, OSError):
            raise _unwritable("write", path, exc) from None
        raise


def atomic_write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically with mode 0600: a 0600 temp file in the same folder, then ``os.replace``.

    On any failure the previous content of ``path`` is intact and the temp file is removed.
    """
    import secrets  # not at import: the fast read path never writes a file

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileNotFoundError:
        raise InvalidInput(f"Cannot write {path}: its folder does not exist.") from None
    except OSError as exc:
        raise _unwritable("write", path, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _unwritable("write", path, exc) from None
        raise
