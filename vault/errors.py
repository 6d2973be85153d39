"""The one exception tree of tokenvault.

Every error that leaves :mod:`vault` is a :class:`VaultError`. Each class carries
the process exit code of the CLI contract and a *hint*: what the user should do.
Messages never contain a secret value: constructors take labels, ids and reasons,
never a :class:`~meta_tokenvault.models.Secret`.

::

    VaultError (1: a bug)
    ├── UsageError (2)                bad usage or bad input
    │   └── InvalidInput
    ├── NotFound (3)
    ├── IntegrityError (4)            wrong key, tampered ciphertext, broken chain
    │   ├── WrongMasterKey
    │   ├── TamperedCiphertext
    │   └── AuditChainBroken
    ├── BackendUnavailable (5)        keyring, Vault, database
    │   ├── KeyringUnavailable
    │   ├── VaultUnavailable
    │   └── DatabaseUnavailable
    ├── GraphError (6)                Meta's Graph API refused or failed
    │   ├── TokenInvalid              190/102 (+ subcode)
    │   ├── PermissionMissing         3, 10, 200-299
    │   ├── RateLimited               4, 17, 32, 613, 80000-80014 (retry_after)
    │   ├── Transient                 1, 2, 5xx, timeouts
    │   └── InvalidRequest            100 and other refusals
    ├── Deferred (7)                  no eligible system user yet; reminder recorded
    │   └── SevenDayWindow            Meta's seven-day admin rule (opens_at)
    └── Conflict (8)                  another rotation of the same token is under way
        └── RotationInProgress
"""

from __future__ import annotations

from datetime import datetime


class VaultError(Exception):
    """Base of every tokenvault error. ``exit_code`` follows docs/contract."""

    exit_code: int = 1
    default_hint: str = "This is a bug in tokenvault; please report it (see SECURITY.md for security issues)."

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class UsageError(VaultError):
    """Bad usage or bad input (exit 2)."""

    exit_code = 2
    default_hint = "Run the command with --help to see its usage."


class InvalidInput(UsageError):
    """Input was read but is not acceptable (empty token, bad date, bad label...)."""


class NotFound(VaultError):
    """A named label, business, system user or reminder does not exist (exit 3)."""

    exit_code = 3
    default_hint = "List what exists with `tokenvault token list` or `tokenvault business list`."


class AlreadyExists(UsageError):
    """A label or key that must be unique exists already (exit 2); nothing was overwritten."""

    default_hint = "Choose another name, or rotate the existing token with `tokenvault token rotate`."


class IntegrityError(VaultError):
    """Stored data does not verify (exit 4): nothing was returned, nothing was changed."""

    exit_code = 4
    default_hint = "Check that the right master key is configured; restore the store from a backup if rows were edited."


class WrongMasterKey(IntegrityError):
    """The configured master key is not the key the data was sealed with."""

    default_hint = (
        "Configure the master key that `tokenvault init` created (TOKENVAULT_KEY_PROVIDER and its key); "
        "run `tokenvault doctor` to see which key is expected."
    )


class TamperedCiphertext(IntegrityError):
    """A ciphertext failed authentication: edited, truncated or moved to another record."""

    default_hint = "The record was altered outside tokenvault; restore it from a backup or re-import the token."


class AuditChainBroken(IntegrityError):
    """The audit trail's hash chain does not verify; ``event_id`` is the first bad event."""

    def __init__(self, message: str, *, event_id: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or "The audit trail was edited, reordered or truncated; "
                         "keep the database for investigation and restore from a backup.")
        self.event_id = event_id


class BackendUnavailable(VaultError):
    """A backend the command needs cannot be used (exit 5)."""

    exit_code = 5
    default_hint = "Run `tokenvault doctor` to see what is configured and reachable."


class KeyringUnavailable(BackendUnavailable):
    """No usable OS keyring backend (headless machine, locked keyring...)."""

    default_hint = (
        "Choose another key provider explicitly: `tokenvault init --key-provider file` (a 0600 key file in "
        "TOKENVAULT_HOME), `--key-provider env` (TOKENVAULT_MASTER_KEY) or `--key-provider vault-transit`."
    )


class VaultUnavailable(BackendUnavailable):
    """HashiCorp Vault / OpenBao is down, sealed, refused the credentials or timed out."""

    default_hint = "Check TOKENVAULT_VAULT_ADDR and TOKENVAULT_VAULT_TOKEN, and that the server is unsealed."


class DatabaseUnavailable(BackendUnavailable):
    """The metadata database cannot be opened, read or written."""

    default_hint = ("Check TOKENVAULT_DB_URL / TOKENVAULT_HOME: the file must exist, be writable and be a "
                    "tokenvault database.")


class GraphError(VaultError):
    """Meta's Graph API refused or failed (exit 6). ``code``/``subcode`` are Meta's, when known."""

    exit_code = 6
    default_hint = "Check the business's admin token and app secret (`tokenvault doctor`), then retry."

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id


class TokenInvalid(GraphError):
    """The token is expired, revoked or invalid (190/102). Never retried."""

    default_hint = "Rotate the token (`tokenvault token rotate LABEL`) or import a fresh one."


class PermissionMissing(GraphError):
    """The caller lacks a permission or access to the asset (3, 10, 200-299)."""

    default_hint = "Grant the system user the missing permission / asset in Business Settings, then retry."


class RateLimited(GraphError):
    """A Graph rate limit applies; ``retry_after`` seconds is Meta's estimate when it gave one."""

    default_hint = "Wait and retry; `tokenvault run-due` retries deferred work automatically."

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class Transient(GraphError):
    """A temporary Graph failure (codes 1/2, HTTP 5xx, timeouts) that outlived the retries."""

    default_hint = "Meta's API failed temporarily; retry in a few minutes."


class InvalidRequest(GraphError):
    """Meta rejected the request's parameters (100 and other refusals)."""


class Deferred(VaultError):
    """The work cannot be done yet; a reminder was recorded (exit 7). ``opens_at`` is when it can."""

    exit_code = 7
    default_hint = ("`tokenvault run-due` (from cron/systemd) finishes it when the window opens; "
                    "see `tokenvault reminders list`.")

    def __init__(
        self, message: str, *, opens_at: datetime | None = None, reminder_id: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.opens_at = opens_at
        self.reminder_id = reminder_id


class SevenDayWindow(Deferred):
    """Meta refused because an admin system user is younger than seven days."""

    def __init__(
        self,
        message: str,
        *,
        opens_at: datetime | None = None,
        system_user_id: str | None = None,
        code: int | None = None,
        subcode: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, opens_at=opens_at, hint=hint)
        self.system_user_id = system_user_id
        self.code = code
        self.subcode = subcode


class Conflict(VaultError):
    """Another operation holds the resource (exit 8)."""

    exit_code = 8
    default_hint = "Wait for the other run to finish, or resume it with `tokenvault run-due` once its lease expires."


class RotationInProgress(Conflict):
    """Another rotation of the same token is under way (its lease has not expired)."""


__all__ = [
    "AlreadyExists",
    "AuditChainBroken",
    "BackendUnavailable",
    "Conflict",
    "DatabaseUnavailable",
    "Deferred",
    "GraphError",
    "IntegrityError",
    "InvalidInput",
    "InvalidRequest",
    "KeyringUnavailable",
    "NotFound",
    "PermissionMissing",
    "RateLimited",
    "RotationInProgress",
    "SevenDayWindow",
    "TamperedCiphertext",
    "TokenInvalid",
    "Transient",
    "UsageError",
    "VaultError",
    "VaultUnavailable",
    "WrongMasterKey",
]
