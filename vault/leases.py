"""Database leases: who holds one, and whether its holder is dead.

A lease (``tv_lease`` row) is taken with a compare-and-set in the metadata store, so it holds across
hosts that share PostgreSQL; its owner string names the host and process, so a lease left by a process
that died on *this* host can be taken over at once instead of waiting for it to expire.
"""

from __future__ import annotations

import os
import socket
import uuid

_HOST = socket.gethostname()


def lease_owner() -> str:
    """A fresh owner string: ``host|pid|random``."""
    return f"{_HOST}|{os.getpid()}|{uuid.uuid4().hex[:8]}"


def lease_is_stale(owner: str) -> bool:
    """A lease held by a dead process on this host can be taken over at once (no need to wait for expiry)."""
    try:
        host, pid, _ = owner.split("|")
    except ValueError:
        return False
    if host != _HOST:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError):
        return False
    return False


__all__ = ["lease_is_stale", "lease_owner"]
