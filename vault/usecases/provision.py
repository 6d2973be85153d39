"""Provisioning: ``system-users create`` and ``provision`` — the seed's procedure as one resumable, journaled run.

The seed's steps, by API (reference §13): create a purpose-named system user (``POST /{business-id}/system_users``
name, role), install the business's app for it (``POST /{system-user-id}/applications``), assign the WhatsApp
Business Accounts (``POST /{waba-id}/assigned_users`` user, tasks; ``MANAGE`` = full control), and — for
``provision`` — mint its token (``POST /{system-user-id}/access_tokens`` with the business admin token as the
caller) and store it with provenance ``provisioned``.

Journaled like rotation (``tv_provisioning``): each step is recorded once done, so a re-run or ``run-due``
finishes what is missing and nothing is done twice. Creating is not idempotent at Meta: the journal records
the intent (step ``creating``) before the call, and a run that finds that step without an id looks the system
user up by name instead of creating a second one. Installing and assigning are idempotent at Meta.

Meta's seven-day rule is Meta's to apply: tokenvault asks, and only when Meta refuses with the seven-day error
does the run become ``deferred`` (exit 7) with a reminder dated when the window opens (the caller admin's
``created_time`` + 7 days); ``run-due`` completes it, then notifies with what was done. Other refusals (an
unknown WABA, another business's WABA, a caller that is not an admin) fail the run (exit 6) with Meta's message
and what was already done; the journal keeps it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import policy
from ..context import test_crash
from ..errors import (
    AlreadyExists,
    Deferred,
    GraphError,
    InvalidInput,
    NotFound,
    PermissionMissing,
    RotationInProgress,
    SevenDayWindow,
    VaultError,
)
from ..leases import lease_is_stale, lease_owner, take_lease
from ..types import (
    BusinessRecord,
    ProvisioningRecord,
    Secret,
    SecretKind,
    SecretRef,
    TokenRecord,
    TokenSource,
)
from ..validation import validate_label
from .mint import Minter, MintResult
from .tokens import verify

if TYPE_CHECKING:
    from ..context import VaultContext
    from ..ports.graph import AppCredentials

#: ``POST /{waba-id}/assigned_users`` tasks (reference §13); ``MANAGE`` is "full control".
WABA_TASKS = ("MANAGE", "DEVELOP", "MANAGE_TEMPLATES", "MANAGE_PHONE", "VIEW_COST", "MANAGE_EXTENSIONS",
              "VIEW_PHONE_ASSETS", "MANAGE_PHONE_ASSETS", "VIEW_TEMPLATES", "MESSAGING")
ROLES = ("ADMIN", "EMPLOYEE")
DEFAULT_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
LEASE_TTL = timedelta(minutes=10)
SUGGESTED_NAME = "whatsapp_prod_sender"


def generic_name_warning(name: str) -> str | None:
    """A warning when ``name`` says nothing of the system user's purpose ("admin", "test", "system user 2"...)."""
    from .review import is_generic_name  # the rule `review` applies (generic-name): warned at creation too

    if is_generic_name(name):
        return (f"{name!r} does not say what the system user is for; a purpose name (e.g. {SUGGESTED_NAME!r}, "
                "'crm_whatsapp_sync') tells, in Business Settings and in audits, which server holds its token.")
    return None


@dataclass(frozen=True)
class ProvisionOutcome:
    """What a run did: the journal entry, warnings for people, and the token (``provision``) when stored."""

    record: ProvisioningRecord
    warnings: tuple[str, ...] = ()
    token: TokenRecord | None = field(default=None)

    def as_json(self) -> dict[str, object]:
        out = self.record.as_json()
        out["warnings"] = list(self.warnings)
        out["token"] = self.token.as_json() if self.token else None
        return out


