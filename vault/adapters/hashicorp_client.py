"""Building an hvac client explicitly, and the ONE table from hvac/requests errors to ours.

Why explicit: :class:`hvac.Client` quietly fills gaps from HashiCorp's environment
(``VAULT_ADDR``, ``VAULT_TOKEN`` or ``~/.vault-token``, ``VAULT_CACERT``/``VAULT_CAPATH``,
``VAULT_CLIENT_CERT``), and :mod:`requests` adds its own (proxies, ``REQUESTS_CA_BUNDLE``,
``~/.netrc``). tokenvault's contract is "never read ``VAULT_*`` implicitly", so
:func:`build_client` always passes url, token, verify and cert, and gives hvac a
:class:`requests.Session` with ``trust_env = False``. Proxies, when needed, are an argument.

hvac is imported inside the functions: ``tokenvault --help`` must not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from ..errors import AlreadyExists, InvalidInput, NotFound, VaultError, VaultUnavailable
from ..fallback import FastPathUnavailable

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any

    from ..config import Settings

DEFAULT_TIMEOUT = 10.0
_MAX_DETAIL = 160  # server error strings are quoted, cut to one short line

# A hook for a 400's error strings (e.g. Transit's "message authentication failed"): returns our
# error, or None to let the table decide.
BadRequestHook = Callable[[Sequence[str]], VaultError | None]


def build_client(
    url: str | None,
    *,
    token: str | None = None,
    role_id: str | None = None,
    secret_id: str | None = None,
    namespace: str | None = None,
    verify: bool | str = True,
    ca_cert: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    approle_mount: str = "approle",
    proxies: Mapping[str, str] | None = None,
) -> Any:
    """Return an authenticated :class:`hvac.Client` built only from the arguments.

    Auth: ``token``, or AppRole (``role_id`` and ``secret_id``; the caller reads the secret id
    from stdin or ``TOKENVAULT_VAULT_SECRET_ID``). A token wins over a configured role id, but a
    token *and* a secret id is ambiguous and refused. ``verify`` is ``True`` (system CAs), a CA
    bundle path, or ``False`` (tests only); ``ca_cert`` (TOKENVAULT_VAULT_CACERT), when set, is
    the bundle to verify with.

    Raises :class:`InvalidInput` when the address or credentials are missing or ambiguous,
    :class:`VaultUnavailable` when the AppRole login fails or the server cannot be reached.
    No request is made for token auth (the first call reveals a bad token).
    """
    import hvac
    import requests

    if not url or not url.startswith(("http://", "https://")):
        raise InvalidInput(
            "No usable Vault address: TOKENVAULT_VAULT_ADDR must be an http(s):// URL.",
            hint="Set TOKENVAULT_VAULT_ADDR, e.g. https://vault.example.com:8200 (VAULT_ADDR is not read).",
        )
    if ca_cert:
        verify = ca_cert
    if token and secret_id:
        raise InvalidInput(
            "Both a Vault token and an AppRole secret id were given; choose one.",
            hint="Unset TOKENVAULT_VAULT_TOKEN to log in with AppRole, or drop the secret id.",
        )
    if not token and not (role_id and secret_id):
        raise InvalidInput(
            "No Vault credentials: neither a token nor AppRole role id + secret id.",
            hint="Set TOKENVAULT_VAULT_TOKEN, or TOKENVAULT_VAULT_ROLE_ID and pass the secret id on stdin "
            "or in TOKENVAULT_VAULT_SECRET_ID (VAULT_TOKEN is not read).",
        )
    session = requests.Session()
    session.trust_env = False  # no proxy / CA bundle / .netrc from the environment
    client = hvac.Client(
        url=url.rstrip("/"),
        # "" (not None) before an AppRole login: None would make hvac read VAULT_TOKEN / ~/.vault-token
        token=token or "",
        cert=False,  # not None: None makes hvac read VAULT_CLIENT_CERT / VAULT_CLIENT_KEY
        verify=verify,  # never None: None makes hvac read VAULT_CACERT / VAULT_CAPATH
        timeout=timeout,
        proxies=dict(proxies) if proxies else None,
        session=session,
        namespace=namespace or None,
    )
    if not token:
        with translating(client.url, f"auth/{approle_mount}/login", "AppRole login",
                         policy="the AppRole's role id and a valid, unexpired secret id"):
            client.auth.approle.login(role_id=role_id, secret_id=secret_id, mount_point=approle_mount)
    return client


def client_from_settings(settings: Settings, *, secret_id: str | None = None,
                         timeout: float = DEFAULT_TIMEOUT) -> Any:
    """:func:`build_client` from :class:`~meta_tokenvault.config.Settings` (``vault_*`` fields only)."""
    return build_client(
        settings.vault_addr,
        token=settings.vault_token,
        role_id=settings.vault_role_id,
        secret_id=secret_id,
        namespace=settings.vault_namespace,
        ca_cert=settings.vault_ca_cert,
        timeout=timeout,
    )


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= _MAX_DETAIL else line[: _MAX_DETAIL - 1] + "…"


def _server_errors(exc: Exception) -> list[str]:
    """Vault's own error strings. Never ``str(exc)``: hvac puts whole response bodies there."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list):
        return [str(e) for e in errors]
    return []


