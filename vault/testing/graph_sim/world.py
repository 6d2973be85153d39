"""The simulated world: businesses, apps, system users, WABAs, phone numbers and tokens (plain records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

WHATSAPP_SCOPES: tuple[str, ...] = ("whatsapp_business_management", "whatsapp_business_messaging")
# Permissions the simulator accepts in `scope`; anything else is "Provided permission is not valid".
KNOWN_SCOPES: frozenset[str] = frozenset({
    *WHATSAPP_SCOPES, "business_management", "whatsapp_business_manage_events", "ads_management", "ads_read",
    "catalog_management", "pages_show_list", "pages_read_engagement", "pages_manage_metadata",
    "pages_messaging", "read_insights", "instagram_basic", "instagram_manage_messages", "leads_retrieval",
})
SEVEN_DAYS = timedelta(days=7)
SIXTY_DAYS = timedelta(days=60)
SEVEN_DAY_MESSAGE = "The admin system user must be at least seven days old before creating other admin system users."
# SystemUser.Role of Meta's Business SDK (facebook-business, adobjects/systemuser.py): the full enum.
ROLES: tuple[str, ...] = (
    "ADMIN", "ADS_RIGHTS_REVIEWER", "DEFAULT", "DEVELOPER", "EMPLOYEE", "FINANCE_ANALYST", "FINANCE_EDIT",
    "FINANCE_EDITOR", "FINANCE_VIEW", "MANAGE", "PARTNER_CENTER_ADMIN", "PARTNER_CENTER_ANALYST",
    "PARTNER_CENTER_EDUCATION", "PARTNER_CENTER_MARKETING", "PARTNER_CENTER_OPERATIONS",
)
#: ``POST /{waba-id}/assigned_users`` tasks (reference §13, SDK ``WhatsAppBusinessAccount.Tasks``); MANAGE: full control
WABA_TASKS: tuple[str, ...] = ("MANAGE", "DEVELOP", "MANAGE_TEMPLATES", "MANAGE_PHONE", "VIEW_COST",
                               "MANAGE_EXTENSIONS", "VIEW_PHONE_ASSETS", "MANAGE_PHONE_ASSETS", "VIEW_TEMPLATES",
                               "MESSAGING")


def meta_time(value: datetime) -> str:
    """Meta's datetime format: ``2026-01-01T00:00:00+0000``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def unix(value: datetime) -> int:
    return int(value.timestamp())


@dataclass
class SimBusiness:
    id: str
    name: str
    requires_expiring_tokens: bool = False


@dataclass
class SimApp:
    id: str
    secret: str = field(repr=False)
    business_id: str
    name: str
    require_appsecret_proof: bool = True


@dataclass
class SimSystemUser:
    id: str
    business_id: str
    name: str
    role: str
    created_time: datetime
    installed_apps: set[str] = field(default_factory=set)
    waba_ids: set[str] = field(default_factory=set)  # WABAs assigned to it (what an EMPLOYEE reaches)
    waba_tasks: dict[str, list[str]] = field(default_factory=dict)  # the tasks of each assignment

    def age(self, now: datetime) -> timedelta:
        return now - self.created_time


@dataclass
class SimPhoneNumber:
    id: str
    waba_id: str
    display_phone_number: str
    verified_name: str
    quality_rating: str = "GREEN"


@dataclass
class SimWaba:
    id: str
    business_id: str
    name: str
    phone_number_ids: list[str] = field(default_factory=list)


@dataclass
class MintedToken:
    """A token the simulator knows. ``via``: ``business_settings`` (issued by hand with ``issue_token``),
    ``access_tokens`` (minted through the API) or ``fb_exchange_token`` (a refresh)."""

    value: str = field(repr=False)
    system_user_id: str
    app_id: str
    scopes: tuple[str, ...]
    expiring: bool
    issued_at: datetime
    revoked_at: datetime | None = None
    business_id: str = ""
    waba_ids: tuple[str, ...] = ()  # explicit restriction; empty: whatever the system user reaches
    via: str = "access_tokens"
    invalidated_subcode: int | None = None  # invalidated out of band (``revoked_at`` set too): Meta's 190 subcode

    @property
    def expires_at(self) -> datetime | None:
        return self.issued_at + SIXTY_DAYS if self.expiring else None

    def state(self, now: datetime) -> str:
        """``valid`` | ``revoked`` | ``expired``."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        expires = self.expires_at
        if expires is not None and now >= expires:
            return "expired"
        return "valid"

    def __repr__(self) -> str:
        return (f"MintedToken('…{self.value[-4:]}', system_user_id={self.system_user_id!r}, app_id={self.app_id!r}, "
                f"scopes={self.scopes!r}, expiring={self.expiring}, via={self.via!r})")


@dataclass(frozen=True)
class SimRequest:
    """One Graph request as the simulator saw it (tokens as given). ``status`` 0: the connection was dropped."""

    method: str
    path: str  # as received, with the version prefix
    route: str  # without the version prefix, e.g. "/123/access_tokens"
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # lower-case names
    at: datetime  # sim time
    status: int
    access_token: str | None = None


@dataclass(frozen=True)
class DemoWorld:
    """The ids and secrets of :meth:`GraphSimulator.demo_world`."""

    business_id: str
    business_name: str
    app_id: str
    app_secret: str = field(repr=False)
    old_admin_id: str
    new_admin_id: str
    employee_id: str
    waba_id: str
    phone_number_id: str
    admin_token: str = field(repr=False)
    second_waba_id: str = ""  # another WABA of the business (provisioning assigns WABAs)
    other_business_id: str = ""  # a second business, with a WABA of its own (tokenvault must not reach it)
    other_waba_id: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class World:
    """Plain containers; the simulator guards them with its lock."""

    def __init__(self) -> None:
        self.businesses: dict[str, SimBusiness] = {}
        self.apps: dict[str, SimApp] = {}
        self.system_users: dict[str, SimSystemUser] = {}
        self.wabas: dict[str, SimWaba] = {}
        self.phones: dict[str, SimPhoneNumber] = {}
        self.tokens: dict[str, MintedToken] = {}

    def reach(self, token: MintedToken) -> tuple[list[str], bool]:
        """The WABA ids ``token`` reaches and whether that is a restriction (False: admin sees all)."""
        if token.waba_ids:
            return sorted(token.waba_ids), True
        su = self.system_users[token.system_user_id]
        if su.role == "ADMIN":
            return sorted(w.id for w in self.wabas.values() if w.business_id == su.business_id), False
        return sorted(su.waba_ids), True

    def users_of(self, business_id: str) -> list[SimSystemUser]:
        return [su for su in self.system_users.values() if su.business_id == business_id]
