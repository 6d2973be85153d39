"""The master key: ``init`` (create it and the fingerprint key) and rotation (a new key, every data key
re-wrapped under it, old keys retired).

Crash-safe and resumable (see :func:`rotate_master_key`); guarded by the ``keys-rotate`` lease.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .. import crypto
from ..context import FINGERPRINT_PURPOSE, FP_AAD, test_crash
from ..errors import Conflict, IntegrityError, InvalidInput, VaultError
from ..leases import lease_owner, take_lease
from ..types import SecretKind, SecretRef

if TYPE_CHECKING:
    from ..context import VaultContext

KEY_ROTATION_LEASE = "keys-rotate"
KEY_ROTATION_LEASE_TTL = timedelta(minutes=10)


@dataclass(frozen=True)
class KeyRotationResult:
    new_key_id: str
    rewrapped: int
    retired: list[str] = field(default_factory=list)


def initialize(ctx: VaultContext, provider_name: str) -> dict[str, Any]:
    """Create the master key (if the provider has none) and the fingerprint key. Idempotent.

    Never replaces an existing key: a second run reports what exists. On an existing store the
    configured provider must hold the key the store was made with (:class:`WrongMasterKey`
    otherwise), and that is checked *before* anything is created, so a wrong provider or key
    (a second host, another keyring service) never leaves a stray new master key behind.
    Returns ``{"created": bool, "key_id": ..., "key_provider": ...}``.
    """
    existing = ctx.store.get_wrapped_key(FINGERPRINT_PURPOSE)
    if existing is not None:
        ctx.fingerprint_key()  # proves the configured key opens this store (WrongMasterKey otherwise)
    created = False
    if not ctx.keys.has_key():
        ctx.keys.create_key()
        created = True
    key_id = ctx.keys.current_key_id()
    if existing is None:
        wrapped_id, wrapped = ctx.keys.wrap(crypto.new_key(), FP_AAD)
        ctx.store.put_wrapped_key(FINGERPRINT_PURPOSE, wrapped_id, wrapped)
        ctx.store.set_setting("key_provider", provider_name)
        ctx.audit("init", "store", key_provider=provider_name, key_id=key_id)
        created = True
    return {"created": created, "key_id": key_id, "key_provider": provider_name}


def rotate_master_key(ctx: VaultContext, *, progress: Callable[[int, int], None] | None = None,
                      stop_after: int | None = None) -> KeyRotationResult:
    """Make a new master key current and re-wrap every data key under it; retire old keys.

    Crash-safe: each blob is re-wrapped in its own compare-and-swap transaction and old keys are
    retired only when nothing references them, so an interrupted run leaves every secret readable
    with the old or the new key; running again finishes the job. ``stop_after`` (tests) simulates
    an interruption after that many blobs.

    Before anything is created the configured key must open the store (:class:`WrongMasterKey`)
    and the ``keys-rotate`` lease must be free (:class:`Conflict`, exit 8): two concurrent runs
    could otherwise retire each other's new key. Taking the lease is also the first write, so a
    read-only database fails here (exit 5) before a new key exists.
    """
    ctx.fingerprint_key()
    owner = _lock_key_rotation(ctx)
    try:
        return _rotate_master_key(ctx, progress, stop_after, owner)
    finally:
        with contextlib.suppress(VaultError):  # the error that stopped us is the one to report
            ctx.store.release_lease(KEY_ROTATION_LEASE, owner)


def _lock_key_rotation(ctx: VaultContext) -> str:
    owner = lease_owner()
    taken, holder = take_lease(ctx.store, KEY_ROTATION_LEASE, owner, ctx.now(), KEY_ROTATION_LEASE_TTL)
    if taken:
        return owner
    until = f" (lease until {holder[1]:%H:%M:%S} UTC)" if holder else ""
    raise Conflict(f"Another `tokenvault keys rotate` is under way{until}; nothing was changed.",
                   hint="Wait for it to finish; if it crashed on another host, run `tokenvault keys rotate` "
                        "again once its lease expires.")


def _record_names(ctx: VaultContext) -> dict[tuple[bool, int], str]:
    """(is a token?, owner id) -> the name its envelopes are bound to (token label / business name)."""
    names: dict[tuple[bool, int], str] = {(True, t.id): t.label for t in ctx.store.list_tokens()}
    names.update({(False, b.id): b.name for b in ctx.store.list_businesses()})
    return names


def _rotate_master_key(ctx: VaultContext, progress: Callable[[int, int], None] | None, stop_after: int | None,
                       owner: str) -> KeyRotationResult:
    old_ids = set(ctx.store.key_ids_in_use())
    target = _resume_or_create_key(ctx, old_ids)
    done = 0
    total_pending = len(ctx.store.blobs_not_under(target, limit=1_000_000))
    names = _record_names(ctx)
    while True:
        batch = ctx.store.blobs_not_under(target)
        if not batch:
            break
        ctx.store.acquire_lease(KEY_ROTATION_LEASE, owner, ctx.now(), KEY_ROTATION_LEASE_TTL)  # renew
        for blob in batch:
            if stop_after is not None and done >= stop_after:
                raise KeyboardInterrupt("simulated interruption")
            kind = SecretKind(blob.kind)
            name = names.get((kind is SecretKind.TOKEN, blob.owner_id), "")
            ref = SecretRef(kind, blob.owner_id, blob.version, name)
            try:
                sealed = crypto.rewrap(ctx.keys, crypto.SealedSecret(blob.key_id, blob.wrapped_key,
                                                                      blob.ciphertext), ref, to_key_id=target)
            except IntegrityError as exc:  # name the record: the user must restore or remove it
                raise type(exc)(
                    f"{exc.message} Record: {blob.kind} #{blob.owner_id} version {blob.version}; keys rotate "
                    f"stopped there ({done} re-wrapped so far, every other secret stays readable).",
                    hint="Restore that record from a backup (or revoke and re-import its token), then run "
                         "`tokenvault keys rotate` again to finish.") from None
            ctx.store.rewrap_blob(blob.id, blob.key_id, sealed.key_id, sealed.wrapped_key)
            done += 1
            test_crash(f"keys.rewrapped:{done}")
            if progress:
                progress(done, total_pending)
    stored = ctx.store.get_wrapped_key(FINGERPRINT_PURPOSE)
    if stored is not None and stored[0] != target:
        fp_key = ctx.keys.unwrap(stored[0], stored[1], FP_AAD)
        new_id, wrapped = ctx.keys.wrap(fp_key, FP_AAD, key_id=target)
        ctx.store.put_wrapped_key(FINGERPRINT_PURPOSE, new_id, wrapped, expected_key_id=stored[0])
        test_crash("keys.fingerprint")
    retired = []
    still_used = ctx.store.key_ids_in_use()
    for key_id in ctx.keys.key_ids():
        if key_id != target and key_id not in still_used:
            ctx.keys.retire_key(key_id)
            retired.append(key_id)
            test_crash("keys.retired")
    ctx.store.set_setting("key_rotation_target", "")
    ctx.audit("keys.rotate", "master-key", new_key_id=target, rewrapped=done, retired=retired)
    return KeyRotationResult(new_key_id=target, rewrapped=done, retired=retired)


def _resume_or_create_key(ctx: VaultContext, in_use: set[str]) -> str:
    pending = ctx.store.get_setting("key_rotation_target")
    if pending and pending in ctx.keys.key_ids():
        return pending  # an interrupted rotation: finish it with the key it already made
    current = ctx.keys.current_key_id() if ctx.keys.has_key() else None
    if current is not None and in_use and current not in in_use:
        # The provider's current key is newer than anything used (env provider after the user set a
        # new TOKENVAULT_MASTER_KEY, or a create that happened before a crash): use it.
        target = current
    else:
        # Transit keeps one named key with versions: a new version is its way of making a new key.
        rotate_master = getattr(ctx.keys, "rotate_master", None)
        target = rotate_master() if callable(rotate_master) else ctx.keys.create_key()
        if target == current:  # the env provider cannot make keys: it returned the one in use
            raise InvalidInput(
                f"The {ctx.keys.name} key provider has no new master key to rotate to; nothing was changed.",
                hint="Generate a new key, export it as TOKENVAULT_MASTER_KEY, move the current one to "
                     "TOKENVAULT_MASTER_KEY_PREVIOUS, then run `tokenvault keys rotate` (docs/key-providers.md).")
        test_crash("keys.created")
    ctx.store.set_setting("key_rotation_target", target)
    test_crash("keys.target")
    return target

__all__ = ["KEY_ROTATION_LEASE", "KeyRotationResult", "initialize", "rotate_master_key"]
