"""Who is calling: the access token (system-user token or ``app_id|app_secret``) and its appsecret_proof."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from . import wire
from .invalidation import invalidated_failure
from .wire import Call, GraphFailure
from .world import MintedToken, SimApp, SimSystemUser, World


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """HMAC-SHA256(key=app_secret, message=access_token).hexdigest() — what Meta checks."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


@dataclass
class Caller:
    app: SimApp
    token: MintedToken | None = None  # None: an app access token
    system_user: SimSystemUser | None = None

    @property
    def is_app(self) -> bool:
        return self.token is None

    @property
    def business_id(self) -> str | None:
        return self.system_user.business_id if self.system_user else None

    @property
    def scopes(self) -> tuple[str, ...]:
        return self.token.scopes if self.token else ()


def check_token(world: World, value: str, now: datetime) -> MintedToken:
    """The record of a system-user token that works now. Raises 190 (467 unknown/revoked, 463 expired)."""
    record = world.tokens.get(value)
    if record is None:
        raise wire.invalid_token()
    state = record.state(now)
    if state == "revoked":
        raise invalidated_failure(record.invalidated_subcode)
    if state == "expired":
        assert record.expires_at is not None
        raise wire.expired_token(record.expires_at, now)
    return record


def app_of_app_token(world: World, value: str) -> SimApp | None:
    """The app of a valid ``app_id|app_secret``; None when ``value`` is not shaped like one."""
    if "|" not in value:
        return None
    app_id, _, secret = value.partition("|")
    app = world.apps.get(app_id)
    if app is None or not hmac.compare_digest(app.secret.encode(), secret.encode()):
        raise wire.bad_app_token()
    return app


def authenticate(world: World, call: Call, now: datetime, *, proof_required: bool = False) -> Caller:
    """Resolve the caller, checking appsecret_proof for system-user tokens.

    A proof that is present is always checked. A missing proof is refused when the token's app requires it
    ("Require App Secret") or the endpoint does (``proof_required``). App tokens need no proof.
    """
    value = call.token
    if not value:
        raise wire.token_required()
    proof = call.proof
    app = app_of_app_token(world, value)
    if app is not None:
        _check_proof(proof, app.secret, value)  # an app token's proof, when sent, is checked too
        return Caller(app)
    record = check_token(world, value, now)
    app = world.apps[record.app_id]
    if proof is not None:
        _check_proof(proof, app.secret, value)
    elif proof_required or app.require_appsecret_proof:
        raise wire.proof_missing()
    return Caller(app, record, world.system_users[record.system_user_id])


def _check_proof(proof: str | None, app_secret: str, access_token: str) -> None:
    """Refuse any proof but HMAC-SHA256(key=app secret, msg=the token of this call) in hex (case ignored)."""
    if proof is not None and not hmac.compare_digest(proof.lower().encode(),
                                                     appsecret_proof(app_secret, access_token).encode()):
        raise wire.proof_invalid()


def check_client(world: World, call: Call) -> SimApp:
    """``client_id`` + ``client_secret`` of the /oauth/* calls."""
    client_id = call.params.get("client_id", "")
    if not client_id:
        raise GraphFailure(101, "Missing client_id parameter.")
    app = world.apps.get(client_id)
    if app is None:
        raise GraphFailure(101, "Error validating application. Invalid application ID.")
    secret = call.params.get("client_secret", "")
    if not secret:
        raise GraphFailure(1, "Missing client_secret parameter.")  # Meta: code 1, not transient
    if not hmac.compare_digest(app.secret.encode(), secret.encode()):
        raise GraphFailure(1, "Error validating client secret.")
    return app
