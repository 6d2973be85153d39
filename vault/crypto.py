"""AES-256-GCM sealing with associated data, and the envelope (data key + master key).

Pure functions over bytes; no I/O. The envelope design:

* every sealed secret has its own random 256-bit data key (DEK);
* the secret is sealed with the DEK, associated data = the record it belongs to
  (:meth:`meta_tokenvault.types.SecretRef.associated_data`), so an edited, truncated or swapped
  row fails to open;
* the DEK is *wrapped* by a master key held by a :class:`~meta_tokenvault.ports.keys.KeyProvider`
  (keyring, file, env, Vault Transit) with the same associated data; the wrapped DEK
  records the master key's id, so ``keys rotate`` re-wraps DEKs and never rewrites
  the secret's ciphertext.
"""

from __future__ import annotations

import os

from .digest import hmac_sha256, sha256
from .errors import TamperedCiphertext
from .records import field, record

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from .ports.keys import KeyProvider
    from .types import Secret, SecretRef

KEY_BYTES = 32
NONCE_BYTES = 12
_FORMAT = b"\x01"  # version byte of the sealed layout: 0x01 | nonce(12) | ciphertext+tag


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def key_id_of(key: bytes) -> str:
    """A stable, non-reversible id for a master key (lets us say "wrong key" precisely)."""
    return sha256(b"tokenvault-key-id\x00" + key).hex()[:16]


def aesgcm() -> type[AESGCM]:
    """cryptography's ``AESGCM`` class. Taken from its Rust bindings, where
    ``cryptography.hazmat.primitives.ciphers.aead`` takes it too (``AESGCM = rust_openssl.aead.AESGCM``: the
    same class, which a test checks), without importing ``cryptography.hazmat.primitives.ciphers``' other
    modules (~1.3 ms of every ``token reveal``); from the public module when the bindings differ."""
    try:
        from cryptography.hazmat.bindings._rust import openssl

        cls: type[AESGCM] = openssl.aead.AESGCM
    except (ImportError, AttributeError):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM as cls
    return cls


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """Encrypt ``plaintext`` with AES-256-GCM under ``key``, binding ``aad``. Fresh 96-bit nonce."""
    if len(key) != KEY_BYTES:
        raise ValueError("AES-256-GCM needs a 32-byte key")
    nonce = os.urandom(NONCE_BYTES)
    return _FORMAT + nonce + aesgcm()(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes, *, what: str = "ciphertext") -> bytes:
    """Decrypt a :func:`seal` blob. Raises :class:`TamperedCiphertext` if it does not authenticate."""
    if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != _FORMAT:
        raise TamperedCiphertext(f"The {what} is truncated or not in tokenvault's format.")
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return aesgcm()(key).decrypt(nonce, body, aad)
    except Exception as exc:
        from cryptography.exceptions import InvalidTag  # only now: it imports typing (start-up)

        if not isinstance(exc, InvalidTag):
            raise
        raise TamperedCiphertext(
            f"The {what} does not authenticate: it was edited, truncated or belongs to another record."
        ) from None


@record(frozen=True, slots=True)
class SealedSecret:
    """A secret at rest: which master key wrapped the DEK, the wrapped DEK, the ciphertext."""

    key_id: str
    wrapped_key: bytes = field(repr=False)
    ciphertext: bytes = field(repr=False)


def seal_secret(provider: KeyProvider, secret: Secret, ref: SecretRef) -> SealedSecret:
    """Seal ``secret`` for record ``ref`` under a fresh DEK wrapped by the provider's current key."""
    aad = ref.associated_data()
    dek = new_key()
    ciphertext = seal(dek, secret.reveal().encode("utf-8"), aad)
    key_id, wrapped = provider.wrap(dek, aad)
    return SealedSecret(key_id=key_id, wrapped_key=wrapped, ciphertext=ciphertext)


def open_secret(provider: KeyProvider, sealed: SealedSecret, ref: SecretRef) -> Secret:
    """Open a sealed secret for record ``ref``.

    Raises :class:`~meta_tokenvault.errors.WrongMasterKey` when the provider does not hold the key
    that wrapped the DEK, :class:`TamperedCiphertext` when either layer fails to authenticate.
    """
    from .types import Secret

    aad = ref.associated_data()
    dek = provider.unwrap(sealed.key_id, sealed.wrapped_key, aad)
    plaintext = open_sealed(dek, sealed.ciphertext, aad)
    try:
        return Secret(plaintext.decode("utf-8"))
    except UnicodeDecodeError:  # authenticated but not text: only possible with a forged key
        raise TamperedCiphertext("The secret is not valid text after decryption.") from None


def rewrap(provider: KeyProvider, sealed: SealedSecret, ref: SecretRef, *, to_key_id: str) -> SealedSecret:
    """Re-wrap the DEK of ``sealed`` under ``to_key_id``; the ciphertext is unchanged."""
    aad = ref.associated_data()
    dek = provider.unwrap(sealed.key_id, sealed.wrapped_key, aad)
    new_id, wrapped = provider.wrap(dek, aad, key_id=to_key_id)
    return SealedSecret(key_id=new_id, wrapped_key=wrapped, ciphertext=sealed.ciphertext)


def fingerprint(fingerprint_key: bytes, secret: Secret) -> str:
    """A keyed, non-reversible fingerprint of a secret (HMAC-SHA256, 128 bits, hex)."""
    return hmac_sha256(fingerprint_key, secret.reveal().encode("utf-8")).hex()[:32]
