"""What every use case shares: the store, the ports, the clock and the audit trail.

Use cases (``meta_tokenvault.usecases.*``) take a :class:`VaultContext` and talk to ports only; none of
them imports :mod:`meta_tokenvault.service`, so the dependency graph stays a tree::

    service.TokenManager (facade) ──> usecases.* ──> context.VaultContext ──> ports / store

The context also holds the few helpers several use cases need (business secrets, the version
fields of a stored token, revoking at Meta), so no use case has to reach into another for them.
Nothing here ever passes a secret value to the store, the audit trail or an exception.
"""

from __future__ import annotations

import _thread  # threading.Lock itself; threading (~1 ms of start-up) only where threads run
import os
from collections.abc import Callable
from datetime import datetime

from . import crypto
from .audit import head_key as audit_head_key
from .errors import NotFound, TokenInvalid, VaultError
from .ports.clock import Clock, SystemClock
from .types import BusinessRecord, Secret, SecretKind, SecretRef, TokenSource, TokenStatus

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

    from .adapters.store_sql import SqlStore
    from .policy import Renewal
    from .ports.graph import AppCredentials, GraphApi, TokenDebugInfo
    from .ports.keys import KeyProvider
    from .ports.notify import Notifier
    from .ports.secrets import SecretBackend

FINGERPRINT_PURPOSE = "fingerprint"
FP_AAD = b"tokenvault/v1|internal|fingerprint-key"


