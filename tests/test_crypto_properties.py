"""Property-based tests of the crypto envelope (:mod:`meta_tokenvault.crypto`) with hypothesis.

The master key is held by the real ``env`` key provider (pure, no I/O), so the envelope is exercised
exactly as in production: AES-256-GCM data keys wrapped by the master key, both bound to the record's
associated data. Properties: round trip for any secret; every single-byte flip, truncation or extension
of a ciphertext or wrapped key fails with TamperedCiphertext (an IntegrityError, exit 4); a ciphertext
or wrapped key opened for another record fails; nonces and data keys are never reused.
"""

from __future__ import annotations

import base64
import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_tokenvault import crypto
from meta_tokenvault.adapters.keys_env import EnvKeyProvider
from meta_tokenvault.crypto import NONCE_BYTES, SealedSecret, open_sealed, open_secret, rewrap, seal, seal_secret
from meta_tokenvault.errors import IntegrityError, TamperedCiphertext, WrongMasterKey
from meta_tokenvault.types import Secret, SecretKind, SecretRef

# no example database in the repository, no flaky deadlines on a busy CI machine
PROPS = settings(deadline=None, database=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
TAG_BYTES = 16
HEADER_BYTES = 1 + NONCE_BYTES

keys = st.binary(min_size=32, max_size=32)
aads = st.binary(max_size=64)
plaintexts = st.binary(max_size=512)
secrets = st.text(min_size=1, max_size=300)  # any Unicode text (hypothesis' text() excludes lone surrogates)
refs = st.builds(SecretRef, kind=st.sampled_from(SecretKind), owner_id=st.integers(1, 2**31),
                 version=st.integers(1, 10_000), name=st.text(max_size=20))


def _provider(*extra: bytes) -> EnvKeyProvider:
    """The real env provider, holding a fresh current key (and ``extra`` previous keys)."""
    environ = {"TOKENVAULT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode()}
    if extra:
        environ["TOKENVAULT_MASTER_KEY_PREVIOUS"] = ",".join(base64.b64encode(k).decode() for k in extra)
    return EnvKeyProvider(environ)


PROVIDER = _provider()


def _flip(blob: bytes, index: int, mask: int) -> bytes:
    out = bytearray(blob)
    out[index] ^= mask
    return bytes(out)


def _damaged(data: st.DataObject, blob: bytes) -> bytes:
    """One of: a single byte flipped (any bit pattern), a truncation (to any shorter length), an extension."""
    how = data.draw(st.sampled_from(["flip", "truncate", "extend"]), label="damage")
    if how == "flip":
        index = data.draw(st.integers(0, len(blob) - 1), label="index")
        return _flip(blob, index, data.draw(st.integers(1, 255), label="mask"))
    if how == "truncate":
        return blob[: data.draw(st.integers(0, len(blob) - 1), label="length")]
    return blob + data.draw(st.binary(min_size=1, max_size=32), label="suffix")


# --------------------------------------------------------------------------- seal / open_sealed (one layer)
@PROPS
@given(key=keys, plaintext=plaintexts, aad=aads)
def test_seal_then_open_returns_the_plaintext_and_the_layout_is_fixed(key: bytes, plaintext: bytes, aad: bytes) -> None:
    blob = seal(key, plaintext, aad)
    assert open_sealed(key, blob, aad) == plaintext
    assert blob[:1] == b"\x01" and len(blob) == HEADER_BYTES + len(plaintext) + TAG_BYTES
    if len(plaintext) >= 8:
        assert plaintext not in blob


@PROPS
@given(key=keys, plaintext=plaintexts, aad=aads, data=st.data())
def test_any_flip_truncation_or_extension_of_a_sealed_blob_is_tampering(key: bytes, plaintext: bytes, aad: bytes,
                                                                       data: st.DataObject) -> None:
    blob = seal(key, plaintext, aad)
    with pytest.raises(TamperedCiphertext) as info:
        open_sealed(key, _damaged(data, blob), aad)
    assert isinstance(info.value, IntegrityError) and info.value.exit_code == 4


@PROPS
@given(key=keys, plaintext=plaintexts, aad=aads, other=aads)
def test_a_blob_opened_with_other_associated_data_is_tampering(key: bytes, plaintext: bytes, aad: bytes,
                                                               other: bytes) -> None:
    blob = seal(key, plaintext, aad)
    if other != aad:
        with pytest.raises(TamperedCiphertext):
            open_sealed(key, blob, other)


@PROPS
@given(key=keys, other=keys, plaintext=plaintexts, aad=aads)
def test_a_blob_opened_with_another_key_is_tampering(key: bytes, other: bytes, plaintext: bytes, aad: bytes) -> None:
    if other != key:
        with pytest.raises(TamperedCiphertext):
            open_sealed(other, seal(key, plaintext, aad), aad)


@PROPS
@given(key=st.binary(max_size=64).filter(lambda k: len(k) != 32))
def test_seal_refuses_a_key_that_is_not_256_bits(key: bytes) -> None:
    with pytest.raises(ValueError):
        seal(key, b"x", b"")


# --------------------------------------------------------------------------- the envelope (data key + master key)
@PROPS
@given(secret=secrets, ref=refs)
def test_seal_secret_then_open_secret_round_trips_any_text(secret: str, ref: SecretRef) -> None:
    sealed = seal_secret(PROVIDER, Secret(secret), ref)
    assert sealed.key_id == PROVIDER.current_key_id()
    assert open_secret(PROVIDER, sealed, ref).reveal() == secret
    assert repr(sealed) == f"SealedSecret(key_id='{sealed.key_id}')"  # the repr shows neither blob


FIXED_TEXT = ("The ciphertext / wrapped data key / secret is truncated or not in tokenvault's format. "
              "does not authenticate: it was edited, truncated or belongs to another record. "
              "is not valid text after decryption.")


@PROPS
@given(secret=secrets, ref=refs, part=st.sampled_from(["ciphertext", "wrapped_key"]), data=st.data())
def test_any_damage_to_the_ciphertext_or_the_wrapped_key_is_tampering(secret: str, ref: SecretRef, part: str,
                                                                      data: st.DataObject) -> None:
    sealed = seal_secret(PROVIDER, Secret(secret), ref)
    damaged = replace(sealed, **{part: _damaged(data, getattr(sealed, part))})
    with pytest.raises(TamperedCiphertext) as info:
        open_secret(PROVIDER, damaged, ref)
    assert info.value.exit_code == 4
    # the message is fixed text that never includes the secret (a secret that is a word of it proves nothing)
    assert len(secret) < 8 or secret in FIXED_TEXT or secret not in info.value.message


@PROPS
@given(secret=secrets, ref=refs, other=refs, part=st.sampled_from(["both", "ciphertext", "wrapped_key"]))
def test_an_envelope_opened_for_another_record_fails(secret: str, ref: SecretRef, other: SecretRef,
                                                     part: str) -> None:
    """Moving a row (or either half of it) onto another record — another kind, owner or version — never opens."""
    if other.associated_data() == ref.associated_data():
        return
    mine = seal_secret(PROVIDER, Secret(secret), ref)
    if part == "both":
        with pytest.raises(TamperedCiphertext):
            open_secret(PROVIDER, mine, other)
        return
    theirs = seal_secret(PROVIDER, Secret(secret), other)  # the same value, sealed for the other record
    swapped = replace(theirs, **{part: getattr(mine, part)})
    with pytest.raises(TamperedCiphertext):
        open_secret(PROVIDER, swapped, other)


@PROPS
@given(secret=secrets, ref=refs)
def test_a_provider_without_the_master_key_says_wrong_key_not_tampering(secret: str, ref: SecretRef) -> None:
    sealed = seal_secret(PROVIDER, Secret(secret), ref)
    with pytest.raises(WrongMasterKey) as info:
        open_secret(_provider(), sealed, ref)
    assert sealed.key_id in info.value.message and info.value.exit_code == 4


@PROPS
@given(secret=secrets, ref=refs)
def test_rewrap_keeps_the_ciphertext_and_opens_under_the_new_key_only(secret: str, ref: SecretRef) -> None:
    old_key, new_key = os.urandom(32), os.urandom(32)
    both = EnvKeyProvider({"TOKENVAULT_MASTER_KEY": base64.b64encode(new_key).decode(),
                           "TOKENVAULT_MASTER_KEY_PREVIOUS": base64.b64encode(old_key).decode()})
    sealed = SealedSecret(crypto.key_id_of(old_key), *_wrapped_under(old_key, secret, ref))
    moved = rewrap(both, sealed, ref, to_key_id=both.current_key_id())
    assert moved.ciphertext == sealed.ciphertext and moved.key_id == crypto.key_id_of(new_key)
    only_new = EnvKeyProvider({"TOKENVAULT_MASTER_KEY": base64.b64encode(new_key).decode()})
    assert open_secret(only_new, moved, ref).reveal() == secret
    with pytest.raises(WrongMasterKey):
        open_secret(only_new, sealed, ref)


def _wrapped_under(master: bytes, secret: str, ref: SecretRef) -> tuple[bytes, bytes]:
    provider = EnvKeyProvider({"TOKENVAULT_MASTER_KEY": base64.b64encode(master).decode()})
    sealed = seal_secret(provider, Secret(secret), ref)
    return sealed.wrapped_key, sealed.ciphertext


# --------------------------------------------------------------------------- uniqueness
@settings(deadline=None, database=None, max_examples=20)
@given(key=keys, plaintext=plaintexts, aad=aads)
def test_nonces_are_never_reused_for_the_same_key_and_plaintext(key: bytes, plaintext: bytes, aad: bytes) -> None:
    blobs = [seal(key, plaintext, aad) for _ in range(200)]
    nonces = {blob[1:HEADER_BYTES] for blob in blobs}
    assert len(nonces) == len(blobs) and all(len(n) == NONCE_BYTES for n in nonces)
    assert len(set(blobs)) == len(blobs)


def test_every_sealed_secret_gets_its_own_data_key_and_nonces() -> None:
    ref = SecretRef(SecretKind.TOKEN, 1, 1, "prod")
    sealed = [seal_secret(PROVIDER, Secret("EAAGsameTokenEveryTime1234"), ref) for _ in range(2000)]
    deks = {PROVIDER.unwrap(s.key_id, s.wrapped_key, ref.associated_data()) for s in sealed}
    nonces = {s.ciphertext[1:HEADER_BYTES] for s in sealed} | {s.wrapped_key[1:HEADER_BYTES] for s in sealed}
    assert len(deks) == len(sealed) and len(nonces) == 2 * len(sealed)
    assert len({s.ciphertext for s in sealed}) == len(sealed)


@PROPS
@given(a=keys, b=keys)
def test_key_ids_are_stable_distinct_and_reveal_nothing(a: bytes, b: bytes) -> None:
    assert crypto.key_id_of(a) == crypto.key_id_of(a) and len(crypto.key_id_of(a)) == 16
    assert (crypto.key_id_of(a) == crypto.key_id_of(b)) == (a == b)
    assert a.hex()[:16] != crypto.key_id_of(a)


@PROPS
@given(fp_key=keys, other_key=keys, secret=secrets, other=secrets)
def test_fingerprints_are_keyed_and_deterministic(fp_key: bytes, other_key: bytes, secret: str, other: str) -> None:
    fp = crypto.fingerprint(fp_key, Secret(secret))
    assert fp == crypto.fingerprint(fp_key, Secret(secret)) and len(fp) == 32
    assert (fp == crypto.fingerprint(fp_key, Secret(other))) == (secret == other)
    if other_key != fp_key:
        assert fp != crypto.fingerprint(other_key, Secret(secret))


# --------------------------------------------------------------------------- digests (meta_tokenvault.digest)
@PROPS
@given(key=st.binary(max_size=200), data=st.binary(max_size=2000), other=st.binary(max_size=64))
def test_digests_are_hashlibs_and_hmacs(key: bytes, data: bytes, other: bytes) -> None:
    # the audit chain, key ids and fingerprints stored before meta_tokenvault.digest (hashlib, hmac) stay valid
    import hashlib
    import hmac

    from meta_tokenvault import audit, digest

    assert digest.sha256(data) == hashlib.sha256(data).digest()
    mac = hmac.new(key, data, hashlib.sha256).digest()
    assert digest.hmac_sha256(key, data) == mac
    assert digest.hmac_sha256_matches(key, data, mac)
    assert digest.hmac_sha256_matches(key, data, other) == (other == mac)
    assert crypto.key_id_of(key) == hashlib.sha256(b"tokenvault-key-id\x00" + key).hexdigest()[:16]
    text = data.decode("utf-8", "replace")
    assert crypto.fingerprint(key, Secret(text or "x")) == hmac.new(
        key, (text or "x").encode(), hashlib.sha256).hexdigest()[:32]
    assert audit.head_key(key) == hmac.new(key, b"tokenvault audit head v1", hashlib.sha256).digest()
    stored = hmac.new(key, f"7:{data.hex()}".encode(), hashlib.sha256).hexdigest()
    assert audit.encode_head(7, data.hex(), key) == f'{{"seq": 7, "hash": "{data.hex()}", "mac": "{stored}"}}'
    assert audit.read_head(audit.encode_head(7, data.hex(), key), key) == (7, data.hex())


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


@PROPS
@given(details=st.dictionaries(st.text(max_size=12), _json_values | st.datetimes(), max_size=6),
       seq=st.integers(min_value=1), prev=st.text(max_size=64), actor=st.text(), action=st.text(), subject=st.text(),
       at=st.datetimes())
def test_audit_texts_are_json_dumps_texts(details: dict[str, object], seq: int, prev: str, actor: str, action: str,
                                          subject: str, at: object) -> None:
    # the details and the canonical text hashed are written by encoders made once: the texts json.dumps writes
    # with the same options, so every stored event still verifies (any text: escapes, U+2028, astral planes)
    import hashlib
    import json
    from datetime import datetime

    from meta_tokenvault import audit

    assert isinstance(at, datetime)
    body = audit.encode_details(details)
    assert body == json.dumps(details, sort_keys=True, separators=(",", ":"), default=str)
    canonical = json.dumps([seq, prev, at.isoformat(timespec="microseconds"), actor, action, subject, body],
                           separators=(",", ":"))
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert audit.audit_hash(seq, prev, at, actor, action, subject, body) == expected


@pytest.mark.parametrize("mac", ["", "zz", "AB" * 32, " " + "ab" * 32, "é" * 64, "00" * 31], ids=[
    "empty", "not-hex", "upper-case", "space", "non-ascii", "short"])
def test_a_head_mac_that_is_not_the_macs_own_text_is_tampering(mac: str) -> None:
    import json

    from meta_tokenvault import audit
    from meta_tokenvault.errors import AuditChainBroken

    key = b"k" * 32
    good = json.loads(audit.encode_head(3, "ab" * 32, key))
    if mac == "AB" * 32:  # the right MAC in upper case: still not the text tokenvault wrote
        mac = good["mac"].upper()
    with pytest.raises(AuditChainBroken):
        audit.read_head(json.dumps({**good, "mac": mac}), key)


def test_aes_gcm_is_cryptographys_public_class() -> None:
    # taken from the Rust bindings (start-up): the very class cryptography's public module exports
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    assert crypto.aesgcm() is AESGCM
