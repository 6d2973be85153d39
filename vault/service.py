"""TokenManager: the one object the CLI and the Python API hold — a thin facade over the use cases.

Each method delegates to one use case module in :mod:`meta_tokenvault.usecases` with the shared
:class:`~meta_tokenvault.context.VaultContext`; the contracts (returns, raises, side effects) are stated there.
Adapters are chosen by :mod:`meta_tokenvault.wiring`. Every error is a :class:`~meta_tokenvault.errors.VaultError`.
Use cases never import this module, so the dependency graph has no cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from .context import VaultContext
from .types import TokenStatus
from .usecases import tokens  # the reads (reveal, resolve, show, list): the fast path's use case
from .validation import clean_token, validate_label

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import IO, Any

    from .adapters.store_sql import SqlStore
    from .policy import Renewal
    from .ports.clock import Clock
    from .ports.graph import AppCredentials, GraphApi, TokenDebugInfo
    from .ports.keys import KeyProvider
    from .ports.notify import Notifier
    from .ports.secrets import SecretBackend
    from .types import (
        AuditEventRecord,
        BusinessRecord,
        ProvisioningRecord,
        ReminderRecord,
        Secret,
        SecretKind,
        SecretRef,
        SystemUserRecord,
        TokenRecord,
    )
    from .usecases.doctor import DoctorCheck
    from .usecases.master_key import KeyRotationResult
    from .usecases.provision import ProvisionOutcome
    from .usecases.review import ReviewReport
    from .usecases.rotate import RotationOutcome
    from .usecases.run_due import RunDueReport
    from .usecases.scan import RevokedVersion, ScanReport
    from .usecases.system_users import SystemUserView
    from .usecases.verify import Check


class TokenManager:
    """The service. Construct through :func:`meta_tokenvault.wiring.build_manager`; tests pass fakes or adapters."""

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
        self.ctx = VaultContext(store=store, secrets=secrets, keys=keys, graph=graph, notifier=notifier,
                                clock=clock, actor=actor, renewal=renewal)

    # ------------------------------------------------------------------ the context's parts
    @property
    def store(self) -> SqlStore:
        return self.ctx.store

    @property
    def secrets(self) -> SecretBackend:
        return self.ctx.secrets

    @property
    def keys(self) -> KeyProvider:
        return self.ctx.keys

    @property
    def notifier(self) -> Notifier:
        return self.ctx.notifier

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def actor(self) -> str:
        return self.ctx.actor

    @property
    def graph(self) -> GraphApi:
        """The Graph API adapter, built on first use (see :attr:`VaultContext.graph`)."""
        return self.ctx.graph

    @property
    def _graph_factory(self) -> Callable[[], GraphApi] | None:  # tests wrap the factory (graph_world.py)
        return self.ctx.graph_factory

    @_graph_factory.setter
    def _graph_factory(self, factory: Callable[[], GraphApi] | None) -> None:
        self.ctx.graph_factory = factory

    def now(self) -> datetime:
        return self.ctx.now()

    def close(self) -> None:
        """Release the store's connections and the Graph client (its sockets). Idempotent."""
        self.ctx.close()

    def audit(self, action: str, subject: str, **details: Any) -> None:
        self.ctx.audit(action, subject, **details)

    def fingerprint(self, secret: Secret) -> str:
        return self.ctx.fingerprint(secret)

    # ------------------------------------------------------------------ init
    def initialize(self, provider_name: str) -> dict[str, Any]:
        """Create the master key and the fingerprint key; see :func:`meta_tokenvault.usecases.master_key.initialize`."""
        from .usecases import master_key

        return master_key.initialize(self.ctx, provider_name)

    # ------------------------------------------------------------------ businesses
    def add_business(self, name: str, business_id: str, app_id: str, app_secret: Secret,
                     admin_token: Secret) -> BusinessRecord:
        from .usecases import businesses

        return businesses.add_business(self.ctx, name, business_id, app_id, app_secret, admin_token)

    def list_businesses(self) -> list[BusinessRecord]:
        from .usecases import businesses

        return businesses.list_businesses(self.ctx)

    def app_credentials(self, business: BusinessRecord) -> AppCredentials:
        return self.ctx.app_credentials(business)

    def admin_token(self, business: BusinessRecord) -> Secret:
        return self.ctx.admin_token(business)

    def business_secret_ref(self, business: BusinessRecord, kind: SecretKind, version: int | None = None) -> SecretRef:
        return self.ctx.business_secret_ref(business, kind, version)

    def business_secret_version(self, business: BusinessRecord, kind: SecretKind) -> int:
        return self.ctx.business_secret_version(business, kind)

    def replace_business_secret(self, name: str, kind: SecretKind, secret: Secret, *, verify: bool = True,
                                revoke_old: bool = False) -> int:
        from .usecases import businesses

        return businesses.replace_business_secret(self.ctx, name, kind, secret, verify=verify, revoke_old=revoke_old)

    # ------------------------------------------------------------------ tokens
    def import_token(self, label: str, *, business: str, secret: Secret, system_user_id: str | None = None,
                     scopes: Sequence[str] = (), waba_ids: Sequence[str] = (), verify: bool = True,
                     max_age_days: int | None = None, on_invalid: str = "reissue") -> TokenRecord:
        from .usecases import capture

        return capture.import_token(self.ctx, label, business=business, secret=secret, system_user_id=system_user_id,
                                    scopes=scopes, waba_ids=waba_ids, verify=verify, max_age_days=max_age_days,
                                    on_invalid=on_invalid)

    def list_tokens(self) -> list[TokenRecord]:
        return tokens.list_tokens(self.ctx)

    def list_tokens_json(self) -> list[str]:
        return tokens.list_tokens_json(self.ctx)

    def show_token(self, label: str) -> TokenRecord:
        return tokens.show_token(self.ctx, label)

    def reveal(self, label: str, *, version: int | None = None, purpose: str = "reveal") -> Secret:
        return tokens.reveal(self.ctx, label, version=version, purpose=purpose)

    def resolve(self, label: str, *, allow_inactive: bool = False, purpose: str = "read") -> tuple[TokenRecord, Secret]:
        return tokens.resolve(self.ctx, label, allow_inactive=allow_inactive, purpose=purpose)

    def verify(self, label: str) -> tuple[TokenRecord, TokenDebugInfo]:
        return tokens.verify(self.ctx, label)

    def verify_all(self, *, concurrency: int = 8, progress: Callable[[Check], None] | None = None) -> list[Check]:
        """debug_token every active token; see :func:`meta_tokenvault.usecases.verify.verify_many`."""
        from .usecases.verify import verify_many

        records = [t for t in self.ctx.store.list_tokens() if t.status is TokenStatus.ACTIVE]
        return verify_many(self.ctx, records, concurrency=concurrency, progress=progress)

    def refresh(self, label: str) -> RotationOutcome:
        """Exchange ``label``'s 60-day token for a new one; see :mod:`meta_tokenvault.usecases.refresh`."""
        from .usecases.refresh import refresh

        return refresh(self.ctx, label)

    def check_whatsapp(self, label: str, phone_number_id: str) -> dict[str, object]:
        return tokens.check_whatsapp(self.ctx, label, phone_number_id)

    def revoke(self, label: str, *, version: int | None = None,
               status: TokenStatus = TokenStatus.REVOKED) -> TokenRecord:
        return tokens.revoke(self.ctx, label, version=version, status=status)

    def generate_token(self, label: str, *, business: str, scopes: Sequence[str], system_user_id: str | None = None,
                       expiring: bool = False, max_age_days: int | None = None,
                       from_reminder: bool = False, on_invalid: str = "reissue") -> TokenRecord:
        from .usecases.mint import generate_token

        return generate_token(self.ctx, label, business=business, scopes=scopes, system_user_id=system_user_id,
                              expiring=expiring, max_age_days=max_age_days, from_reminder=from_reminder,
                              on_invalid=on_invalid)

    def rotate(self, label: str, *, compromised: bool = False, reason: str = "") -> RotationOutcome:
        """Revoke-and-reissue ``label``; see :mod:`meta_tokenvault.usecases.rotate`."""
        from .usecases.rotate import Rotator

        return Rotator(self.ctx).rotate(label, compromised=compromised, reason=reason)

    def rotate_many(self, labels: Sequence[str], *, compromised: bool = False, reason: str = "",
                    concurrency: int = 4,
                    progress: Callable[[RotationOutcome], None] | None = None) -> list[RotationOutcome]:
        from .usecases.rotate import Rotator

        return Rotator(self.ctx).rotate_many(labels, compromised=compromised, reason=reason,
                                             concurrency=concurrency, progress=progress)

    def labels_for(self, *, system_user_id: str | None = None) -> list[str]:
        """Labels of active tokens (all, or those minted by one system user) for bulk rotation."""
        return tokens.active_labels(self.ctx, system_user_id=system_user_id)

    def scan(self, paths: Sequence[str], *, git: bool = False, stdin: IO[bytes] | None = None,
             progress: Callable[[int, str], None] | None = None) -> ScanReport:
        """Find this vault's tokens (any version) in ``paths``; see :mod:`meta_tokenvault.usecases.scan`."""
        from .usecases.scan import scan_paths

        return scan_paths(self.ctx, paths, git=git, stdin=stdin, progress=progress)

    def leak_response(self, report: ScanReport) -> tuple[list[str], list[tuple[str, int]]]:
        """Labels to rotate and older versions to revoke for what ``scan`` found; see its use case."""
        from .usecases.scan import leak_response

        return leak_response(self.ctx, report)

    def revoke_leaked_versions(self, older: Sequence[tuple[str, int]], *,
                               progress: Callable[[RevokedVersion], None] | None = None) -> list[RevokedVersion]:
        from .usecases.scan import revoke_leaked_versions

        return revoke_leaked_versions(self.ctx, older, progress=progress)

    def review(self, business: str | None = None) -> ReviewReport:
        """The hygiene checks of :mod:`meta_tokenvault.usecases.review`."""
        from .usecases.review import review_store

        return review_store(self.ctx, business)

    # ------------------------------------------------------------------ system users, reminders
    def sync_system_users(self, business: str | None = None) -> list[SystemUserView]:
        from .usecases import system_users

        system_users.sync(self.ctx, business)
        return system_users.views(self.ctx, business)

    def system_users(self, business: str | None = None) -> list[SystemUserView]:
        from .usecases import system_users

        return system_users.views(self.ctx, business)

    def set_system_user_created(self, su_id: str, created: datetime) -> SystemUserRecord:
        from .usecases import system_users

        return system_users.set_created(self.ctx, su_id, created)

    def create_system_user(self, name: str, *, business: str, role: str = "admin", waba_ids: Sequence[str] = (),
                           tasks: Sequence[str] = ("MANAGE",)) -> ProvisionOutcome:
        """Create a system user, install the app, assign WABAs; see :mod:`meta_tokenvault.usecases.provision`."""
        from .usecases.provision import Provisioner

        return Provisioner(self.ctx).create_system_user(name, business=business, role=role, waba_ids=waba_ids,
                                                        tasks=tasks)

    def provision(self, label: str, *, business: str, system_user: str, role: str = "admin",
                  waba_ids: Sequence[str] = (), tasks: Sequence[str] = ("MANAGE",),
                  scopes: Sequence[str] | None = None, expiring: bool = False) -> ProvisionOutcome:
        """The seed's whole procedure, resumable; see :mod:`meta_tokenvault.usecases.provision`."""
        from .usecases.provision import DEFAULT_SCOPES, Provisioner

        return Provisioner(self.ctx).provision(label, business=business, system_user=system_user, role=role,
                                               waba_ids=waba_ids, tasks=tasks, scopes=scopes or DEFAULT_SCOPES,
                                               expiring=expiring)

    def provisionings(self, business: str | None = None) -> list[ProvisioningRecord]:
        """The provisioning journal, oldest first (``system-users journal``)."""
        return self.store.list_provisionings(business_name=business)

    def reminders(self, *, open_only: bool = False) -> list[ReminderRecord]:
        return self.store.list_reminders(open_only=open_only)

    def run_due(self, *, concurrency: int = 8,
                progress: Callable[[str, str, str], None] | None = None) -> RunDueReport:
        """One pass of deferred work, detection and renewal; see :mod:`meta_tokenvault.usecases.run_due`."""
        from .usecases.run_due import DueRunner

        return DueRunner(self.ctx, concurrency=concurrency, progress=progress).run()

    # ------------------------------------------------------------------ audit, keys, doctor
    def audit_events(self, limit: int | None = None, label: str | None = None) -> list[AuditEventRecord]:
        return self.store.list_audit(limit=limit, subject=label)

    def verify_audit(self) -> int:
        """Verify the hash chain and the head's MAC; see :mod:`meta_tokenvault.usecases.audit_trail`."""
        from .usecases import audit_trail

        return audit_trail.verify(self.ctx)

    def key_audit_head(self) -> int:
        """Key an older database's audit head once its chain verifies; see its use case."""
        from .usecases import audit_trail

        return audit_trail.key_head(self.ctx)

    def rotate_master_key(self, *, progress: Callable[[int, int], None] | None = None,
                          stop_after: int | None = None) -> KeyRotationResult:
        from .usecases import master_key

        return master_key.rotate_master_key(self.ctx, progress=progress, stop_after=stop_after)

    def doctor(self) -> list[DoctorCheck]:
        from .usecases import doctor

        return doctor.doctor(self.ctx)


def __getattr__(name: str) -> Any:  # the use cases load when used: the fast path imports only ``tokens``
    if name == "DoctorCheck":
        from .usecases.doctor import DoctorCheck

        return DoctorCheck
    if name == "KeyRotationResult":
        from .usecases.master_key import KeyRotationResult

        return KeyRotationResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DoctorCheck", "KeyRotationResult", "TokenManager", "clean_token", "validate_label"]
