"""Deferred work and ``run-due``: the pass that cron / systemd timers / Kubernetes CronJobs run.

One pass, in order:

1. resume rotations that were interrupted (their process died; its lease is stale or expired);
2. for each open reminder whose date has come: notify once, then try the work (generate, rotate,
   refresh). Still blocked → the reminder moves to the new date; done → marked done and notified;
   failed → attempts counted, error kept, notified (given up after ``MAX_ATTEMPTS``);
3. policy rotation: tokens older than their ``max_age_days`` are rotated; expiring (60-day) tokens
   within ``REFRESH_MARGIN`` of expiry are rotated too.

Each reminder is claimed with a compare-and-set on its status, so two concurrent passes never do the
same work twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..errors import Deferred, NotFound, RotationInProgress, VaultError
from ..types import TokenStatus, as_utc
from .mint import generate_token
from .rotate import Rotator

if TYPE_CHECKING:
    from ..context import VaultContext
    from ..types import ReminderRecord

MAX_ATTEMPTS = 5
REFRESH_MARGIN = timedelta(days=7)
CLAIM_TTL = timedelta(minutes=30)


@dataclass
class RunDueReport:
    resumed: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    still_waiting: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    policy_rotated: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, list[str]]:
        return {"resumed": self.resumed, "completed": self.completed, "still_waiting": self.still_waiting,
                "failed": self.failed, "notified": self.notified, "policy_rotated": self.policy_rotated}


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
    def __init__(self, ctx: VaultContext) -> None:
        self.ctx = ctx
        self.rotator = Rotator(ctx)

    def run(self) -> RunDueReport:
        report = RunDueReport()
        self._resume_interrupted(report)
        self._resume_provisioning(report)
        for reminder in self.ctx.store.list_reminders(open_only=True):
            self._handle(reminder, report)
        self._policy(report)
        self.ctx.audit("run_due", "reminders", **{k: len(v) for k, v in report.as_json().items()})
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
        else:
            self.rotator.rotate(reminder.label)

    def _policy(self, report: RunDueReport) -> None:
        now = self.ctx.now()
        for token in self.ctx.store.list_tokens():
            if token.status is not TokenStatus.ACTIVE or self.ctx.store.open_rotation(token.id) is not None:
                continue
            too_old = token.max_age_days is not None and now - token.created_at >= timedelta(days=token.max_age_days)
            expiring = token.expires_at is not None and as_utc(token.expires_at) - now <= REFRESH_MARGIN
            if not (too_old or expiring):
                continue
            try:
                self.rotator.rotate(token.label, reason="policy: max age" if too_old else "policy: expiry",
                                    expected_version=token.version)
                report.policy_rotated.append(token.label)
            except Deferred:
                report.still_waiting.append(token.label)
            except VaultError as exc:
                report.failed.append(f"{token.label}: {exc.message}")
