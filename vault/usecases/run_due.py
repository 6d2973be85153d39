"""Deferred work and ``run-due``: the pass that cron / systemd timers / Kubernetes CronJobs run.

One pass, in order:

1. resume rotations that were interrupted (their process died; its lease is stale or expired);
2. for each open reminder whose date has come: notify once, then try the work (generate, rotate,
   refresh). Still blocked → the reminder moves to the new date; done → marked done and notified;
   failed → attempts counted, error kept, notified (given up after ``MAX_ATTEMPTS``);
3. detection: active tokens not checked within ``verify_interval`` are checked with debug_token; a dead
   one becomes ``invalidated`` (:mod:`.verify`);
4. renewal: expiring (60-day) tokens within ``refresh_margin`` of expiry are *refreshed*, invalidated ones
   *reissued* (unless ``on_invalid = alert``) (:mod:`.refresh`);
5. policy rotation: tokens older than their ``max_age_days`` are rotated.

Steps 3 and 4 overlap (renewals already known start while the checks run) and call Meta ``concurrency`` at
a time between them (the Graph client keeps the app's rate limit).

Each reminder is claimed with a compare-and-set on its status, so two concurrent passes never do the
same work twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, cast

from ..context import BoundedGraph
from ..errors import Deferred, NotFound, RotationInProgress, VaultError
from ..policy import rotation_due, verify_due
from ..types import TokenStatus, as_utc
from .mint import generate_token
from .refresh import WORKERS_PER_CALL, RenewalPlan, plan, renew
from .rotate import RotationOutcome, Rotator
from .verify import Check, verify_many

if TYPE_CHECKING:
    from ..context import VaultContext
    from ..ports.graph import GraphApi
    from ..types import ReminderRecord, TokenRecord

MAX_ATTEMPTS = 5
CLAIM_TTL = timedelta(minutes=30)


@dataclass
class RunDueReport:
    resumed: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    still_waiting: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    policy_rotated: list[str] = field(default_factory=list)
    verified: int = 0  # tokens checked with debug_token
    invalidated: list[str] = field(default_factory=list)  # found dead at Meta in this pass
    refreshed: list[str] = field(default_factory=list)
    reissued: list[str] = field(default_factory=list)
    alert_only: list[str] = field(default_factory=list)  # invalidated, policy on_invalid = alert: not reissued

    def as_json(self) -> dict[str, object]:
        return {"resumed": self.resumed, "completed": self.completed, "still_waiting": self.still_waiting,
                "failed": self.failed, "notified": self.notified, "policy_rotated": self.policy_rotated,
                "verified": self.verified, "invalidated": self.invalidated, "refreshed": self.refreshed,
                "reissued": self.reissued, "alert_only": self.alert_only}

    def counts(self) -> dict[str, int]:
        return {k: v if isinstance(v, int) else len(v) for k, v in self.as_json().items()}  # type: ignore[arg-type]


def ics_event(reminder: ReminderRecord, now: datetime) -> str:
    """An iCalendar (RFC 5545) event for a reminder, to put the date in a team calendar."""
    def stamp(value: datetime) -> str:
        return as_utc(value).strftime("%Y%m%dT%H%M%SZ")

    summary = f"tokenvault: {reminder.action} {reminder.label} becomes possible"
    description = (reminder.reason or "").replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//tokenvault//reminders//EN", "BEGIN:VEVENT",
        f"UID:tokenvault-reminder-{reminder.id}@tokenvault", f"DTSTAMP:{stamp(now)}",
        f"DTSTART:{stamp(reminder.due_at)}", f"DTEND:{stamp(reminder.due_at + timedelta(minutes=30))}",
        f"SUMMARY:{summary}", f"DESCRIPTION:{description} Run: tokenvault run-due",
        "END:VEVENT", "END:VCALENDAR",
    ]
    return "\r\n".join(lines) + "\r\n"


class DueRunner:
    def __init__(self, ctx: VaultContext, *, concurrency: int = 8,
                 progress: Callable[[str, str, str], None] | None = None) -> None:
        """``concurrency``: Graph calls in parallel for detection and renewal; ``progress(phase, label, state)``
        is called from worker threads as each token's check or renewal ends."""
        self.ctx = ctx
        self.rotator = Rotator(ctx)
        self.concurrency = concurrency
        self.progress = progress
        self._report_lock = threading.Lock()  # detection and renewal report from two threads

    def run(self) -> RunDueReport:
        report = RunDueReport()
        self._resume_interrupted(report)
        self._resume_provisioning(report)
        for reminder in self.ctx.store.list_reminders(open_only=True):
            self._handle(reminder, report)
        self._health(report)
        self._policy(report)
        self.ctx.audit("run_due", "reminders", **report.counts())
        return report

    def _resume_interrupted(self, report: RunDueReport) -> None:
        for rotation in self.ctx.store.open_rotations():
            if rotation.state != "running":
                continue  # deferred rotations resume through their reminder
            try:
                self.rotator.resume(rotation.id)
                report.resumed.append(rotation.label)
            except RotationInProgress:
                continue  # alive elsewhere: not ours to finish
            except Deferred:
                report.still_waiting.append(rotation.label)
            except VaultError as exc:
                report.failed.append(f"{rotation.label}: {exc.message}")

    def _resume_provisioning(self, report: RunDueReport) -> None:
        """Provisioning runs whose process died (``system-users create`` / ``provision``): finish them."""
        from .provision import Provisioner

        provisioner = Provisioner(self.ctx)
        for record in provisioner.interrupted():
            subject = record.label or record.name
            try:
                provisioner.resume(record.id)
                report.resumed.append(subject)
            except RotationInProgress:
                continue
            except Deferred:
                report.still_waiting.append(subject)
            except VaultError as exc:
                report.failed.append(f"{subject}: {exc.message}")

    def _perform_provisioning(self, reminder: ReminderRecord) -> None:
        """A deferred ``system-users create`` / ``provision``: resume its journal entry (it notifies what it did)."""
        from .provision import Provisioner

        provisioning_id = reminder.payload.get("provisioning_id")
        if not isinstance(provisioning_id, int):
            raise NotFound(f"Reminder #{reminder.id} names no provisioning run.")
        Provisioner(self.ctx).resume(provisioning_id, from_reminder=True)

    def _handle(self, reminder: ReminderRecord, report: RunDueReport) -> None:
        now = self.ctx.now()
        if as_utc(reminder.due_at) > now:
            report.still_waiting.append(reminder.label)
            return
        if not self.ctx.store.claim_reminder(reminder.id, reminder.status, "running", now=now, stale_after=CLAIM_TTL):
            return  # another run-due holds it (a claim older than CLAIM_TTL is taken over: its run died)
        if reminder.notified_at is None:
            sent = self.ctx.notifier.notify(f"tokenvault: {reminder.action} of {reminder.label} is due",
                                          f"{reminder.reason} The window has opened; tokenvault is completing it now.")
            self.ctx.store.update_reminder(reminder.id, notified_at=now)
            if sent:
                report.notified.append(reminder.label)
        try:
            self._perform(reminder)
        except Deferred as exc:
            self.ctx.store.update_reminder(reminder.id, status="waiting",
                                           due_at=exc.opens_at or now + timedelta(days=1),
                                         reason=exc.message, notified_at=None)
            report.still_waiting.append(reminder.label)
            return
        except VaultError as exc:
            attempts = reminder.attempts + 1
            status = "failed" if attempts >= MAX_ATTEMPTS else "waiting"
            self.ctx.store.update_reminder(reminder.id, status=status, attempts=attempts, last_error=exc.message,
                                         due_at=now + timedelta(minutes=15 * attempts))
            self.ctx.notifier.notify(f"tokenvault: {reminder.action} of {reminder.label} failed",
                                   f"{exc.message} ({attempts}/{MAX_ATTEMPTS} attempts)")
            self.ctx.audit("reminder.failed", reminder.label, reminder=reminder.id, error=exc.message)
            report.failed.append(f"{reminder.label}: {exc.message}")
            return
        self.ctx.store.update_reminder(reminder.id, status="done", done_at=self.ctx.now(), last_error=None)
        self.ctx.audit("reminder.done", reminder.label, reminder=reminder.id, work=reminder.action)
        if reminder.action not in ("create_system_user", "provision"):  # those notify what they did themselves
            self.ctx.notifier.notify(f"tokenvault: {reminder.action} of {reminder.label} completed",
                                   "The deferred work is done; check with `tokenvault token show`.")
        report.completed.append(reminder.label)

    def _perform(self, reminder: ReminderRecord) -> None:
        payload = reminder.payload
        if reminder.action in ("create_system_user", "provision"):
            self._perform_provisioning(reminder)
        elif reminder.action == "rotate":
            rotation_id = payload.get("rotation_id")
            if isinstance(rotation_id, int):
                try:
                    rotation = self.ctx.store.get_rotation(rotation_id)
                except NotFound:
                    rotation = None
                if rotation is not None and rotation.state in ("running", "deferred"):
                    self.rotator.resume(rotation_id)
                    return
            self.rotator.rotate(reminder.label, compromised=bool(payload.get("compromised")))
        elif reminder.action == "generate":
            generate_token(self.ctx, reminder.label, business=reminder.business_name,
                                  scopes=tuple(payload.get("scopes", ())),
                                  system_user_id=payload.get("system_user_id"),
                                  expiring=bool(payload.get("expiring")), from_reminder=True)
        elif reminder.action == "refresh":
            self.rotator.rotate(reminder.label, kind="refresh")
        else:
            self.rotator.rotate(reminder.label)

    # ------------------------------------------------------------------ detection and renewal (issue 13)
    def _health(self, report: RunDueReport) -> None:
        """Detection and renewal, overlapped: the renewals already known (tokens whose recorded expiry is inside
        ``refresh_margin``, tokens already invalidated) start at once, while every other active token not checked
        within ``verify_interval`` is checked with debug_token; a token a check finds dead is reissued at once
        (policy permitting); then the tokens the checks found expiring are refreshed. Checks and renewals share
        one bound of ``concurrency`` Graph calls in flight (and the Graph client's pacing), and one group commit:
        a renewal waits for commits, a check mostly for Meta, so together they keep the network and the database
        busy."""
        import queue
        from concurrent.futures import ThreadPoolExecutor

        ctx = self.ctx.with_graph(cast("GraphApi", BoundedGraph(self.ctx.graph, self.concurrency)))
        rotator = Rotator(ctx)
        records = self.ctx.store.list_tokens()
        first = plan(self.ctx, records)
        busy = {r.token_id for r in self.ctx.store.open_rotations()}
        now, interval = self.ctx.now(), self.ctx.renewal.verify_interval
        stale = {t.label: t for t in records if t.status is TokenStatus.ACTIVE and t.label not in first.refresh
                 and verify_due(t.verified_at, now=now, interval=interval)}
        found, dead = RenewalPlan(), queue.Queue[str | None]()

        def on_dead(check: Check) -> None:  # a worker thread of the checks; the reissue starts right away
            record = stale[check.label]
            if record.on_invalid != "alert" and record.id not in busy:
                found.reissue[check.label] = check.version
                dead.put(check.label)

        def found_dead() -> Iterator[str]:
            while (label := dead.get()) is not None:
                yield label

        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="renew") as background:
            renewing = background.submit(self._renew, ctx, rotator, first, report) if first else None
            reissuing = background.submit(self._renew, ctx, rotator, found, report, found_dead()) if stale else None
            try:
                if stale:
                    self._verify(ctx, rotator, list(stale.values()), report, on_dead)
            finally:
                dead.put(None)
            for work in (renewing, reissuing):
                if work is not None:
                    work.result()
        report.alert_only += first.alert_only
        second = plan(self.ctx, self.ctx.store.list_tokens())
        done = set(first.refresh) | set(first.reissue) | set(found.reissue)
        second.refresh = {k: v for k, v in second.refresh.items() if k not in done}
        second.reissue = {k: v for k, v in second.reissue.items() if k not in done}
        report.alert_only += [label for label in second.alert_only if label not in first.alert_only]
        if second:
            self._renew(ctx, rotator, second, report)

    def _verify(self, ctx: VaultContext, rotator: Rotator, stale: list[TokenRecord], report: RunDueReport,
                on_dead: Callable[[Check], None]) -> None:
        """debug_token ``stale``; dead ones become invalidated (see :func:`.verify.verify_many`) and are handed to
        ``on_dead`` as they are found."""
        progress = self.progress

        def tick(check: Check) -> None:
            if check.newly_invalidated:
                on_dead(check)
            if progress is not None:
                progress("verify", check.label, check.status if check.valid is not None else "failed")
        checks = verify_many(ctx, stale, concurrency=self.concurrency, progress=tick, group=rotator.group)
        with self._report_lock:
            report.verified += sum(c.valid is not None for c in checks)
            report.invalidated += [c.label for c in checks if c.newly_invalidated]
            report.failed += [f"{c.label}: {c.error}" for c in checks if c.valid is None]

    def _renew(self, ctx: VaultContext, rotator: Rotator, work: RenewalPlan, report: RunDueReport,
               found: Iterable[str] | None = None) -> None:
        """Refresh and reissue what ``work`` lists, and ``found`` (see :func:`.refresh.renew`); record the outcomes."""
        tick = None
        if self.progress is not None:
            progress = self.progress

            def tick(outcome: RotationOutcome) -> None:
                progress("refresh" if outcome.label in work.refresh else "reissue", outcome.label, outcome.state)
        outcomes = renew(ctx, work, concurrency=self.concurrency * WORKERS_PER_CALL, progress=tick, rotator=rotator,
                         found=found)
        with self._report_lock:
            for outcome in outcomes:
                if outcome.state == "done":
                    if outcome.label in work.reissue:
                        report.reissued.append(outcome.label)
                    elif outcome.kind == "refresh":
                        report.refreshed.append(outcome.label)
                    else:  # Meta refused the exchange: rotated through an admin instead
                        report.policy_rotated.append(outcome.label)
                elif outcome.state == "deferred":
                    report.still_waiting.append(outcome.label)
                elif outcome.state == "failed":
                    report.failed.append(f"{outcome.label}: {outcome.message}")

    # ------------------------------------------------------------------ policy rotation
    def _policy(self, report: RunDueReport) -> None:
        """Rotate tokens older than their ``max_age_days`` (expiring ones are refreshed by :meth:`_renew`)."""
        now = self.ctx.now()
        busy = {r.token_id for r in self.ctx.store.open_rotations()}
        for token in self.ctx.store.list_tokens():
            if token.status is not TokenStatus.ACTIVE or token.id in busy:
                continue
            if rotation_due(created_at=token.created_at, now=now, max_age_days=token.max_age_days) is None:
                continue
            try:
                self.rotator.rotate(token.label, reason="policy: max age", expected_version=token.version)
                report.policy_rotated.append(token.label)
            except Deferred:
                report.still_waiting.append(token.label)
            except VaultError as exc:
                report.failed.append(f"{token.label}: {exc.message}")
