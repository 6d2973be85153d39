"""The composition root: turns :class:`~meta_tokenvault.config.Settings` into a :class:`TokenManager`.

The only module that knows every adapter. Imports are lazy so that a command pays only for
what it uses (``--help`` imports none of hvac, httpx or SQLAlchemy).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import datetime

from .errors import KeyringUnavailable, UsageError

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from .config import Settings
    from .ports.clock import Clock
    from .ports.graph import GraphApi
    from .ports.keys import KeyProvider
    from .ports.notify import Notifier
    from .ports.secrets import SecretBackend
    from .service import TokenManager
    _T = TypeVar("_T")


def default_actor() -> str:
    """Who is acting, for the audit trail: user@host (overridable with TOKENVAULT_ACTOR)."""
    explicit = os.environ.get("TOKENVAULT_ACTOR")
    if explicit:
        return explicit
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{_hostname()}"


def _hostname() -> str:
    """socket.gethostname() without importing socket where POSIX has it: uname's node name is what it returns."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket

    return socket.gethostname()


def build_key_provider(settings: Settings, name: str, environ: Mapping[str, str] | None = None, *,
                       vault_client: Callable[[], Any] | None = None) -> KeyProvider:
    """The key provider called ``name`` (keyring | file | env | vault-transit).

    ``vault_client`` returns the hvac client to use (shared with the KV backend, so one AppRole
    login serves both); without it a client is built from ``settings``.
    """
    env = os.environ if environ is None else environ
    if name == "file":
        from .adapters.keys_file import FileKeyProvider

        return FileKeyProvider(settings.home / "keys")
    if name == "env":
        from .adapters.keys_env import EnvKeyProvider

        return EnvKeyProvider(env)
    if name == "keyring":
        from .adapters.keys_keyring import KeyringKeyProvider

        return KeyringKeyProvider(service=settings.keyring_service)
    if name == "vault-transit":
        from .adapters.keys_transit import TransitKeyProvider

        client = vault_client() if vault_client is not None else build_vault_client(settings, env)
        return TransitKeyProvider(client, mount=settings.vault_transit_mount, key_name=settings.vault_transit_key)
    raise UsageError(f"Unknown key provider {name!r}.", hint="Choose keyring, file, env or vault-transit.")


def build_vault_client(settings: Settings, environ: Mapping[str, str] | None = None, *,
                       secret_id: Callable[[], str] | None = None) -> Any:
    """An hvac client from TOKENVAULT_VAULT_* settings only (never HashiCorp's VAULT_* variables).

    AppRole: the secret id is TOKENVAULT_VAULT_SECRET_ID, else (with a role id and no token) what
    ``secret_id()`` returns; the CLI passes a reader of stdin / a hidden prompt. It is asked for
    only when needed, so a command that never touches Vault never reads it.
    """
    from .adapters.hashicorp_client import build_client

    env = os.environ if environ is None else environ
    approle_secret = env.get("TOKENVAULT_VAULT_SECRET_ID")
    if not approle_secret and secret_id is not None and settings.vault_role_id and not settings.vault_token \
            and settings.vault_addr:
        approle_secret = secret_id()
    if not settings.vault_addr:
        raise UsageError("TOKENVAULT_VAULT_ADDR is not set.",
                         hint="Set TOKENVAULT_VAULT_ADDR (and TOKENVAULT_VAULT_TOKEN or an AppRole) to use Vault.")
    return build_client(
        url=settings.vault_addr,
        token=settings.vault_token,
        namespace=settings.vault_namespace,
        ca_cert=settings.vault_ca_cert,
        role_id=settings.vault_role_id,
        secret_id=approle_secret,
    )


def choose_key_provider(settings: Settings, recorded: str | None) -> str:
    """The provider to use: explicit setting, else what init recorded, else keyring if it works."""
    if settings.key_provider:
        return settings.key_provider
    if recorded:
        return recorded
    from .adapters.keys_keyring import KeyringKeyProvider

    availability = KeyringKeyProvider(service=settings.keyring_service).availability()
    if availability.ok:
        return "keyring"
    raise KeyringUnavailable(f"No usable OS keyring on this machine ({availability.reason}).")


def choose_backend(settings: Settings, recorded: str | None, *, explicit: str | None,
                   refuse_contradiction: bool = True) -> str:
    """The secret backend to use: explicit > the store's recorded backend > config.toml/default.

    ``explicit`` is what a flag or TOKENVAULT_BACKEND named. The store records where its secrets
    are (init, then each ``backend migrate``), so it outranks config.toml, which init wrote once
    and a migration does not rewrite. An explicit choice that contradicts the record is refused
    (:class:`UsageError`): reading tokens from the other, empty or stale backend would be
    confusing at best. ``refuse_contradiction=False`` uses the record instead (for the
    ``backend`` commands, which exist to resolve exactly that).
    """
    if recorded is None:
        return settings.backend
    if explicit and explicit != recorded and refuse_contradiction:
        raise UsageError(
            f"The secret backend is set to {explicit!r} (--backend / TOKENVAULT_BACKEND), but this store's "
            f"secrets are in the {recorded!r} backend.",
            hint=f"Unset TOKENVAULT_BACKEND (the store's record is then used) or set it to {recorded}; to move "
                 f"the secrets run `tokenvault backend migrate --to {explicit}`.",
        )
    return recorded


def build_graph_factory(settings: Settings, clock: Clock, client: Any = None) -> Callable[[], GraphApi]:
    def factory() -> GraphApi:
        from .adapters.graph_httpx import HttpxGraphApi

        return HttpxGraphApi(client, base_url=settings.graph_url, version=settings.graph_version, clock=clock,
                             rate_limit=settings.rate_limit)

    return factory


