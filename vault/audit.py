"""The audit trail's hash chain: how one event is linked to the one before it.

Every store that appends to the trail (:class:`~meta_tokenvault.adapters.store_sql.SqlStore`, and the fast read path
of :mod:`meta_tokenvault.fastread`) computes the next event here and nowhere else, so there is one definition of
the chain. The standard library and cryptography's hashes only (:mod:`meta_tokenvault.digest`): the fast path
must not import SQLAlchemy.

The head (``tv_setting['audit_head']``) records the last event's sequence number and hash, so deleting the
newest events is detected too. The head is keyed: it carries an HMAC over (seq, hash) under a key derived
from the store's fingerprint key, which is wrapped by the master key (:func:`head_key`). Someone who can
write the database but does not hold the master key can therefore not point the head at an earlier event
(a rewind) nor remove the MAC: both are :class:`~meta_tokenvault.errors.AuditChainBroken` (exit 4). Appending is:
lock the head, :func:`next_link` (which checks the head's MAC), insert the event, write ``link.head``, in
one transaction. A store without a fingerprint key (not initialised) has an unkeyed head.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from .digest import hmac_sha256, hmac_sha256_matches, sha256
from .errors import AuditChainBroken
from .records import record
from .types import as_utc

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

GENESIS = "0" * 64
AUDIT_HEAD = "audit_head"
# json.dumps builds an encoder per call when given options: these are the encoders it builds, made once (the
# same text; a rotation hashes seven events)
_CANONICAL = json.JSONEncoder(separators=(",", ":"))
_DETAILS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def audit_hash(seq: int, prev: str, at: datetime, actor: str, action: str, subject: str, details: str) -> str:
    """The chain link: SHA-256 over the event's canonical fields and the previous hash."""
    canonical = _CANONICAL.encode([seq, prev, at.replace(tzinfo=None).isoformat(timespec="microseconds"), actor,
                                   action, subject, details])
    return sha256(canonical.encode()).hex()


def encode_details(details: Mapping[str, Any]) -> str:
    """An event's details as stored and hashed: canonical JSON (sorted keys, no spaces)."""
    return _DETAILS.encode(details)


def head_key(fingerprint_key: bytes) -> bytes:
    """The key of the head's MAC, derived from the store's fingerprint key (domain-separated: the same key
    never serves two purposes). Rewrapped with it when the master key rotates."""
    return hmac_sha256(fingerprint_key, b"tokenvault audit head v1")


def _mac(key: bytes, seq: int, digest: str) -> str:
    return hmac_sha256(key, _mac_input(seq, digest)).hex()


def _mac_input(seq: int, digest: str) -> bytes:
    return f"{seq}:{digest}".encode()


def _mac_matches(key: bytes, seq: int, digest: str, mac: str) -> bool:
    """Whether ``mac`` (the head's stored hex text) is :func:`_mac`'s, compared in constant time."""
    try:
        stored = bytes.fromhex(mac)
    except ValueError:
        return False
    # fromhex also takes upper case and spaces: only _mac's own text form matches, as when text was compared
    return stored.hex() == mac and hmac_sha256_matches(key, _mac_input(seq, digest), stored)


HEAD_HINT = ("Someone wrote the database without tokenvault (events deleted and the head rewound, or the head "
             "edited); keep it for investigation, restore a backup, and see SECURITY.md (audit trail).")


UNKEYED_HINT = ("If this database predates keyed audit heads, key it once with `tokenvault audit verify --key-head` "
                "(it checks every event first); otherwise treat it as tampered (SECURITY.md, audit trail).")


def read_head(value: str | None, key: bytes | None = None) -> tuple[int, str]:
    """``(seq, hash)`` of the newest event from the head's stored value (an empty trail: ``(0, GENESIS)``).

    With ``key`` (:func:`head_key`) the head's MAC is checked: a head past event 0 without a MAC, or whose
    MAC does not match, raises :class:`AuditChainBroken`."""
    if not value:
        return 0, GENESIS
    try:
        state = json.loads(value)
        seq, digest = int(state["seq"]), str(state["hash"])
    except (ValueError, KeyError, TypeError):
        raise AuditChainBroken("The audit head is not readable: it was edited outside tokenvault.",
                               hint=HEAD_HINT) from None
    if key is not None and seq > 0:
        mac = state.get("mac")
        if not isinstance(mac, str):
            raise AuditChainBroken(f"The audit head (event #{seq}) carries no MAC: it was rewritten outside "
                                   "tokenvault, or last written by a tokenvault without keyed heads.",
                                   event_id=seq, hint=UNKEYED_HINT)
        if not _mac_matches(key, seq, digest, mac):
            raise AuditChainBroken(f"The audit head (event #{seq}) does not match its MAC: it was rewound or "
                                   "edited outside tokenvault.", event_id=seq, hint=HEAD_HINT)
    return seq, digest


def encode_head(seq: int, digest: str, key: bytes | None = None) -> str:
    """The head's stored value; keyed (with a MAC) when ``key`` is given."""
    if key is None:
        return json.dumps({"seq": seq, "hash": digest})
    return json.dumps({"seq": seq, "hash": digest, "mac": _mac(key, seq, digest)})


def missing_head(last_seq: int) -> AuditChainBroken:
    """The error for a trail whose events go up to ``last_seq`` (> 0) but whose head row is gone."""
    return AuditChainBroken(f"The audit head is missing while the trail holds {last_seq} events: it was deleted "
                            "outside tokenvault.", event_id=last_seq, hint=HEAD_HINT)


@record(frozen=True, slots=True)
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
    head: str


def next_link(head: str | None, actor: str, action: str, subject: str, details: Mapping[str, Any],
              now: datetime, key: bytes | None = None) -> AuditLink:
    """The event that follows the head's stored value ``head``: its sequence number, canonical details,
    previous hash and hash, and the new head value (keyed with ``key``). Pure; the caller holds the head's
    lock while it inserts the event. Raises :class:`AuditChainBroken` if ``key`` does not verify ``head``."""
    seq, prev = read_head(head, key)
    return link_after(seq, prev, actor, action, subject, details, now, key)


def link_after(seq: int, prev: str, actor: str, action: str, subject: str, details: Mapping[str, Any],
               now: datetime, key: bytes | None = None, *, head: bool = True) -> AuditLink:
    """The event that follows event ``seq`` whose hash is ``prev`` (:func:`read_head`'s pair, or the link before
    it). ``head=False``: the link's ``head`` is left empty, for a writer that appends several events in one
    transaction and writes the head once, at its end, as :func:`encode_head` of the last link's seq and hash
    (the value ``head=True`` would have given it, with the same ``key``)."""
    at = as_utc(now)
    body = encode_details(details)
    digest = audit_hash(seq + 1, prev, at, actor, action, subject, body)
    return AuditLink(seq=seq + 1, at=at, actor=actor, action=action, subject=subject, details=body,
                     prev_hash=prev, hash=digest, head=encode_head(seq + 1, digest, key) if head else "")


__all__ = ["AUDIT_HEAD", "GENESIS", "AuditLink", "audit_hash", "encode_details", "encode_head", "head_key",
           "link_after", "missing_head", "next_link", "read_head"]