class VaultContext:
    """The ports and the clock, built once by :func:`meta_tokenvault.wiring.build_manager` (or by a test).

    ``graph`` is a factory: the Graph client (and httpx) is only built when a use case first calls Meta.
    """

    def __init__(
        self,
        *,
        store: SqlStore,
        secrets: SecretBackend,
        keys: KeyProvider,
        graph: Callable[[], GraphApi] | None = None,
        notifier: Notifier | None = None,
        clock: Clock | None = None,
        actor: str = "tokenvault",
        renewal: Renewal | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.keys = keys
        self.graph_factory = graph
        self._graph: GraphApi | None = None
        self._graph_lock = _thread.allocate_lock()  # bulk rotation's threads ask for it at the same moment
        self._notifier = notifier
        self.clock: Clock = clock or SystemClock()
        self.actor = actor
        self._renewal = renewal
        self._fp_key: bytes | None = None
        self._head_key: tuple[bytes, bytes] | None = None  # (the fingerprint key, the head key derived from it)

    # the defaults of the two below are built on first use: the reads (the fast path) never notify nor
    # renew, and need not import their modules
    @property
    def notifier(self) -> Notifier:
        """Where reminders and alerts go (nowhere unless one is configured)."""
        if self._notifier is None:
            from .ports.notify import NullNotifier

            self._notifier = NullNotifier()
        return self._notifier

    @notifier.setter
    def notifier(self, notifier: Notifier) -> None:
        self._notifier = notifier

    @property
    def renewal(self) -> Renewal:
        """When run-due refreshes and verifies (:attr:`meta_tokenvault.config.Settings.renewal`)."""
        if self._renewal is None:
            from .policy import Renewal

            self._renewal = Renewal()
        return self._renewal

    @renewal.setter
    def renewal(self, renewal: Renewal) -> None:
        self._renewal = renewal

    # ------------------------------------------------------------------ ports
    @property
    def graph(self) -> GraphApi:
        """The Graph API adapter, built on first use (keeps httpx out of commands that don't need it); one per
        context, whichever threads ask (its rate gate and pacer are shared by all of them)."""
        graph = self._graph
        if graph is None:
            with self._graph_lock:
                if self._graph is None:
                    if self.graph_factory is None:
                        raise VaultError("No Graph API client is configured.")
                    self._graph = self.graph_factory()
                graph = self._graph
        return graph

    def with_graph(self, graph: GraphApi) -> VaultContext:
        """This context (same store, ports, clock) with another Graph client, e.g. one that bounds how many calls
        are in flight (:class:`BoundedGraph`)."""
        import copy

        clone = copy.copy(self)
        clone._graph, clone._graph_lock = graph, _thread.allocate_lock()
        return clone

    def now(self) -> datetime:
        return self.clock.now()

    def close(self) -> None:
        """Release the store's connections and the Graph client (its sockets). Idempotent."""
        graph, self._graph = self._graph, None
        close = getattr(graph, "close", None)
        if callable(close):
            close()
        self.store.close()

    def audit(self, action: str, subject: str, **details: Any) -> None:
        """Append an event to the hash-chained trail; the head is MAC'ed with :meth:`audit_head_key`."""
        self.store.append_audit(self.actor, action, subject, details, self.now(), head_key=self.audit_head_key())

    def audit_head_key(self) -> bytes | None:
        """The audit head's MAC key (:func:`meta_tokenvault.audit.head_key`); None before init made the
        fingerprint key."""
        try:
            fp_key = self.fingerprint_key()
        except NotFound:
            return None
        derived = self._head_key
        if derived is None or derived[0] is not fp_key:  # derived once per fingerprint key (every audit event asks)
            derived = self._head_key = (fp_key, audit_head_key(fp_key))
        return derived[1]

    # ------------------------------------------------------------------ fingerprints
    def fingerprint(self, secret: Secret) -> str:
        """The keyed, non-reversible fingerprint stored next to every token version."""
        return crypto.fingerprint(self.fingerprint_key(), secret)

    def fingerprint_key(self) -> bytes:
        """The store's fingerprint key; unwrapping it also proves the master key opens this store.

        Raises :class:`NotFound` (no ``init`` yet) or :class:`WrongMasterKey`."""
        if self._fp_key is None:
            stored = self.store.get_wrapped_key(FINGERPRINT_PURPOSE)
            if stored is None:
                raise NotFound("This store has no fingerprint key.", hint="Run `tokenvault init`.")
            key_id, wrapped = stored
            self._fp_key = self.keys.unwrap(key_id, wrapped, FP_AAD)
        return self._fp_key

    # ------------------------------------------------------------------ business secrets
    def app_credentials(self, business: BusinessRecord) -> AppCredentials:
        from .ports.graph import AppCredentials

        secret = self.secrets.get(self.business_secret_ref(business, SecretKind.APP_SECRET))
        return AppCredentials(app_id=business.app_id, app_secret=secret)

    def admin_token(self, business: BusinessRecord) -> Secret:
        return self.secrets.get(self.business_secret_ref(business, SecretKind.ADMIN_TOKEN))

    def business_secret_ref(self, business: BusinessRecord, kind: SecretKind, version: int | None = None) -> SecretRef:
        """Where the business's app secret / admin token lives: its current version unless ``version``."""
        number = version if version is not None else self.business_secret_version(business, kind)
        return SecretRef(kind, business.id, number, business.name)

    def business_secret_version(self, business: BusinessRecord, kind: SecretKind) -> int:
        """The current version (1 until a replacement made a newer one)."""
        raw = self.store.get_setting(business_secret_setting(business, kind))
        return int(raw) if raw and raw.isdigit() else 1

    # ------------------------------------------------------------------ token versions
    def version_fields(self, secret: Secret, source: TokenSource, prov: dict[str, Any],
                       status: TokenStatus = TokenStatus.ACTIVE) -> dict[str, Any]:
        """The metadata row of a new token version (fingerprint and last four characters, never the token)."""
        return {
            "status": status, "source": source, "system_user_id": prov["system_user_id"],
            "app_id": prov["app_id"], "scopes": list(prov["scopes"]), "waba_ids": list(prov["waba_ids"]),
            "fingerprint": prov["fingerprint"], "last4": secret.last4, "created_at": self.now(),
            "expires_at": prov.get("expires_at"), "verified_at": prov.get("verified_at"),
            "debug_summary": prov.get("debug_summary") or {}, "backend": self.secrets.name,
            "data_access_expires_at": prov.get("data_access_expires_at"),
        }

    @staticmethod
    def backend_metadata(biz: BusinessRecord, prov: dict[str, Any]) -> dict[str, str]:
        """Provenance kept next to the ciphertext in the secret backend (Vault KV custom metadata)."""
        return {
            "business": biz.name, "business_id": biz.business_id, "system_user_id": str(prov["system_user_id"]),
            "app_id": str(prov["app_id"]), "scopes": ",".join(prov["scopes"]), "waba_ids": ",".join(prov["waba_ids"]),
            "fingerprint": str(prov["fingerprint"]),
        }

    def discard(self, ref: SecretRef) -> None:
        """Destroy ``ref`` in the secret backend, best effort (the original error is the one to report)."""
        try:
            self.secrets.destroy(ref)
        except VaultError:
            pass

    # ------------------------------------------------------------------ Meta
    def revoke_at_meta(self, biz: BusinessRecord, secret: Secret, caller: Secret | None = None, *,
                       app: AppCredentials | None = None, admin: Secret | None = None) -> None:
        """Revoke ``secret`` at Meta; succeed when Meta no longer accepts it.

        A 190 (TokenInvalid) answer does not say *which* token is invalid, the revoked one or the caller,
        so it is settled with debug_token (app credentials, no caller): an invalid ``secret`` means the goal
        is reached; a valid one is retried once with the business admin token as the caller. ``app`` and
        ``admin``: the business's, when the caller has them already (bulk rotation reads them once).
        """
        app = app or self.app_credentials(biz)
        callers = [caller or secret]
        admin = admin or self.admin_token(biz)
        if admin not in callers:
            callers.append(admin)
        for attempt in callers:
            try:
                self.graph.revoke_token(secret, app, attempt)
                return
            except TokenInvalid:
                if not self.graph.debug_token(secret, app).is_valid:
                    return  # already revoked or expired at Meta: done
        raise TokenInvalid(f"Meta refused to revoke a token of {biz.name}: every caller token was refused, "
                           "and the token still works.",
                           hint="Replace the business admin token (`tokenvault business set-admin-token`), "
                                "then retry; or revoke the token in Business Settings.")


class BoundedGraph:
    """A Graph client through which at most ``limit`` calls are in flight at once, whatever the number of threads:
    work that spends part of its time on local commits (rotations) runs more threads than calls, and the
    network still sees ``limit`` concurrent calls."""

    def __init__(self, graph: GraphApi, limit: int) -> None:
        import threading

        self._graph = graph
        self._slots = threading.BoundedSemaphore(max(1, limit))

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._graph, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def bounded(*args: Any, **kwargs: Any) -> Any:
            with self._slots:
                return attr(*args, **kwargs)
        return bounded

    def __repr__(self) -> str:
        return f"BoundedGraph({self._graph!r})"


def business_secret_setting(business: BusinessRecord, kind: SecretKind) -> str:
    """The settings key holding the current version of a business secret."""
    return f"business_secret_version:{business.id}:{kind.value}"


def debug_summary(info: TokenDebugInfo) -> dict[str, Any]:
    """What debug_token said, as stored in the metadata DB (never the token)."""
    return {
        "is_valid": info.is_valid, "app_id": info.app_id, "user_id": info.user_id, "type": info.type,
        "scopes": list(info.scopes), "waba_ids": list(info.waba_ids),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "issued_at": info.issued_at.isoformat() if info.issued_at else None, "error": info.error_message,
        "data_access_expires_at": info.data_access_expires_at.isoformat() if info.data_access_expires_at else None,
        "error_code": info.error_code, "error_subcode": info.error_subcode,
    }


def test_crash(point: str) -> None:
    """Crash tests: ``TOKENVAULT_TEST_CRASH_AFTER=<point>`` SIGKILLs this process right after ``point``
    (e.g. ``keys.rewrapped:2``); ``TOKENVAULT_TEST_CRASH_SIGNAL=INT`` sends SIGINT instead (a Ctrl-C).
    Honoured only with ``TOKENVAULT_TEST_MODE=1``."""
    if os.environ.get("TOKENVAULT_TEST_MODE") == "1" and os.environ.get("TOKENVAULT_TEST_CRASH_AFTER") == point:
        import signal

        sig = signal.SIGINT if os.environ.get("TOKENVAULT_TEST_CRASH_SIGNAL") == "INT" else signal.SIGKILL
        os.kill(os.getpid(), sig)


__all__ = ["FINGERPRINT_PURPOSE", "FP_AAD", "BoundedGraph", "VaultContext", "business_secret_setting", "debug_summary",
           "test_crash"]