def done_so_far(record: ProvisioningRecord) -> str:
    """One sentence: what this run (and the ones before it) did at Meta."""
    parts = []
    if record.system_user_id:
        parts.append(f"system user {record.name} ({record.system_user_id}) "
                     + ("created" if record.created_by_us else "found"))
    if record.installed:
        parts.append("app installed")
    if record.assigned:
        parts.append("WABA " + ", ".join(record.assigned) + " assigned")
    if record.step in ("stored", "done") and record.label:
        parts.append(f"token {record.label} stored")
    return ("Done so far: " + "; ".join(parts) + ".") if parts else "Nothing was done at Meta yet."


class Provisioner:
    """Runs and resumes provisioning journal entries through the context's ports."""

    def __init__(self, ctx: VaultContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------ entry points
    def create_system_user(self, name: str, *, business: str, role: str = "admin", waba_ids: Sequence[str] = (),
                           tasks: Sequence[str] = ("MANAGE",)) -> ProvisionOutcome:
        """Create (or reuse, when tokenvault created it with the same role) the system user ``name``, install the
        app for it and assign ``waba_ids`` with ``tasks``. Raises Deferred (exit 7, reminder recorded) when Meta's
        seven-day rule refuses; AlreadyExists (exit 2) when a system user of that name is not ours or has
        another role; GraphError (exit 6) with what was done when Meta refuses a step."""
        name, role_u, wabas, tasks_t = _check(name, role, waba_ids, tasks)
        biz = self.ctx.store.get_business(business)
        warnings = tuple(w for w in [generic_name_warning(name)] if w)
        record = self._open_or_start("create_system_user", biz, name, role_u, wabas, tasks_t)
        return self._run(record, warnings=warnings)

    def provision(self, label: str, *, business: str, system_user: str, role: str = "admin",
                  waba_ids: Sequence[str] = (), tasks: Sequence[str] = ("MANAGE",),
                  scopes: Sequence[str] = DEFAULT_SCOPES, expiring: bool = False) -> ProvisionOutcome:
        """The whole procedure: find or create ``system_user``, install the app, assign the WABAs, mint its token
        and store it as ``label`` (source ``provisioned``). Deferred as a whole when Meta's seven-day rule refuses."""
        validate_label(label)
        name, role_u, wabas, tasks_t = _check(system_user, role, waba_ids, tasks)
        scopes_t = tuple(dict.fromkeys(s.strip() for s in scopes if s.strip()))
        if not scopes_t:
            raise InvalidInput("At least one scope is needed.",
                               hint="e.g. --scopes whatsapp_business_management,whatsapp_business_messaging")
        biz = self.ctx.store.get_business(business)
        open_entry = next((r for r in self.ctx.store.list_provisionings(open_only=True) if r.label == label), None)
        if open_entry is None:
            with contextlib.suppress(NotFound):
                self.ctx.store.get_token(label)
                raise AlreadyExists(f"A token labelled {label!r} exists already; nothing was provisioned.",
                                    hint="Choose another label, or rotate it with `tokenvault token rotate`.")
        warnings = tuple(w for w in [generic_name_warning(name)] if w)
        record = open_entry or self._start("provision", biz, name, role_u, wabas, tasks_t, label=label,
                                           scopes=scopes_t, expiring=expiring)
        return self._run(record, warnings=warnings)

    def resume(self, provisioning_id: int, *, from_reminder: bool = False) -> ProvisionOutcome:
        """Finish a journal entry (``run-due``: deferred or interrupted). Raises like the entry points."""
        record = self.ctx.store.get_provisioning(provisioning_id)
        if record.state == "done":
            return ProvisionOutcome(record, token=self._token(record))
        return self._run(record, from_reminder=from_reminder)

    def interrupted(self) -> list[ProvisioningRecord]:
        """Running entries whose process is gone (their lease is free, expired or held by a dead process)."""
        out = []
        for record in self.ctx.store.list_provisionings(open_only=True):
            if record.state != "running":
                continue
            holder = self.ctx.store.lease_holder(_resource(record))
            if holder is None or lease_is_stale(holder[0]) or holder[1] < self.ctx.now():
                out.append(record)
        return out

    # ------------------------------------------------------------------ journal
    def _open_or_start(self, kind: str, biz: BusinessRecord, name: str, role: str, wabas: tuple[str, ...],
                       tasks: tuple[str, ...]) -> ProvisioningRecord:
        for record in self.ctx.store.list_provisionings(business_name=biz.name, name=name, open_only=True):
            if record.kind == kind:  # a re-run finishes what is missing, with what was asked now added
                merged = tuple(dict.fromkeys((*record.waba_ids, *wabas)))
                return self.ctx.store.update_provisioning(record.id, self.ctx.now(), waba_ids=list(merged),
                                                          tasks=list(tasks), role=role)
        return self._start(kind, biz, name, role, wabas, tasks)

    def _start(self, kind: str, biz: BusinessRecord, name: str, role: str, wabas: tuple[str, ...],
               tasks: tuple[str, ...], *, label: str | None = None, scopes: tuple[str, ...] = (),
               expiring: bool = False) -> ProvisioningRecord:
        pid = self.ctx.store.start_provisioning(kind, biz.name, name, role, waba_ids=list(wabas), tasks=list(tasks),
                                                label=label, scopes=list(scopes), expiring=expiring,
                                                now=self.ctx.now())
        self.ctx.audit(f"provision.{kind}.start", label or name, provisioning=pid, business=biz.name, role=role,
                       waba_ids=list(wabas), tasks=list(tasks))
        return self.ctx.store.get_provisioning(pid)

    def _journal(self, record: ProvisioningRecord, **fields: Any) -> ProvisioningRecord:
        return self.ctx.store.update_provisioning(record.id, self.ctx.now(), **fields)

    # ------------------------------------------------------------------ the run
    def _run(self, record: ProvisioningRecord, *, warnings: tuple[str, ...] = (),
             from_reminder: bool = False) -> ProvisionOutcome:
        biz = self.ctx.store.get_business(record.business_name)
        owner = self._lock(record)
        try:
            record = self._journal(record, state="running", error=None)
            app, caller = self.ctx.app_credentials(biz), self.ctx.admin_token(biz)
            try:
                record = self._steps(record, biz, app, caller)
            except SevenDayWindow as exc:
                record = self.ctx.store.get_provisioning(record.id)  # as far as the steps got
                raise self._defer(record, biz, app, caller, exc, from_reminder) from None
            except Deferred:
                raise
            except VaultError as exc:
                record = self._journal(record, state="failed", error=exc.message)
                self.ctx.audit(f"provision.{record.kind}.failed", record.label or record.name,
                               provisioning=record.id, error=exc.message)
                if isinstance(exc, GraphError):
                    exc.message = f"{exc.message} {done_so_far(record)} (provisioning #{record.id})"
                    exc.args = (exc.message,)
                raise
            record = self._journal(record, step="done", state="done")
        finally:
            self.ctx.store.release_lease(_resource(record), owner)
        self.ctx.audit(f"provision.{record.kind}.done", record.label or record.name, provisioning=record.id,
                       system_user_id=record.system_user_id, assigned=list(record.assigned))
        if from_reminder:
            self.ctx.notifier.notify(f"tokenvault: {_what(record)} completed",
                                     f"{done_so_far(record)} (provisioning #{record.id})")
        return ProvisionOutcome(record, warnings, self._token(record))

    def _steps(self, record: ProvisioningRecord, biz: BusinessRecord, app: AppCredentials,
               caller: Secret) -> ProvisioningRecord:
        record = self._ensure_system_user(record, biz, app, caller)
        su_id = record.system_user_id
        assert su_id is not None
        if not record.installed:
            self.ctx.graph.install_app(su_id, app, caller)
            self.ctx.store.mark_app_installed(su_id)
            record = self._journal(record, installed=True, step="installed")
            test_crash("provision.installed")
        for waba_id in record.waba_ids:
            if waba_id in record.assigned:
                continue
            try:
                self.ctx.graph.assign_waba(waba_id, su_id, record.tasks, app, caller)
            except GraphError as exc:
                exc.hint = (f"Check WABA {waba_id}: it must be a WhatsApp Business Account of {biz.name} (owned by, or "
                            "shared with, business " + biz.business_id + "), reachable by its admin token. Re-run "
                            "without it (what was done is kept), or fix it in Business Settings and re-run.")
                raise
            self.ctx.store.set_system_user_wabas(su_id, {waba_id: list(record.tasks)}, self.ctx.now())
            record = self._journal(record, assigned=[*record.assigned, waba_id], step="assigned")
            self.ctx.audit("provision.waba_assigned", record.label or record.name, system_user_id=su_id,
                           waba_id=waba_id, tasks=list(record.tasks))
            test_crash("provision.assigned")
        if record.kind == "provision" and record.step not in ("stored", "done"):
            record = self._mint_and_store(record, biz, app, caller)
        return record

    def _ensure_system_user(self, record: ProvisioningRecord, biz: BusinessRecord, app: AppCredentials,
                            caller: Secret) -> ProvisioningRecord:
        if record.system_user_id is not None:
            return record
        interrupted = record.step == "creating"  # the create call may have reached Meta: never create twice
        found = self._find_by_name(biz, record.name, app, caller)
        if found is not None:
            su_id, su_role = found
            ours = interrupted or self._created_by_us(su_id)
            if record.kind == "create_system_user":
                if not ours:
                    raise AlreadyExists(f"A system user named {record.name!r} exists already in {biz.name} "
                                        f"({su_id}) and was not created by tokenvault; nothing was created.",
                                        hint="Choose another (purpose) name, or use it with `tokenvault provision`.")
                if su_role != record.role:
                    raise AlreadyExists(f"The system user {record.name!r} ({su_id}) has role {su_role.lower()}, "
                                        f"not {record.role.lower()}; nothing was created.",
                                        hint="Choose another name, or change its role in Business Settings.")
            known = {u.id: u for u in self.ctx.store.list_system_users(biz.name)}
            wabas = self.ctx.store.system_user_wabas().get(su_id, {})
            assigned = [w for w in record.waba_ids if w in wabas and set(record.tasks) <= set(wabas[w])]
            installed = bool(known.get(su_id) and known[su_id].app_installed)
            return self._journal(record, system_user_id=su_id, created_by_us=interrupted, installed=installed,
                                 assigned=assigned, step="created")
        record = self._journal(record, step="creating")
        try:
            su_id = self.ctx.graph.create_system_user(biz.business_id, record.name, record.role, app, caller)
        except PermissionMissing as exc:
            exc.hint = ("The business's admin token must be an admin's (an admin system user, or a business admin) "
                        "with business_management: replace it with `tokenvault business set-admin-token "
                        f"{biz.name}`, then re-run.")
            raise
        test_crash("provision.create_sent")  # created at Meta, not yet journaled: the next run finds it by name
        self.ctx.store.upsert_system_user(biz.id, su_id, record.name, record.role, self.ctx.now(), self.ctx.now())
        record = self._journal(record, system_user_id=su_id, created_by_us=True, step="created")
        self.ctx.audit("provision.system_user_created", record.label or record.name, system_user_id=su_id,
                       role=record.role, business=biz.name)
        test_crash("provision.created")
        return record

    def _find_by_name(self, biz: BusinessRecord, name: str, app: AppCredentials,
                      caller: Secret) -> tuple[str, str] | None:
        """The system user named ``name`` at Meta (the store is refreshed with what Meta lists)."""
        found = None
        for info in self.ctx.graph.list_system_users(biz.business_id, app, caller):
            self.ctx.store.upsert_system_user(biz.id, info.id, info.name, info.role, info.created_time,
                                              self.ctx.now())
            if info.name == name and found is None:
                found = (info.id, info.role.upper())
        return found

    def _created_by_us(self, su_id: str) -> bool:
        return any(r.system_user_id == su_id and r.created_by_us for r in self.ctx.store.list_provisionings())

    def _mint_and_store(self, record: ProvisioningRecord, biz: BusinessRecord, app: AppCredentials,
                        caller: Secret) -> ProvisioningRecord:
        label, su_id = record.label, record.system_user_id
        assert label is not None and su_id is not None
        with contextlib.suppress(NotFound):
            self.ctx.store.get_token(label)  # stored by an earlier run that died before journaling it
            return self._journal(record, step="stored")
        secret = self.ctx.graph.generate_token(su_id, app, caller, record.scopes, expiring=record.expiring)
        minted = MintResult(secret, su_id, app)
        minter = Minter(self.ctx)
        with minter.keep_or_revoke(minted, label):  # a minted token that cannot be kept is revoked, never lost
            token_id = self.ctx.store.reserve_token_id(label, biz.id, self.ctx.now())
            ref = SecretRef(SecretKind.TOKEN, token_id, 1, label)
            prov: dict[str, Any] = {"system_user_id": su_id, "app_id": biz.app_id, "scopes": record.scopes,
                                    "waba_ids": record.waba_ids, "fingerprint": self.ctx.fingerprint(secret)}
            try:
                self.ctx.secrets.put(ref, secret, self.ctx.backend_metadata(biz, prov))
                with self.ctx.store.transaction():  # the token and the journal step: one commit
                    self.ctx.store.add_version(token_id, 1, self.ctx.version_fields(secret, TokenSource.PROVISIONED,
                                                                                    prov), make_current=True)
                    record = self._journal(record, step="stored")
            except BaseException:
                self.ctx.discard(ref)
                with contextlib.suppress(VaultError):
                    self.ctx.store.drop_empty_token(token_id)
                raise
        self.ctx.audit("token.provision", label, version=1, system_user_id=su_id, scopes=list(record.scopes),
                       waba_ids=list(record.waba_ids), expiring=record.expiring, fingerprint=prov["fingerprint"],
                       provisioning=record.id)
        test_crash("provision.stored")
        with contextlib.suppress(VaultError):
            verify(self.ctx, label)  # stored and usable; `token verify` can be repeated
        return record

    def _token(self, record: ProvisioningRecord) -> TokenRecord | None:
        if record.kind != "provision" or record.label is None:
            return None
        try:
            return self.ctx.store.get_token(record.label, with_history=True)
        except NotFound:
            return None

    # ------------------------------------------------------------------ the seven-day rule
    def _defer(self, record: ProvisioningRecord, biz: BusinessRecord, app: AppCredentials, caller: Secret,
               exc: SevenDayWindow, from_reminder: bool) -> Deferred:
        """Meta refused with the seven-day rule: journal ``deferred``, a reminder dated when the window opens
        (``run-due`` reschedules its own reminder: none is added when it is the one running)."""
        opens_at, whose = self._window(record, biz, app, caller, exc)
        message = (f"Meta's seven-day rule refused {_what(record)}: {whose} is younger than seven days; possible "
                   f"from {opens_at:%Y-%m-%d %H:%M} UTC.")
        record = self._journal(record, state="deferred", error=exc.message)
        subject = record.label or record.name
        reminder_id = None
        if not from_reminder:
            reminder_id = self.ctx.store.add_reminder(subject, record.kind, biz.name, record.system_user_id,
                                                      {"provisioning_id": record.id}, opens_at, message,
                                                      self.ctx.now())
            self.ctx.notifier.notify(f"tokenvault: {_what(record)} deferred", message)
        self.ctx.audit(f"provision.{record.kind}.deferred", subject, provisioning=record.id, reminder=reminder_id,
                       opens_at=opens_at.isoformat())
        return Deferred(message, opens_at=opens_at, reminder_id=reminder_id,
                        hint=(f"Reminder #{reminder_id} recorded; " if reminder_id else "")
                        + "`tokenvault run-due` (cron/systemd) completes it once the window opens. "
                        + done_so_far(record))

    def _window(self, record: ProvisioningRecord, biz: BusinessRecord, app: AppCredentials, caller: Secret,
                exc: SevenDayWindow) -> tuple[datetime, str]:
        """When the refused step becomes possible: the admin's ``created_time`` + 7 days (creating: the caller's
        admin system user, asked with debug_token; minting: the system user minted for)."""
        if exc.opens_at is not None:
            return exc.opens_at, "the admin system user"
        su_id = record.system_user_id if record.step in ("created", "installed", "assigned") else None
        if su_id is None:
            with contextlib.suppress(VaultError):
                su_id = self.ctx.graph.debug_token(caller, app).user_id
        if su_id is not None:
            with contextlib.suppress(VaultError):
                su = self.ctx.store.get_system_user(su_id)
                return policy.window_opens_at(su.created_at), f"the admin system user {su.name} ({su.id})"
            created = None
            with contextlib.suppress(VaultError):
                created = self.ctx.graph.system_user_created_time(su_id, app, caller)
            if created is not None:
                return policy.window_opens_at(created), f"the admin system user {su_id}"
        admins = sorted((u for u in self.ctx.store.list_system_users(biz.name) if u.role.upper() == "ADMIN"),
                        key=lambda u: u.created_at)
        if admins:
            return policy.window_opens_at(admins[0].created_at), f"the admin system user {admins[0].name}"
        return self.ctx.now() + timedelta(days=1), "the admin system user (its age is unknown: retried daily)"

    # ------------------------------------------------------------------ lease
    def _lock(self, record: ProvisioningRecord) -> str:
        owner = lease_owner()
        if take_lease(self.ctx.store, _resource(record), owner, self.ctx.now(), LEASE_TTL)[0]:
            return owner
        raise RotationInProgress(f"Another run is provisioning system user {record.name} of {record.business_name}; "
                                 "nothing was done.", hint="Wait for it to finish; `tokenvault run-due` resumes it if "
                                                           "it died.")


def _what(record: ProvisioningRecord) -> str:
    if record.kind == "create_system_user":
        return f"creating system user {record.name}"
    return f"provisioning {record.label} (system user {record.name})"


def _resource(record: ProvisioningRecord) -> str:
    return f"provision:{record.business_name}:{record.name}"[:128]


def _check(name: str, role: str, waba_ids: Sequence[str], tasks: Sequence[str]
           ) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    name = name.strip()
    if not name or len(name) > 256 or any(c in name for c in "\r\n\t|"):
        raise InvalidInput(f"{name!r} is not a usable system user name.",
                           hint=f"A purpose name, e.g. {SUGGESTED_NAME}.")
    role_u = role.strip().upper()
    if role_u not in ROLES:
        raise InvalidInput(f"Unknown role {role!r}.", hint="--role admin or --role employee.")
    wabas = tuple(dict.fromkeys(w.strip() for w in waba_ids if w.strip()))
    for waba in wabas:
        if not waba.isdigit():
            raise InvalidInput(f"{waba!r} is not a WhatsApp Business Account id (digits).",
                               hint="Find it in Business Settings > Accounts > WhatsApp accounts.")
    tasks_t = tuple(dict.fromkeys(t.strip().upper() for t in tasks if t.strip())) or ("MANAGE",)
    unknown = [t for t in tasks_t if t not in WABA_TASKS]
    if unknown:
        raise InvalidInput(f"Unknown task(s) {', '.join(unknown)}.",
                           hint="One or more of " + ", ".join(WABA_TASKS) + " (MANAGE = full control).")
    return name, role_u, wabas, tasks_t


__all__ = ["DEFAULT_SCOPES", "WABA_TASKS", "ProvisionOutcome", "Provisioner", "done_so_far",
           "generic_name_warning"]
