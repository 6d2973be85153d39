"""TokenManager: every use case of tokenvault, talking to ports only.

The CLI and the Python API call these methods; adapters are chosen by :mod:`meta_tokenvault.wiring`.
Each method states what it returns, what it raises (always :class:`~meta_tokenvault.errors.VaultError`
subclasses) and what it changes. Every change is recorded in the audit trail; no secret value
is ever passed to the store, the audit trail or an exception.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from . import crypto
from .errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidInput,
    InvalidRequest,
    NotFound,
    TokenInvalid,
    VaultError,
)
from .ports.clock import Clock, SystemClock
from .ports.notify import Notifier, NullNotifier
from .types import (
    AuditEventRecord,
    BusinessRecord,
    Secret,
    SecretKind,
    SecretRef,
    SystemUserRecord,
    TokenRecord,
    TokenSource,
    TokenStatus,
)

if TYPE_CHECKING:
    from .adapters.store_sql import ReminderRecord, SqlStore
    from .minting import SystemUserView
    from .ports.graph import AppCredentials, GraphApi, TokenDebugInfo
    from .ports.keys import KeyProvider
    from .ports.secrets import SecretBackend
    from .reminders import RunDueReport
    from .rotation import RotationOutcome

FINGERPRINT_PURPOSE = "fingerprint"
_FP_AAD = b"tokenvault/v1|internal|fingerprint-key"
LABEL_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
USABLE = (TokenStatus.ACTIVE,)
KEY_ROTATION_LEASE = "keys-rotate"
KEY_ROTATION_LEASE_TTL = timedelta(minutes=10)


def validate_label(label: str, what: str = "label") -> str:
    """Labels are 1-128 chars of letters, digits, '-', '_' and '.', not starting with '.' or '-'."""
    if not label or len(label) > 128 or not set(label) <= LABEL_CHARS or label[0] in ".-":
        raise InvalidInput(
            f"Invalid {what} {label!r}.",
            hint="Use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit (e.g. prod-whatsapp).",
        )
    return label


def clean_token(raw: str) -> Secret:
    """Turn what was read from stdin/prompt into a Secret: strip whitespace, refuse empty or multi-part input."""
    value = raw.strip()
    if not value:
        raise InvalidInput("No token was given: the input was empty or only whitespace.",
                           hint="Pipe the token on stdin (e.g. `pbpaste | tokenvault token import ...`) "
                                "or type it at the hidden prompt.")
    if any(ch.isspace() for ch in value):
        raise InvalidInput("The token contains whitespace; it looks like more than one value was pasted.",
                           hint="Paste exactly one token, on one line.")
    if not value.isprintable():
        raise InvalidInput("The token contains control characters.", hint="Paste exactly one token, on one line.")
    return Secret(value)


@dataclass(frozen=True)
class DoctorCheck:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class KeyRotationResult:
    new_key_id: str
    rewrapped: int
    retired: list[str] = field(default_factory=list)


class TokenManager:
    """The service. Construct through :func:`meta_tokenvault.wiring.build_manager`; tests pass fakes or real adapters."""

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
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.keys = keys
        self._graph_factory = graph
        self._graph: GraphApi | None = None
        self._graph_lock = threading.Lock()  # bulk rotation's threads ask for it at the same moment
        self.notifier: Notifier = notifier or NullNotifier()
        self.clock: Clock = clock or SystemClock()
        self.actor = actor
        self._fp_key: bytes | None = None

    # ------------------------------------------------------------------ plumbing
    @property
    def graph(self) -> GraphApi:
        """The Graph API adapter, built on first use (keeps httpx out of commands that don't need it); one per
        manager, whichever threads ask (its rate gate and pacer are shared by all of them)."""
        graph = self._graph
        if graph is None:
            with self._graph_lock:
                if self._graph is None:
                    if self._graph_factory is None:
                        raise VaultError("No Graph API client is configured.")
                    self._graph = self._graph_factory()
                graph = self._graph
        return graph

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
        self.store.append_audit(self.actor, action, subject, details, self.now())

    def fingerprint(self, secret: Secret) -> str:
        return crypto.fingerprint(self._fingerprint_key(), secret)

    def _fingerprint_key(self) -> bytes:
        if self._fp_key is None:
            stored = self.store.get_wrapped_key(FINGERPRINT_PURPOSE)
            if stored is None:
                raise NotFound("This store has no fingerprint key.", hint="Run `tokenvault init`.")
            key_id, wrapped = stored
            self._fp_key = self.keys.unwrap(key_id, wrapped, _FP_AAD)
        return self._fp_key

    # ------------------------------------------------------------------ init
    def initialize(self, provider_name: str) -> dict[str, Any]:
        """Create the master key (if the provider has none) and the fingerprint key. Idempotent.

        Never replaces an existing key: a second run reports what exists. On an existing store the
        configured provider must hold the key the store was made with (:class:`WrongMasterKey`
        otherwise), and that is checked *before* anything is created, so a wrong provider or key
        (a second host, another keyring service) never leaves a stray new master key behind.
        Returns ``{"created": bool, "key_id": ..., "key_provider": ...}``.
        """
        existing = self.store.get_wrapped_key(FINGERPRINT_PURPOSE)
        if existing is not None:
            self._fingerprint_key()  # proves the configured key opens this store (WrongMasterKey otherwise)
        created = False
        if not self.keys.has_key():
            self.keys.create_key()
            created = True
        key_id = self.keys.current_key_id()
        if existing is None:
            wrapped_id, wrapped = self.keys.wrap(crypto.new_key(), _FP_AAD)
            self.store.put_wrapped_key(FINGERPRINT_PURPOSE, wrapped_id, wrapped)
            self.store.set_setting("key_provider", provider_name)
            self.audit("init", "store", key_provider=provider_name, key_id=key_id)
            created = True
        return {"created": created, "key_id": key_id, "key_provider": provider_name}

    # ------------------------------------------------------------------ businesses
    def add_business(self, name: str, business_id: str, app_id: str, app_secret: Secret,
                     admin_token: Secret) -> BusinessRecord:
        """Register a Business Manager and its app; the app secret and admin token are stored encrypted.

        Raises :class:`WrongMasterKey` before anything is written when the configured master key does
        not open this store (otherwise the two secrets would be sealed under a key nobody else holds).
        """
        validate_label(name, "business name")
        for what, value in (("business id", business_id), ("app id", app_id)):
            if not value.isdigit():
                raise InvalidInput(f"The {what} must be digits, got {value!r}.",
                                   hint="Copy it from Business Settings > Business info / the app dashboard.")
        self._fingerprint_key()
        business = self.store.add_business(name, business_id, app_id, self.now())
        meta = {"business": name, "business_id": business_id, "app_id": app_id}
        self.secrets.put(SecretRef(SecretKind.APP_SECRET, business.id, 1, name), app_secret, meta)
        self.secrets.put(SecretRef(SecretKind.ADMIN_TOKEN, business.id, 1, name), admin_token, meta)
        self.audit("business.add", name, business_id=business_id, app_id=app_id)
        return business

    def list_businesses(self) -> list[BusinessRecord]:
        return self.store.list_businesses()

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
        """The current version (1 until :meth:`replace_business_secret` made a newer one)."""
        raw = self.store.get_setting(_business_secret_setting(business, kind))
        return int(raw) if raw and raw.isdigit() else 1

    def replace_business_secret(self, name: str, kind: SecretKind, secret: Secret, *, verify: bool = True,
                                revoke_old: bool = False) -> int:
        """Store a new app secret or admin token for business ``name``; returns its version.

        The new value is written as the next version first (check-and-set: a concurrent writer gets
        :class:`AlreadyExists`), then checked with Meta unless ``verify`` is False (an admin token must
        be valid for the business's app; an app secret must make an app token debug_token accepts), and
        only then made current, so a refused value changes nothing. Older versions stay encrypted as
        history. ``revoke_old`` (admin token only) revokes the previous admin token at Meta afterwards,
        with the new one as the caller. Audited; the values never leave the secret backend.
        """
        if kind not in (SecretKind.APP_SECRET, SecretKind.ADMIN_TOKEN):
            raise InvalidInput(f"{kind.value} is not a business secret.")
        biz = self.store.get_business(name)
        self._fingerprint_key()  # the configured key must open this store before anything is written
        old_version = self.business_secret_version(biz, kind)
        old_ref = self.business_secret_ref(biz, kind, old_version)
        meta = {"business": biz.name, "business_id": biz.business_id, "app_id": biz.app_id}
        new_ref = self._put_next_version(biz, kind, old_version, secret, meta)
        try:
            if verify:
                self._check_business_secret(biz, kind, secret)
        except BaseException:
            self._discard(new_ref)
            raise
        self.store.set_setting(_business_secret_setting(biz, kind), str(new_ref.version))
        self.audit(f"business.{kind.value}.replace", biz.name, version=new_ref.version, verified=verify)
        if revoke_old and kind is SecretKind.ADMIN_TOKEN:
            old = self.secrets.get(old_ref)
            if old != secret:
                self._revoke_at_meta(biz, old, caller=secret)
                self.audit("business.admin_token.revoke_old", biz.name, version=old_ref.version)
        return new_ref.version

    def _put_next_version(self, biz: BusinessRecord, kind: SecretKind, current: int, secret: Secret,
                          meta: dict[str, str]) -> SecretRef:
        """Write ``secret`` as the first free version after ``current``. A version left by a refused or
        interrupted replacement is not current: locally it is dropped and reused; Vault KV never reuses a
        version number, so the next one is taken."""
        from .errors import AlreadyExists

        for number in range(current + 1, current + 20):
            ref = self.business_secret_ref(biz, kind, number)
            if self.secrets.exists(ref):
                self.secrets.destroy(ref)
            try:
                self.secrets.put(ref, secret, meta)
                return ref
            except AlreadyExists:
                continue
        raise AlreadyExists(f"Too many unfinished replacements of {biz.name}'s {kind.value}.",
                            hint="Run `tokenvault doctor`; if the secret backend is healthy, report this.")

    def _check_business_secret(self, biz: BusinessRecord, kind: SecretKind, secret: Secret) -> None:
        from .ports.graph import AppCredentials

        if kind is SecretKind.APP_SECRET:
            app = AppCredentials(biz.app_id, secret)
            self.graph.debug_token(self.admin_token(biz), app)  # a wrong secret: Meta refuses the app token
            return
        info = self.graph.debug_token(secret, self.app_credentials(biz))
        if not info.is_valid:
            raise TokenInvalid(f"Meta says the new admin token of {biz.name} is not valid "
                               f"({info.error_message or 'no reason given'}); nothing was changed.",
                               hint="Generate a fresh admin (system user) token in Business Settings and retry.")

    # ------------------------------------------------------------------ tokens: capture
    def import_token(
        self,
        label: str,
        *,
        business: str,
        secret: Secret,
        system_user_id: str | None = None,
        scopes: Sequence[str] = (),
        waba_ids: Sequence[str] = (),
        verify: bool = True,
        max_age_days: int | None = None,
    ) -> TokenRecord:
        """Store a token captured at generation time, as version 1 of ``label``.

        With ``verify`` the token is checked with debug_token first: an invalid token or one of
        another app is refused (:class:`TokenInvalid` / :class:`InvalidInput`) and nothing is stored;
        app, system user, scopes, WABA ids and expiry are taken from Meta's answer.
        Raises :class:`AlreadyExists` for a used label (nothing overwritten).
        """
        validate_label(label)
        biz = self.store.get_business(business)
        if not secret:
            raise InvalidInput("No token was given.")
        provenance = self._provenance_for_import(biz, secret, system_user_id, scopes, waba_ids, verify)
        token_id = self.store.reserve_token_id(label, biz.id, self.now(), max_age_days)
        ref = SecretRef(SecretKind.TOKEN, token_id, 1, label)
        try:
            self.secrets.put(ref, secret, self._backend_metadata(biz, provenance))
            self.store.add_version(token_id, 1, self._version_fields(secret, TokenSource.IMPORTED, provenance),
                                   make_current=True)
        except BaseException:
            self._discard(ref)
            self.store.drop_empty_token(token_id)
            raise
        self.audit("token.import", label, version=1, verified=verify, fingerprint=provenance["fingerprint"],
                   system_user_id=provenance["system_user_id"])
        return self.store.get_token(label)

    def _provenance_for_import(self, biz: BusinessRecord, secret: Secret, system_user_id: str | None,
                               scopes: Sequence[str], waba_ids: Sequence[str], verify: bool) -> dict[str, Any]:
        now = self.now()
        prov: dict[str, Any] = {
            "system_user_id": system_user_id or "", "app_id": biz.app_id, "scopes": tuple(scopes),
            "waba_ids": tuple(waba_ids), "expires_at": None, "verified_at": None, "debug_summary": {},
            "fingerprint": self.fingerprint(secret),
        }
        if not verify:
            if not system_user_id:
                raise InvalidInput("--system-user is required with --no-verify.",
                                   hint="Name the system user that generated the token (its id in Business Settings).")
            return prov
        try:
            info = self.graph.debug_token(secret, self.app_credentials(biz))
        except InvalidRequest as exc:
            if "app_id" not in exc.message.lower():
                raise
            # Meta: "(#100) The App_id in the input_token did not match the Viewing App"
            raise InvalidInput(f"This token belongs to another app, not to {biz.name}'s app {biz.app_id}; "
                               "nothing was stored.",
                               hint="Import it under the business whose app generated it.") from None
        if not info.is_valid:
            raise TokenInvalid(f"Meta says this token is not valid ({info.error_message or 'no reason given'}); "
                               "nothing was stored.", hint="Generate a new token in Business Settings and import it.")
        if info.app_id and info.app_id != biz.app_id:
            raise InvalidInput(f"This token belongs to app {info.app_id}, not to {biz.name}'s app {biz.app_id}; "
                               "nothing was stored.", hint="Import it under the business whose app generated it.")
        if system_user_id and info.user_id and info.user_id != system_user_id:
            raise InvalidInput(f"This token belongs to system user {info.user_id}, not {system_user_id}; "
                               "nothing was stored.", hint="Drop --system-user or name the right one.")
        prov.update(
            system_user_id=info.user_id or system_user_id or "", app_id=info.app_id or biz.app_id,
            scopes=tuple(info.scopes) or tuple(scopes), waba_ids=tuple(info.waba_ids) or tuple(waba_ids),
            expires_at=info.expires_at, verified_at=now, debug_summary=_debug_summary(info),
        )
        return prov

    def _version_fields(self, secret: Secret, source: TokenSource, prov: dict[str, Any],
                        status: TokenStatus = TokenStatus.ACTIVE) -> dict[str, Any]:
        return {
            "status": status, "source": source, "system_user_id": prov["system_user_id"],
            "app_id": prov["app_id"], "scopes": list(prov["scopes"]), "waba_ids": list(prov["waba_ids"]),
            "fingerprint": prov["fingerprint"], "last4": secret.last4, "created_at": self.now(),
            "expires_at": prov.get("expires_at"), "verified_at": prov.get("verified_at"),
            "debug_summary": prov.get("debug_summary") or {}, "backend": self.secrets.name,
        }

    def _backend_metadata(self, biz: BusinessRecord, prov: dict[str, Any]) -> dict[str, str]:
        return {
            "business": biz.name, "business_id": biz.business_id, "system_user_id": str(prov["system_user_id"]),
            "app_id": str(prov["app_id"]), "scopes": ",".join(prov["scopes"]), "waba_ids": ",".join(prov["waba_ids"]),
            "fingerprint": str(prov["fingerprint"]),
        }

    def _discard(self, ref: SecretRef) -> None:
        try:
            self.secrets.destroy(ref)
        except VaultError:
            pass  # best effort: the original error is the one the user must see

    # ------------------------------------------------------------------ tokens: read
    def list_tokens(self) -> list[TokenRecord]:
        return self.store.list_tokens()

    def show_token(self, label: str) -> TokenRecord:
        """Metadata, provenance and version history of ``label``; never the secret."""
        return self.store.get_token(label, with_history=True)

    def reveal(self, label: str, *, version: int | None = None, purpose: str = "reveal") -> Secret:
        """Decrypt the current (or a given) version of ``label``. Audited. Raises NotFound / IntegrityError."""
        record = self.store.get_token(label)
        number = version or record.version
        secret = self.secrets.get(SecretRef(SecretKind.TOKEN, record.id, number, label))
        self.audit(f"token.{purpose}", label, version=number)
        return secret

    def resolve(self, label: str, *, allow_inactive: bool = False, purpose: str = "read") -> tuple[TokenRecord, Secret]:
        """The current token of ``label`` for injection: refuses a token that is not active unless allowed."""
        record = self.store.get_token(label)
        if record.status not in USABLE and not allow_inactive:
            raise InvalidInput(
                f"Token {label!r} is {record.status.value}; refusing to hand it out.",
                hint="Rotate it (`tokenvault token rotate`), or pass --allow-inactive if you really mean it.",
            )
        secret = self.secrets.get(SecretRef(SecretKind.TOKEN, record.id, record.version, label))
        self.audit(f"token.{purpose}", label, version=record.version)
        return record, secret

    # ------------------------------------------------------------------ tokens: verify / revoke
    def verify(self, label: str) -> tuple[TokenRecord, TokenDebugInfo]:
        """debug_token the current version now and record what Meta said (validity, expiry, scopes)."""
        record = self.store.get_token(label)
        biz = self.store.get_business(record.business_name)
        secret = self.secrets.get(SecretRef(SecretKind.TOKEN, record.id, record.version, label))
        info = self.graph.debug_token(secret, self.app_credentials(biz))
        fields: dict[str, Any] = {"verified_at": self.now(), "debug_summary": _debug_summary(info)}
        if info.is_valid:
            fields["expires_at"] = info.expires_at
            if info.scopes:
                fields["scopes"] = list(info.scopes)
            if info.waba_ids:
                fields["waba_ids"] = list(info.waba_ids)
        self.store.update_version(record.id, record.version, **fields)
        self.audit("token.verify", label, version=record.version, valid=info.is_valid)
        return self.store.get_token(label), info

    def check_whatsapp(self, label: str, phone_number_id: str) -> dict[str, object]:
        """A cheap live call with the token itself: read a WhatsApp phone number's public fields.

        Proves what debug_token cannot: that the token reaches this WABA's number for WhatsApp today.
        Raises TokenInvalid / PermissionMissing (no access to the number's WABA) / ... (exit 6).
        """
        if not phone_number_id.isdigit():
            raise InvalidInput(f"A phone number id is digits, got {phone_number_id!r}.",
                               hint="Copy it from WhatsApp Manager > Phone numbers (the id, not the number).")
        record = self.store.get_token(label)
        biz = self.store.get_business(record.business_name)
        secret = self.secrets.get(SecretRef(SecretKind.TOKEN, record.id, record.version, label))
        fields = self.graph.check_whatsapp(secret, self.app_credentials(biz), phone_number_id)
        self.audit("token.check_whatsapp", label, version=record.version, phone_number_id=phone_number_id)
        return fields

    def revoke(self, label: str, *, version: int | None = None,
               status: TokenStatus = TokenStatus.REVOKED) -> TokenRecord:
        """Revoke ``label`` (current or given version) at Meta, then mark it revoked.

        A token Meta already considers invalid counts as revoked. The record is only marked after
        Meta answered, so a failed call changes nothing locally.
        """
        record = self.store.get_token(label)
        number = version or record.version
        biz = self.store.get_business(record.business_name)
        secret = self.secrets.get(SecretRef(SecretKind.TOKEN, record.id, number, label))
        self._revoke_at_meta(biz, secret)
        self.store.update_version(record.id, number, status=status, revoked_at=self.now())
        self.audit("token.revoke", label, version=number, status=status.value)
        return self.store.get_token(label, with_history=True)

    def _revoke_at_meta(self, biz: BusinessRecord, secret: Secret, caller: Secret | None = None, *,
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
                           hint="Replace the business admin token (`tokenvault business add` again under a new name), "
                                "then retry; or revoke the token in Business Settings.")

    # ------------------------------------------------------------------ minting, rotation, reminders
    def generate_token(self, label: str, *, business: str, scopes: Sequence[str], system_user_id: str | None = None,
                       expiring: bool = False, max_age_days: int | None = None,
                       from_reminder: bool = False) -> TokenRecord:
        """Mint a new token through an eligible admin system user and store it as ``label`` v1.

        When no admin is eligible yet (Meta's seven-day rule) a reminder is recorded and
        :class:`~meta_tokenvault.errors.Deferred` (exit 7) carries the date; ``run-due`` finishes the work.
        The minted token is stored before it is verified, so nothing minted is lost.
        """
        from .errors import Deferred
        from .minting import Minter

        validate_label(label)
        scopes = tuple(s for s in scopes if s)
        if not scopes:
            raise InvalidInput("At least one scope is needed.",
                               hint="e.g. --scopes whatsapp_business_management,whatsapp_business_messaging")
        biz = self.store.get_business(business)
        with contextlib.suppress(NotFound):  # checked before minting: a token minted for a used label is lost
            self.store.get_token(label)
            raise AlreadyExists(f"A token labelled {label!r} exists already; nothing was minted.",
                                hint="Choose another label, or replace it with `tokenvault token rotate`.")
        minter = Minter(self)
        try:
            minted = minter.mint(biz, scopes, system_user_id=system_user_id, expiring=expiring)
        except Deferred as exc:
            if from_reminder:
                raise
            opens_at = exc.opens_at or self.now()
            reminder_id = self.store.add_reminder(
                label, "generate", biz.name, system_user_id,
                {"scopes": list(scopes), "expiring": expiring, "system_user_id": system_user_id}, opens_at,
                exc.message, self.now())
            self.audit("token.generate.deferred", label, opens_at=opens_at.isoformat(), reminder=reminder_id)
            self.notifier.notify(f"tokenvault: generating {label} deferred", exc.message)
            raise Deferred(f"Cannot mint {label} yet: {exc.message}", opens_at=opens_at, reminder_id=reminder_id,
                           hint=f"Reminder #{reminder_id} recorded; `tokenvault run-due` mints it when the window "
                                "opens (or name an older admin with --system-user).") from None
        with minter.keep_or_revoke(minted, label):  # a minted token that cannot be kept is revoked, never lost
            token_id = self.store.reserve_token_id(label, biz.id, self.now(), max_age_days)
            ref = SecretRef(SecretKind.TOKEN, token_id, 1, label)
            try:
                prov: dict[str, Any] = {"system_user_id": minted.system_user_id, "app_id": biz.app_id,
                                        "scopes": scopes, "waba_ids": (),
                                        "fingerprint": self.fingerprint(minted.secret)}
                self.secrets.put(ref, minted.secret, self._backend_metadata(biz, prov))
                self.store.add_version(token_id, 1,
                                       self._version_fields(minted.secret, TokenSource.GENERATED, prov),
                                       make_current=True)
            except BaseException:
                self._discard(ref)
                with contextlib.suppress(VaultError):
                    self.store.drop_empty_token(token_id)
                raise
        self.audit("token.generate", label, version=1, system_user_id=minted.system_user_id,
                   scopes=list(scopes), expiring=expiring, fingerprint=prov["fingerprint"])
        try:
            self.verify(label)
        except VaultError:
            pass  # stored and usable; `token verify` can be repeated
        return self.store.get_token(label)

    def rotate(self, label: str, *, compromised: bool = False, reason: str = "") -> RotationOutcome:
        """Revoke-and-reissue ``label``; see :mod:`meta_tokenvault.rotation`. Returns a RotationOutcome."""
        from .rotation import Rotator

        return Rotator(self).rotate(label, compromised=compromised, reason=reason)

    def rotate_many(self, labels: Sequence[str], *, compromised: bool = False, reason: str = "",
                    concurrency: int = 4,
                    progress: Callable[[RotationOutcome], None] | None = None) -> list[RotationOutcome]:
        from .rotation import Rotator

        return Rotator(self).rotate_many(labels, compromised=compromised, reason=reason, concurrency=concurrency,
                                         progress=progress)

    def labels_for(self, *, system_user_id: str | None = None) -> list[str]:
        """Labels of active tokens (all, or those minted by one system user) for bulk rotation."""
        return [t.label for t in self.store.list_tokens()
                if t.status is TokenStatus.ACTIVE
                and (system_user_id is None or t.provenance.system_user_id == system_user_id)]

    def sync_system_users(self, business: str | None = None) -> list[SystemUserView]:
        from .minting import Minter

        Minter(self).sync(business)
        return Minter(self).views(business)

    def system_users(self, business: str | None = None) -> list[SystemUserView]:
        from .minting import Minter

        return Minter(self).views(business)

    def set_system_user_created(self, su_id: str, created: datetime) -> SystemUserRecord:
        from .minting import Minter

        return Minter(self).set_created(su_id, created)

    def reminders(self, *, open_only: bool = False) -> list[ReminderRecord]:
        return self.store.list_reminders(open_only=open_only)

    def run_due(self) -> RunDueReport:
        """One pass of deferred work; see :mod:`meta_tokenvault.reminders`. Returns a RunDueReport."""
        from .reminders import DueRunner

        return DueRunner(self).run()

    # ------------------------------------------------------------------ audit
    def audit_events(self, limit: int | None = None, label: str | None = None) -> list[AuditEventRecord]:
        return self.store.list_audit(limit=limit, subject=label)

    def verify_audit(self) -> int:
        """Verify the hash chain; returns the number of events. Raises AuditChainBroken (exit 4)."""
        return self.store.verify_audit()

    # ------------------------------------------------------------------ master key rotation
    def rotate_master_key(self, *, progress: Callable[[int, int], None] | None = None,
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
        self._fingerprint_key()
        owner = self._lock_key_rotation()
        try:
            return self._rotate_master_key(progress, stop_after, owner)
        finally:
            with contextlib.suppress(VaultError):  # the error that stopped us is the one to report
                self.store.release_lease(KEY_ROTATION_LEASE, owner)

    def _lock_key_rotation(self) -> str:
        from .rotation import lease_is_stale, lease_owner

        owner = lease_owner()
        if self.store.acquire_lease(KEY_ROTATION_LEASE, owner, self.now(), KEY_ROTATION_LEASE_TTL):
            return owner
        holder = self.store.lease_holder(KEY_ROTATION_LEASE)
        if holder is not None and lease_is_stale(holder[0]):  # its process died on this host
            self.store.release_lease(KEY_ROTATION_LEASE, holder[0])
            if self.store.acquire_lease(KEY_ROTATION_LEASE, owner, self.now(), KEY_ROTATION_LEASE_TTL):
                return owner
        until = f" (lease until {holder[1]:%H:%M:%S} UTC)" if holder else ""
        raise Conflict(f"Another `tokenvault keys rotate` is under way{until}; nothing was changed.",
                       hint="Wait for it to finish; if it crashed on another host, run `tokenvault keys rotate` "
                            "again once its lease expires.")

    def _record_names(self) -> dict[tuple[bool, int], str]:
        """(is a token?, owner id) -> the name its envelopes are bound to (token label / business name)."""
        names: dict[tuple[bool, int], str] = {(True, t.id): t.label for t in self.store.list_tokens()}
        names.update({(False, b.id): b.name for b in self.store.list_businesses()})
        return names

    def _rotate_master_key(self, progress: Callable[[int, int], None] | None, stop_after: int | None,
                           owner: str) -> KeyRotationResult:
        old_ids = set(self.store.key_ids_in_use())
        target = self._resume_or_create_key(old_ids)
        done = 0
        total_pending = len(self.store.blobs_not_under(target, limit=1_000_000))
        names = self._record_names()
        while True:
            batch = self.store.blobs_not_under(target)
            if not batch:
                break
            self.store.acquire_lease(KEY_ROTATION_LEASE, owner, self.now(), KEY_ROTATION_LEASE_TTL)  # renew
            for blob in batch:
                if stop_after is not None and done >= stop_after:
                    raise KeyboardInterrupt("simulated interruption")
                kind = SecretKind(blob.kind)
                name = names.get((kind is SecretKind.TOKEN, blob.owner_id), "")
                ref = SecretRef(kind, blob.owner_id, blob.version, name)
                try:
                    sealed = crypto.rewrap(self.keys, crypto.SealedSecret(blob.key_id, blob.wrapped_key,
                                                                          blob.ciphertext), ref, to_key_id=target)
                except IntegrityError as exc:  # name the record: the user must restore or remove it
                    raise type(exc)(
                        f"{exc.message} Record: {blob.kind} #{blob.owner_id} version {blob.version}; keys rotate "
                        f"stopped there ({done} re-wrapped so far, every other secret stays readable).",
                        hint="Restore that record from a backup (or revoke and re-import its token), then run "
                             "`tokenvault keys rotate` again to finish.") from None
                self.store.rewrap_blob(blob.id, blob.key_id, sealed.key_id, sealed.wrapped_key)
                done += 1
                _test_crash(f"keys.rewrapped:{done}")
                if progress:
                    progress(done, total_pending)
        stored = self.store.get_wrapped_key(FINGERPRINT_PURPOSE)
        if stored is not None and stored[0] != target:
            fp_key = self.keys.unwrap(stored[0], stored[1], _FP_AAD)
            new_id, wrapped = self.keys.wrap(fp_key, _FP_AAD, key_id=target)
            self.store.put_wrapped_key(FINGERPRINT_PURPOSE, new_id, wrapped, expected_key_id=stored[0])
            _test_crash("keys.fingerprint")
        retired = []
        still_used = self.store.key_ids_in_use()
        for key_id in self.keys.key_ids():
            if key_id != target and key_id not in still_used:
                self.keys.retire_key(key_id)
                retired.append(key_id)
                _test_crash("keys.retired")
        self.store.set_setting("key_rotation_target", "")
        self.audit("keys.rotate", "master-key", new_key_id=target, rewrapped=done, retired=retired)
        return KeyRotationResult(new_key_id=target, rewrapped=done, retired=retired)

    def _resume_or_create_key(self, in_use: set[str]) -> str:
        pending = self.store.get_setting("key_rotation_target")
        if pending and pending in self.keys.key_ids():
            return pending  # an interrupted rotation: finish it with the key it already made
        current = self.keys.current_key_id() if self.keys.has_key() else None
        if current is not None and in_use and current not in in_use:
            # The provider's current key is newer than anything used (env provider after the user set a
            # new TOKENVAULT_MASTER_KEY, or a create that happened before a crash): use it.
            target = current
        else:
            # Transit keeps one named key with versions: a new version is its way of making a new key.
            rotate_master = getattr(self.keys, "rotate_master", None)
            target = rotate_master() if callable(rotate_master) else self.keys.create_key()
            if target == current:  # the env provider cannot make keys: it returned the one in use
                raise InvalidInput(
                    f"The {self.keys.name} key provider has no new master key to rotate to; nothing was changed.",
                    hint="Generate a new key, export it as TOKENVAULT_MASTER_KEY, move the current one to "
                         "TOKENVAULT_MASTER_KEY_PREVIOUS, then run `tokenvault keys rotate` (docs/key-providers.md).")
            _test_crash("keys.created")
        self.store.set_setting("key_rotation_target", target)
        _test_crash("keys.target")
        return target

    # ------------------------------------------------------------------ doctor
    def doctor(self) -> list[DoctorCheck]:
        """What is configured, what works, and how to fix what doesn't. Never raises for a failed check."""
        checks: list[DoctorCheck] = []
        try:
            version = self.store.schema_version()
            checks.append(DoctorCheck("database", True, f"{self.store.display_url} (schema v{version})"))
        except VaultError as exc:
            checks.append(DoctorCheck("database", False, exc.message, exc.hint))
        avail = self.keys.availability()
        checks.append(DoctorCheck(f"key provider ({self.keys.name})", avail.ok, avail.reason or "available",
                                  "" if avail.ok else "See docs/key-providers.md"))
        try:
            self._fingerprint_key()
            checks.append(DoctorCheck("master key", True, f"opens this store (key {self.keys.current_key_id()})"))
        except VaultError as exc:
            checks.append(DoctorCheck("master key", False, exc.message, exc.hint))
        try:
            if self.store.get_setting("key_rotation_target"):
                checks.append(DoctorCheck("master key rotation", False, "an interrupted `keys rotate` left some "
                                          "secrets under the old key (all of them are readable)",
                                          "Run `tokenvault keys rotate` again to finish it"))
        except VaultError:
            pass  # the database check above already says what is wrong
        backend = self.secrets.availability()
        checks.append(DoctorCheck(f"secret backend ({self.secrets.name})", backend.ok, backend.reason or "available"))
        try:
            count = self.store.verify_audit()
            checks.append(DoctorCheck("audit trail", True, f"{count} events, chain intact"))
        except VaultError as exc:
            checks.append(DoctorCheck("audit trail", False, exc.message, exc.hint))
        try:
            tokens = self.store.list_tokens()
            bad = [t.label for t in tokens if t.status is not TokenStatus.ACTIVE]
            detail = f"{len(tokens)} tokens" + (f"; not active: {', '.join(bad)}" if bad else "")
            checks.append(DoctorCheck("tokens", not bad, detail,
                                      "Rotate them with `tokenvault token rotate`" if bad else ""))
        except VaultError as exc:
            checks.append(DoctorCheck("tokens", False, exc.message, exc.hint))
        return checks


def _test_crash(point: str) -> None:
    """Crash tests: ``TOKENVAULT_TEST_CRASH_AFTER=<point>`` SIGKILLs this process right after ``point``
    (e.g. ``keys.rewrapped:2``); ``TOKENVAULT_TEST_CRASH_SIGNAL=INT`` sends SIGINT instead (a Ctrl-C).
    Honoured only with ``TOKENVAULT_TEST_MODE=1``, like :mod:`meta_tokenvault.rotation`'s hook."""
    if os.environ.get("TOKENVAULT_TEST_MODE") == "1" and os.environ.get("TOKENVAULT_TEST_CRASH_AFTER") == point:
        import signal

        sig = signal.SIGINT if os.environ.get("TOKENVAULT_TEST_CRASH_SIGNAL") == "INT" else signal.SIGKILL
        os.kill(os.getpid(), sig)


def _business_secret_setting(business: BusinessRecord, kind: SecretKind) -> str:
    return f"business_secret_version:{business.id}:{kind.value}"


def _debug_summary(info: TokenDebugInfo) -> dict[str, Any]:
    """What debug_token said, as stored in the metadata DB (never the token)."""
    return {
        "is_valid": info.is_valid, "app_id": info.app_id, "user_id": info.user_id, "type": info.type,
        "scopes": list(info.scopes), "waba_ids": list(info.waba_ids),
        "expires_at": info.expires_at.isoformat() if info.expires_at else None,
        "issued_at": info.issued_at.isoformat() if info.issued_at else None, "error": info.error_message,
    }


__all__ = ["DoctorCheck", "KeyRotationResult", "TokenManager", "clean_token", "validate_label"]
