"""The GraphApi port: the part of Meta's Graph API tokenvault speaks (see docs/graph-api.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ..types import Secret


@dataclass(frozen=True, slots=True)
class AppCredentials:
    """An app and its secret (for appsecret_proof, debug_token and revoke)."""

    app_id: str
    app_secret: Secret = field(repr=False)


@dataclass(frozen=True, slots=True)
class SystemUserInfo:
    """A system user as the Graph API reports it. ``created_time`` is None when Meta did not say."""

    id: str
    name: str
    role: str  # "ADMIN" | "EMPLOYEE" | other Meta roles, upper-case
    created_time: datetime | None


@dataclass(frozen=True, slots=True)
class TokenDebugInfo:
    """What ``debug_token`` says of a token. ``expires_at`` None means never expires."""

    is_valid: bool
    app_id: str | None
    user_id: str | None
    scopes: tuple[str, ...]
    waba_ids: tuple[str, ...]
    expires_at: datetime | None
    issued_at: datetime | None
    type: str | None = None
    error_message: str | None = None


@dataclass(frozen=True, slots=True)
class RefreshedToken:
    token: Secret
    expires_in: int | None


class GraphApi(Protocol):
    """Calls to Meta. Every call that carries a token sends ``appsecret_proof`` for it.

    Errors are :class:`~meta_tokenvault.errors.GraphError` subclasses from one table
    (``TokenInvalid``, ``PermissionMissing``, ``RateLimited``, ``Transient``, ``InvalidRequest``)
    and :class:`~meta_tokenvault.errors.SevenDayWindow` for Meta's seven-day admin rule.
    """

    def list_system_users(self, business_id: str, app: AppCredentials, access_token: Secret) -> list[SystemUserInfo]:
        ...

    def system_user_created_time(
        self, system_user_id: str, app: AppCredentials, access_token: Secret
    ) -> datetime | None: ...

    def install_app(self, system_user_id: str, app: AppCredentials, access_token: Secret) -> None: ...

    def generate_token(
        self,
        system_user_id: str,
        app: AppCredentials,
        access_token: Secret,
        scopes: tuple[str, ...],
        *,
        expiring: bool = False,
    ) -> Secret: ...

    def debug_token(self, token: Secret, app: AppCredentials) -> TokenDebugInfo: ...

    def revoke_token(self, token: Secret, app: AppCredentials, caller_token: Secret) -> None: ...

    def refresh_token(self, token: Secret, app: AppCredentials) -> RefreshedToken: ...

    def check_whatsapp(self, token: Secret, app: AppCredentials, phone_number_id: str) -> dict[str, object]: ...
