"""`tokenvault review`: the system-user and token hygiene checks (Meta's best practices, checked).

Pure: the records, the time and the policy are arguments; nothing is read or changed here. Each check is a
function in :data:`CHECKS` taking a :class:`ReviewInput` and yielding :class:`ReviewFinding` s, so adding one is
adding a function. Every finding has a stable ``code`` (scripts key on it), a severity, the subject, a one-line
detail and a one-line fix.

==========================  ========  ==========================================================================
code                        severity  when
==========================  ========  ==========================================================================
``generic-name``            warning   a system user's name says nothing of its purpose ("System User 2", "admin")
``many-admins``             warning   a business has more than ``policy.max_admins`` admin system users
``admin-without-tokens``    warning   an admin system user no active token in the vault comes from
``broad-scopes``            warning   an active token holds business_management or ads scopes beside WhatsApp
                                      ones (info when it holds no WhatsApp scope: its purpose is unknown)
``never-verified``          warning   an active token was never checked with debug_token
``stale-verification``      info      an active token's last check is older than ``policy.stale_after_days``
``old-token``               warning   an active token is older than its max age (or ``policy.max_age_days``)
``expiring``                warning   an active token expires within ``policy.expiring_within_days``; critical
                                      once it has expired
``invalidated``             critical  Meta says the token is no longer valid (status ``invalidated``)
``unassigned-assets``       warning   the system user behind an active WhatsApp token has no WABA assigned,
                                      as far as is known (``assignments``, else the WABA ids debug_token gave)
==========================  ========  ==========================================================================
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..types import SystemUserRecord, TokenRecord, as_utc

if TYPE_CHECKING:
    from ..context import VaultContext


class Severity(str, enum.Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return {"info": 0, "warning": 1, "critical": 2}[self.value]


@dataclass(frozen=True, slots=True)
class ReviewFinding:
    code: str
    severity: Severity
    subject: str
    detail: str
    fix: str

    def as_json(self) -> dict[str, str]:
        return {"code": self.code, "severity": self.severity.value, "subject": self.subject, "detail": self.detail,
                "fix": self.fix}


#: Words that say nothing of a system user's purpose: a name made only of these (and digits) is generic, for
#: `review` (generic-name) and for `system-users create`/`provision`, which warn at creation.
GENERIC_WORDS = frozenset({
    "system", "systemuser", "sysuser", "su", "user", "users", "admin", "administrator", "employee", "test",
    "testing", "api", "apiuser", "bot", "default", "new", "my", "app", "token", "tokens", "integration",
    "meta", "facebook", "fb", "whatsapp", "wa", "the", "main", "primary", "general", "temp", "tmp",
    "account", "service", "conversions", "dev", "prod", "server"})


@dataclass(frozen=True, slots=True)
class ReviewPolicy:
    """The thresholds of the checks (defaults: Meta's advice where it gives one, else a sensible habit)."""

    max_admins: int = 2
    max_age_days: int = 90  # when a token has no max age of its own
    stale_after_days: int = 30
    expiring_within_days: int = 14
    #: Scopes a messaging token does not need: they reach the whole business or its ad accounts.
    broad_scopes: frozenset[str] = frozenset({
        "business_management", "ads_management", "ads_read", "pages_manage_ads", "catalog_management",
        "pages_manage_posts", "instagram_manage_messages"})
    #: Words that say nothing of a system user's purpose; a name made only of these (and digits) is generic.
    generic_words: frozenset[str] = GENERIC_WORDS


#: WABA ids assigned to a system user, or None when that is not known (the store does not record it yet).
Assignments = Callable[[str], Sequence[str] | None]


@dataclass(frozen=True)
class ReviewInput:
    tokens: Sequence[TokenRecord]
    system_users: Sequence[SystemUserRecord]
    now: datetime
    policy: ReviewPolicy = field(default_factory=ReviewPolicy)
    assignments: Assignments | None = None

    def active_tokens(self) -> list[TokenRecord]:
        return [t for t in self.tokens if t.status.value == "active"]


@dataclass
class ReviewReport:
    findings: list[ReviewFinding]

    @property
    def attention(self) -> bool:
        """A finding of severity warning or worse (the CLI exits 9)."""
        return any(f.severity.rank >= Severity.WARNING.rank for f in self.findings)

    def counts(self) -> dict[str, int]:
        return {s.value: sum(f.severity is s for f in self.findings) for s in reversed(Severity)}

    def as_json(self) -> dict[str, Any]:
        return {"findings": [f.as_json() for f in self.findings]}


def _su(user: SystemUserRecord) -> str:
    return f"system user {user.name} ({user.id})"


def _token(token: TokenRecord) -> str:
    return f"token {token.label}"


_WORD = re.compile(r"[a-z]+")


def is_generic_name(name: str, words: frozenset[str] = ReviewPolicy().generic_words) -> bool:
    """True when ``name`` is made only of generic words and digits ("System User 2", "admin", "api_bot")."""
    found = _WORD.findall(re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower())
    return all(w in words for w in found)


# ---------------------------------------------------------------------------------------------- checks
def generic_name(data: ReviewInput) -> Iterator[ReviewFinding]:
    for user in data.system_users:
        if is_generic_name(user.name, data.policy.generic_words):
            yield ReviewFinding("generic-name", Severity.WARNING, _su(user),
                                f"the name {user.name!r} does not say what the system user is for",
                                "Rename it in Business Settings after its one purpose, e.g. whatsapp-prod-sender.")


def many_admins(data: ReviewInput) -> Iterator[ReviewFinding]:
    by_business: dict[str, list[SystemUserRecord]] = {}
    for user in data.system_users:
        if user.role.upper() == "ADMIN":
            by_business.setdefault(user.business_name, []).append(user)
    for business, admins in sorted(by_business.items()):
        if len(admins) > data.policy.max_admins:
            yield ReviewFinding("many-admins", Severity.WARNING, f"business {business}",
                                f"{len(admins)} admin system users ({', '.join(u.name for u in admins)}); "
                                f"at most {data.policy.max_admins} are needed",
                                "Give employee access to the system users that only send messages; keep one "
                                "admin for minting (and one spare).")


def admin_without_tokens(data: ReviewInput) -> Iterator[ReviewFinding]:
    used = {t.provenance.system_user_id for t in data.active_tokens()}
    for user in data.system_users:
        if user.role.upper() == "ADMIN" and user.id not in used:
            yield ReviewFinding("admin-without-tokens", Severity.WARNING, _su(user),
                                "an admin system user that no active token in the vault comes from",
                                "Delete it in Business Settings if nothing else uses it, or demote it to employee.")


def broad_scopes(data: ReviewInput) -> Iterator[ReviewFinding]:
    for token in data.active_tokens():
        scopes = set(token.provenance.scopes)
        broad = sorted(scopes & data.policy.broad_scopes)
        if not broad:
            continue
        messaging = any(s.startswith("whatsapp_") for s in scopes)
        yield ReviewFinding(
            "broad-scopes", Severity.WARNING if messaging else Severity.INFO, _token(token),
            f"holds {', '.join(broad)}" + (" beside WhatsApp scopes" if messaging else ""),
            "Generate its replacement with only whatsapp_business_messaging (and whatsapp_business_management if it "
            f"manages templates): `tokenvault token generate NEW --scopes ...`, then revoke {token.label}.")


def never_verified(data: ReviewInput) -> Iterator[ReviewFinding]:
    for token in data.active_tokens():
        if token.verified_at is None:
            yield ReviewFinding("never-verified", Severity.WARNING, _token(token),
                                "never checked with Meta's debug_token: its scopes, WABAs and expiry are unconfirmed",
                                f"Run `tokenvault token verify {token.label}`.")


def stale_verification(data: ReviewInput) -> Iterator[ReviewFinding]:
    limit = timedelta(days=data.policy.stale_after_days)
    for token in data.active_tokens():
        if token.verified_at is not None and as_utc(data.now) - as_utc(token.verified_at) > limit:
            days = (as_utc(data.now) - as_utc(token.verified_at)).days
            yield ReviewFinding("stale-verification", Severity.INFO, _token(token),
                                f"last checked with Meta {days} days ago",
                                "Run `tokenvault token verify --all` regularly (e.g. with run-due from cron).")


def old_token(data: ReviewInput) -> Iterator[ReviewFinding]:
    for token in data.active_tokens():
        max_age = token.max_age_days or data.policy.max_age_days
        age = as_utc(data.now) - as_utc(token.created_at)
        if age >= timedelta(days=max_age):
            yield ReviewFinding("old-token", Severity.WARNING, _token(token),
                                f"{age.days} days old; the max age is {max_age} days",
                                f"Run `tokenvault token rotate {token.label}`.")


def expiring(data: ReviewInput) -> Iterator[ReviewFinding]:
    window = timedelta(days=data.policy.expiring_within_days)
    for token in data.active_tokens():
        if token.expires_at is None:
            continue
        left = as_utc(token.expires_at) - as_utc(data.now)
        if left <= timedelta(0):
            yield ReviewFinding("expiring", Severity.CRITICAL, _token(token),
                                f"expired on {as_utc(token.expires_at):%Y-%m-%d %H:%M} UTC",
                                f"Run `tokenvault token rotate {token.label}` (or generate a non-expiring token).")
        elif left <= window:
            yield ReviewFinding("expiring", Severity.WARNING, _token(token),
                                f"expires on {as_utc(token.expires_at):%Y-%m-%d %H:%M} UTC ({left.days} days left)",
                                f"Run `tokenvault token rotate {token.label}`, or let `tokenvault run-due` refresh it.")


def invalidated(data: ReviewInput) -> Iterator[ReviewFinding]:
    for token in data.tokens:
        if token.status.value == "invalidated":
            yield ReviewFinding("invalidated", Severity.CRITICAL, _token(token),
                                "Meta says this token is no longer valid: whatever uses it is failing",
                                f"Run `tokenvault token rotate {token.label} --compromised` (and find out why: "
                                "a removed system user, a password change, a revoked app).")


def unassigned_assets(data: ReviewInput) -> Iterator[ReviewFinding]:
    """Per system user behind an active WhatsApp token: its WABAs from ``assignments`` when that knows, else the
    WABA ids debug_token reported on its verified tokens; unknown (no finding) when neither says."""
    users = {u.id: u for u in data.system_users}
    known: dict[str, set[str]] = {}
    for token in data.active_tokens():
        if not any(s.startswith("whatsapp_") for s in token.provenance.scopes):
            continue
        su_id = token.provenance.system_user_id
        assigned = data.assignments(su_id) if data.assignments is not None else None
        if assigned is not None:
            known.setdefault(su_id, set()).update(assigned)
        elif token.verified_at is not None:
            known.setdefault(su_id, set()).update(token.provenance.waba_ids)
    for su_id, wabas in sorted(known.items()):
        if not wabas:
            user = users.get(su_id)
            subject = _su(user) if user else f"system user {su_id}"
            yield ReviewFinding("unassigned-assets", Severity.WARNING, subject,
                                "has no WhatsApp Business Account assigned: its tokens cannot send messages",
                                "Assign the WABA to the system user (Business Settings > System users > Assign "
                                "assets, task MANAGE), then `tokenvault token verify`.")


#: Every check, in the order they run. Add a check by adding a function here.
CHECKS: tuple[Callable[[ReviewInput], Iterable[ReviewFinding]], ...] = (
    generic_name, many_admins, admin_without_tokens, broad_scopes, never_verified, stale_verification, old_token,
    expiring, invalidated, unassigned_assets,
)
CODES = ("generic-name", "many-admins", "admin-without-tokens", "broad-scopes", "never-verified",
         "stale-verification", "old-token", "expiring", "invalidated", "unassigned-assets")


def review(tokens: Sequence[TokenRecord], system_users: Sequence[SystemUserRecord], *, now: datetime,
           policy: ReviewPolicy | None = None, assignments: Assignments | None = None,
           business: str | None = None) -> ReviewReport:
    """Run every check of :data:`CHECKS`; ``business`` keeps only that business's tokens and system users.
    Findings come worst first, then by code and subject. Pure: reads nothing, changes nothing."""
    if business is not None:
        tokens = [t for t in tokens if t.business_name == business]
        system_users = [u for u in system_users if u.business_name == business]
    data = ReviewInput(tokens, system_users, now, policy or ReviewPolicy(), assignments)
    findings = [finding for check in CHECKS for finding in check(data)]
    findings.sort(key=lambda f: (-f.severity.rank, f.code, f.subject))
    return ReviewReport(findings)


def review_store(ctx: VaultContext, business: str | None = None, policy: ReviewPolicy | None = None) -> ReviewReport:
    """:func:`review` over the store's tokens, system users and the WABA assignments tokenvault knows of.

    Raises NotFound (exit 3) for a business that is not registered."""
    if business is not None:
        ctx.store.get_business(business)
    known = ctx.store.system_user_wabas()

    def assignments(system_user_id: str) -> Sequence[str] | None:
        wabas = known.get(system_user_id)
        return None if wabas is None else sorted(wabas)

    return review(ctx.store.list_tokens(), ctx.store.list_system_users(business), now=ctx.now(), policy=policy,
                  assignments=assignments, business=business)


def markdown(report: ReviewReport, *, now: datetime, business: str | None = None) -> str:
    """The report as Markdown, to paste into a ticket."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    scope = f" of {business}" if business else ""
    lines = [f"## tokenvault review{scope} — {as_utc(now):%Y-%m-%d %H:%M} UTC", ""]
    counts = report.counts()
    if not report.findings:
        lines.append("No findings: every check passed.")
        return "\n".join(lines) + "\n"
    lines.append(f"{len(report.findings)} finding(s): " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + ".")
    lines += ["", "| severity | code | subject | detail | fix |", "|---|---|---|---|---|"]
    lines += [f"| {f.severity.value} | `{f.code}` | {cell(f.subject)} | {cell(f.detail)} | {cell(f.fix)} |"
              for f in report.findings]
    return "\n".join(lines) + "\n"


__all__ = ["CHECKS", "CODES", "ReviewFinding", "ReviewInput", "ReviewPolicy", "ReviewReport", "Severity",
           "GENERIC_WORDS", "is_generic_name", "markdown", "review", "review_store"]
