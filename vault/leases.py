"""Database leases: who holds one, and whether its holder is dead.

A lease (``tv_lease`` row) is taken with a compare-and-set in the metadata store, so it holds across
hosts that share PostgreSQL; its owner string names the host and process, so a lease left by a process
that died on *this* host can be taken over at once instead of waiting for it to expire.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Protocol

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


class LeaseStore(Protocol):
    """What :func:`take_lease` needs of the metadata store."""

    def acquire_lease(self, resource: str, owner: str, now: datetime, ttl: timedelta) -> bool: ...
    def lease_holder(self, resource: str) -> tuple[str, datetime] | None: ...
    def release_lease(self, resource: str, owner: str) -> None: ...


def take_lease(store: LeaseStore, resource: str, owner: str, now: datetime,
               ttl: timedelta) -> tuple[bool, tuple[str, datetime] | None]:
    """Take ``resource``'s lease for ``owner``: when it is free or expired (the store's compare-and-set), or
    held by a process that died on this host (taken over at once, no need to wait for it to expire).

    Returns ``(True, None)``, or ``(False, (holder, until))`` naming who holds it (None if it vanished)."""
    if store.acquire_lease(resource, owner, now, ttl):
        return True, None
    holder = store.lease_holder(resource)
    if holder is not None and lease_is_stale(holder[0]):
        store.release_lease(resource, holder[0])
        if store.acquire_lease(resource, owner, now, ttl):
            return True, None
    return False, holder


__all__ = ["LeaseStore", "lease_is_stale", "lease_owner", "take_lease"]