def _connection_reason(exc: Exception) -> str:
    # requests' text is long and nested; name the cause instead of quoting it
    text = str(exc).lower()
    for needle, reason in (
        ("refused", "connection refused"),
        ("name or service not known", "host name not found"),
        ("nodename nor servname", "host name not found"),
        ("failed to resolve", "host name not found"),
        ("temporary failure in name resolution", "host name not found"),
        ("timed out", "timed out"),
        ("reset by peer", "connection reset"),
        ("remotedisconnected", "connection closed by the server"),
        ("connection aborted", "connection closed by the server"),
    ):
        if needle in text:
            return reason
    return "connection failed"


def translate_error(
    exc: Exception,
    *,
    addr: str,
    path: str | None = None,
    action: str = "request",
    policy: str | None = None,
    on_bad_request: BadRequestHook | None = None,
) -> VaultError:
    """Map an hvac or requests exception to tokenvault's tree; most specific first.

    ``addr`` is the server URL, ``path`` the Vault path, ``action`` what we tried ("read",
    "write", "encrypt"...), ``policy`` the grant a 403 needs (HCL-ish, named in the hint).
    ``on_bad_request`` may classify a 400 first (Transit). Messages are one line and never
    contain a secret value or the Vault token: only the URL, the path and Vault's own error
    strings (which do not echo request bodies).

    ====================================  ==========================================
    requests SSLError                     VaultUnavailable (TLS, hint: CA cert)
    requests Timeout / ConnectionError    VaultUnavailable "Vault at URL is unreachable"
    hvac VaultDown (503), sealed          VaultUnavailable, hint: unseal
    hvac VaultNotInitialized (501)        VaultUnavailable, hint: operator init
    hvac Forbidden (403) / Unauthorized   VaultUnavailable naming path + policy needed
    hvac InvalidPath (404)                NotFound
    hvac InvalidRequest "check-and-set"   AlreadyExists (nothing was overwritten)
    hvac InvalidRequest (other 400)       ``on_bad_request`` or VaultUnavailable
    anything else                         VaultUnavailable
    ====================================  ==========================================
    """
    import hvac.exceptions as hx
    import requests.exceptions as rx

    where = f" on {path}" if path else ""
    if isinstance(exc, VaultError):
        return exc
    if isinstance(exc, rx.SSLError):
        return VaultUnavailable(
            f"Vault at {addr} is unreachable: TLS verification failed.",
            hint="Set TOKENVAULT_VAULT_CACERT to the CA bundle that signed the server's certificate.",
        )
    if isinstance(exc, rx.Timeout):
        return VaultUnavailable(f"Vault at {addr} is unreachable: timed out during {action}{where}.",
                                hint="Check the network path to the server and that it is not overloaded.")
    if isinstance(exc, rx.ConnectionError):
        return VaultUnavailable(f"Vault at {addr} is unreachable: {_connection_reason(exc)}.",
                                hint="Check TOKENVAULT_VAULT_ADDR and that the server is running.")
    if isinstance(exc, rx.RequestException):
        return VaultUnavailable(f"Vault at {addr} is unreachable: {type(exc).__name__}.")
    errors = _server_errors(exc)
    detail = f" ({_one_line('; '.join(errors))})" if errors else ""
    if isinstance(exc, hx.VaultDown):
        if any("sealed" in e.lower() for e in errors):
            return VaultUnavailable(
                f"Vault at {addr} is sealed.",
                hint="Unseal it (`bao operator unseal` / `vault operator unseal`, or check auto-unseal), then retry.",
            )
        return VaultUnavailable(f"Vault at {addr} is unavailable (503){detail}.",
                                hint="The server is down, sealed or in maintenance; check its status.")
    if isinstance(exc, hx.VaultNotInitialized):
        return VaultUnavailable(f"Vault at {addr} is not initialized.",
                                hint="Initialize and unseal it (`bao operator init`), then retry.")
    if isinstance(exc, (hx.Forbidden, hx.Unauthorized)):
        need = f"grant the token's policy {policy}" if policy else "grant the token's policy access to that path"
        return VaultUnavailable(
            f"Vault at {addr} refused {action}{where}: permission denied.",
            hint=f"The token is expired/revoked or lacks a policy: {need} (see docs/vault.md).",
        )
    if isinstance(exc, hx.InvalidPath):
        return NotFound(f"Nothing found in Vault{where}.",
                        hint="Check TOKENVAULT_VAULT_MOUNT / TOKENVAULT_VAULT_PREFIX, or that it was never stored.")
    if isinstance(exc, hx.InvalidRequest):
        if any("check-and-set" in e for e in errors):
            return AlreadyExists(
                f"Vault{where} changed under us (check-and-set): that version exists already; nothing was overwritten.",
                hint="Another writer stored it first; reload and retry with the next version.",
            )
        if on_bad_request is not None:
            mapped = on_bad_request(errors)
            if mapped is not None:
                return mapped
        return VaultUnavailable(f"Vault at {addr} rejected {action}{where}{detail}.")
    if isinstance(exc, hx.RateLimitExceeded):
        return VaultUnavailable(f"Vault at {addr} rate-limited {action}{where}.", hint="Retry in a moment.")
    if isinstance(exc, hx.VaultError):
        return VaultUnavailable(f"Vault at {addr} failed {action}{where}: {type(exc).__name__}{detail}.")
    return VaultUnavailable(f"Vault at {addr} failed {action}{where}: {type(exc).__name__}.")


@contextmanager
def translating(
    addr: str,
    path: str | None,
    action: str,
    *,
    policy: str | None = None,
    on_bad_request: BadRequestHook | None = None,
) -> Iterator[None]:
    """Run a block of hvac calls; re-raise hvac/requests errors through :func:`translate_error`.

    hvac is imported only when something was raised: the fast read path runs
    :class:`~meta_tokenvault.adapters.secrets_hashicorp.HashicorpBackend` on a client without hvac
    (:mod:`~meta_tokenvault.adapters.hashicorp_light`), whose own signal passes through untouched.
    """
    try:
        yield
    except (VaultError, FastPathUnavailable):
        raise
    except Exception as exc:
        import hvac.exceptions as hx
        import requests.exceptions as rx

        if isinstance(exc, (hx.VaultError, rx.RequestException)):
            raise translate_error(exc, addr=addr, path=path, action=action, policy=policy,
                                  on_bad_request=on_bad_request) from exc
        raise


__all__ = ["DEFAULT_TIMEOUT", "build_client", "client_from_settings", "translate_error", "translating"]
