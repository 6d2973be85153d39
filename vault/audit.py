"""The audit trail's hash chain: how one event is linked to the one before it.

Every store that appends to the trail (:class:`~meta_tokenvault.adapters.store_sql.SqlStore`, and the fast read path
of :mod:`meta_tokenvault.fastread`) computes the next event here and nowhere else, so there is one definition of
the chain. Stdlib only: the fast path must not import SQLAlchemy.

The head (``tv_setting['audit_head']``) records the last event's sequence number and hash, so deleting the
newest events is detected too. Appending is: lock the head, :func:`next_link`, insert the event, write
``link.head``, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .types import as_utc

GENESIS = "0" * 64
AUDIT_HEAD = "audit_head"


def audit_hash(seq: int, prev: str, at: datetime, actor: str, action: str, subject: str, details: str) -> str:
    """The chain link: SHA-256 over the event's canonical fields and the previous hash."""
    canonical = json.dumps([seq, prev, at.replace(tzinfo=None).isoformat(timespec="microseconds"), actor, action,
                            subject, details], separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_details(details: Mapping[str, Any]) -> str:
    """An event's details as stored and hashed: canonical JSON (sorted keys, no spaces)."""
    return json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)


def read_head(value: str | None) -> tuple[int, str]:
    """``(seq, hash)`` of the newest event from the head's stored value (an empty trail: ``(0, GENESIS)``)."""
    if not value:
        return 0, GENESIS
    state = json.loads(value)
    return int(state["seq"]), str(state["hash"])


def encode_head(seq: int, digest: str) -> str:
    return json.dumps({"seq": seq, "hash": digest})


@dataclass(frozen=True, slots=True)
class AuditLink:
    """The next event of the chain, ready to insert (``at`` is aware UTC), and the head value after it."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: str
    prev_hash: str
    hash: str

    @property
    def head(self) -> str:
        return encode_head(self.seq, self.hash)


def next_link(head: str | None, actor: str, action: str, subject: str, details: Mapping[str, Any],
              now: datetime) -> AuditLink:
    """The event that follows the head's stored value ``head``: its sequence number, canonical details,
    previous hash and hash. Pure; the caller holds the head's lock while it inserts the event."""
    seq, prev = read_head(head)
    at = as_utc(now)
    body = encode_details(details)
    digest = audit_hash(seq + 1, prev, at, actor, action, subject, body)
    return AuditLink(seq=seq + 1, at=at, actor=actor, action=action, subject=subject, details=body,
                     prev_hash=prev, hash=digest)


__all__ = ["AUDIT_HEAD", "GENESIS", "AuditLink", "audit_hash", "encode_details", "encode_head", "next_link",
           "read_head"]
