"""SHA-256 and HMAC-SHA-256 for the audit chain, key ids and fingerprints.

SHA-256 is CPython's built-in implementation (the module :mod:`hashlib` itself falls back to: ``_sha2`` from
Python 3.12, ``_sha256`` before), HMAC is RFC 2104 over it - what :class:`hmac.HMAC` computes when OpenSSL is
not there (``hmac.HMAC._init_old``: the key hashed when longer than a block, padded with zeros, XORed with
0x36 and 0x5C) - and a MAC is checked with :func:`hmac.compare_digest`'s constant-time comparison
(``_operator._compare_digest``). Both imported routes cost start-up that ``token reveal``/``exec`` need not
pay: :mod:`hashlib` and :mod:`hmac` load a second copy of libcrypto (CPython's ``_hashlib``, ~2.5 ms) next to
the one ``cryptography`` loads for AES-GCM, and ``cryptography``'s hashes check their algorithm against
``cryptography.hazmat.primitives.hashes``, which imports ``cryptography.utils`` and with it :mod:`typing`
and :mod:`warnings` (~3 ms in all). A Python without the built-in module uses :func:`hashlib.sha256`.
The digests are SHA-256's and HMAC's, whichever code computes them: ``tests/test_crypto_properties.py``
compares them with :mod:`hashlib`/:mod:`hmac` on generated keys (empty, shorter and longer than a block) and
data.
"""

from __future__ import annotations

import sys
from _operator import _compare_digest

try:  # by version: a module that is not there costs a search of sys.path
    if sys.version_info >= (3, 12):
        from _sha2 import sha256 as _sha256  # type: ignore[import-not-found,unused-ignore]
    else:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:  # a build without the built-in hashes
    from hashlib import sha256 as _sha256  # type: ignore[assignment,unused-ignore]

_BLOCK = 64  # SHA-256's block size, in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))  # translation tables, as hmac.py builds them
_OPAD = bytes(x ^ 0x5C for x in range(256))


def sha256(data: bytes) -> bytes:
    """SHA-256 of ``data``."""
    return bytes(_sha256(data).digest())


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA-256 of ``data`` under ``key`` (RFC 2104)."""
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = _sha256(key.translate(_IPAD))
    inner.update(data)
    outer = _sha256(key.translate(_OPAD))
    outer.update(inner.digest())
    return bytes(outer.digest())


def hmac_sha256_matches(key: bytes, data: bytes, mac: bytes) -> bool:
    """Whether ``mac`` is the HMAC-SHA-256 of ``data`` under ``key`` (compared in constant time)."""
    return bool(_compare_digest(hmac_sha256(key, data), mac))


__all__ = ["hmac_sha256", "hmac_sha256_matches", "sha256"]