def build_notifier(settings: Settings) -> Notifier:
    if not settings.notify_urls:
        from .ports.notify import NullNotifier

        return NullNotifier()
    from .adapters.notify_apprise import AppriseNotifier

    return AppriseNotifier(settings.notify_urls)


def build_manager(
    settings: Settings,
    *,
    create: bool = False,
    graph_client: Any = None,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
    key_provider: KeyProvider | None = None,
    secrets: SecretBackend | None = None,
    explicit_backend: str | None = None,
    vault_secret_id: Callable[[], str] | None = None,
    refuse_backend_contradiction: bool = True,
) -> TokenManager:
    """Build the manager for ``settings``.

    Refuses (InvalidInput, exit 2) a home, config.toml, database or key folder another user owns or can
    write, and a plain-http Graph/Vault URL off loopback (:func:`meta_tokenvault.safety.check_settings`).
    ``create`` makes the home (0700) and the database (0600) when missing (``init``); otherwise a
    missing store raises :class:`~meta_tokenvault.errors.DatabaseUnavailable` with the hint to run init.
    ``graph_client`` is an ``httpx.Client`` to use (tests and the demo pass one on the simulator).

    The secret backend is chosen by :func:`choose_backend`: ``explicit_backend`` is the backend a
    caller named on purpose (a CLI flag); TOKENVAULT_BACKEND in the environment is explicit too.
    A new, empty store records the backend it starts with. ``vault_secret_id`` reads an AppRole
    secret id when Vault needs one (:func:`build_vault_client`); one Vault client is shared by
    the Transit key provider and the KV backend.
    """
    from .adapters.store_sql import SqlStore
    from .ports.clock import SystemClock
    from .safety import check_settings, no_core_dumps
    from .service import TokenManager

    check_settings(settings)  # before anything is read from a folder, file or URL others could control
    no_core_dumps()  # this process may now hold keys and tokens: no core dump, no same-user ptrace
    if create and not settings.db_url:
        from .fileutil import ensure_private_dir

        ensure_private_dir(settings.home)
    store = SqlStore.open(settings.database_url, create=create)
    env = os.environ if environ is None else environ
    the_clock = clock or _test_clock(os.environ) or SystemClock()
    vault_client = _once(lambda: build_vault_client(settings, env, secret_id=vault_secret_id))
    try:
        recorded = store.get_setting("backend") or None
        backend = choose_backend(settings, recorded, explicit=explicit_backend or env.get("TOKENVAULT_BACKEND"),
                                 refuse_contradiction=refuse_backend_contradiction)
        if key_provider is None:
            name = choose_key_provider(settings, store.get_setting("key_provider"))
            key_provider = build_key_provider(settings, name, environ, vault_client=vault_client)
        if secrets is None:
            secrets = build_secret_backend(settings.with_overrides(backend=backend), store, key_provider, environ,
                                           vault_client=vault_client)
        if create and recorded is None and not store.list_businesses() and not store.list_tokens():
            # a new store remembers where its secrets go; an old one without the record keeps its settings
            store.set_setting("backend", secrets.name)
    except BaseException:
        store.close()
        raise
    return TokenManager(
        store=store,
        secrets=secrets,
        keys=key_provider,
        graph=build_graph_factory(settings, the_clock, graph_client),
        notifier=build_notifier(settings),
        clock=the_clock,
        actor=default_actor(),
        renewal=settings.renewal,
    )


def build_secret_backend(settings: Settings, store: Any, keys: KeyProvider,
                         environ: Mapping[str, str] | None = None, *,
                         vault_client: Callable[[], Any] | None = None) -> SecretBackend:
    """The secret backend ``settings.backend`` names (local | vault), as configured; nothing is checked here."""
    if settings.backend == "vault":
        from .adapters.secrets_hashicorp import HashicorpBackend

        client = vault_client() if vault_client is not None else build_vault_client(settings, environ)
        return HashicorpBackend(client, mount=settings.vault_mount, prefix=settings.vault_prefix)
    from .adapters.secrets_local import LocalBackend

    return LocalBackend(store, keys)


def shared_vault_client(manager: TokenManager) -> Callable[[], Any] | None:
    """The hvac client ``manager`` already uses (Transit key provider or KV backend), if any.

    Lets a second Vault adapter (``backend migrate``) reuse the login instead of asking again for
    an AppRole secret id that stdin no longer holds.
    """
    for adapter in (manager.secrets, manager.keys):
        if getattr(adapter, "name", None) in ("vault", "vault-transit") and getattr(adapter, "client", None):
            client = adapter.client  # type: ignore[union-attr]
            return lambda: client
    return None


class _FixedClock:
    def __init__(self, now: datetime) -> None:
        self._now = now

    def now(self) -> datetime:
        return self._now


def _test_clock(env: Mapping[str, str]) -> Clock | None:
    """Tests of a CLI subprocess against the simulator's virtual clock: ``TOKENVAULT_TEST_NOW=<ISO time>`` fixes
    "now" (e.g. seven days on, after ``/_sim/advance``). Honoured only with ``TOKENVAULT_TEST_MODE=1``."""
    raw = env.get("TOKENVAULT_TEST_NOW")
    if env.get("TOKENVAULT_TEST_MODE") != "1" or not raw:
        return None
    from .types import as_utc

    return _FixedClock(as_utc(datetime.fromisoformat(raw)))


def _once(factory: Callable[[], _T]) -> Callable[[], _T]:
    """``factory`` called at most once, on first use (so a local-only setup never builds a Vault client)."""
    cache: list[_T] = []

    def get() -> _T:
        if not cache:
            cache.append(factory())
        return cache[0]

    return get
