"""SHA-256 and HMAC-SHA-256, through ``cryptography`` (the OpenSSL its AES-GCM already runs on).

The audit chain, key ids and fingerprints hash here. :mod:`hashlib` would load a second copy of libcrypto
(CPython's ``_hashlib``, ~2.5 ms of start-up on every ``token reveal``/``exec``) next to the one
``cryptography`` has loaded to open the sealed blob anyway. The digests are SHA-256's, whichever library
computes them (``tests/test_crypto_properties.py`` compares them with :mod:`hashlib`/:mod:`hmac`).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.hashes import SHA256, Hash
from cryptography.hazmat.primitives.hmac import HMAC

_SHA256 = SHA256()


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    h = Hash(_SHA256)
    h.update(data)
    return h.finalize()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 of ``data`` under ``key``."""
    h = HMAC(key, _SHA256)
    h.update(data)
    return h.finalize()


def hmac_sha256_matches(key: bytes, data: bytes, mac: bytes) -> bool:
    """Whether ``mac`` is the HMAC-SHA-256 of ``data`` under ``key`` (compared in constant time)."""
    h = HMAC(key, _SHA256)
    h.update(data)
    try:
        h.verify(mac)
    except InvalidSignature:
        return False
    return True


__all__ = ["hmac_sha256", "hmac_sha256_matches", "sha256"]
