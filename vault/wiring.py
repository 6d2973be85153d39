"""The composition root: turns :class:`~vault.config.Settings` into a :class:`TokenManager`.

The only module that knows every adapter. Imports are lazy so that a command pays only for
what it uses (``--help`` imports none of hvac, httpx or SQLAlchemy).
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import KeyringUnavailable, UsageError
from .fileutil import ensure_private_dir

if TYPE_CHECKING:
    from .config import Settings
    from .ports.clock import Clock
    from .ports.graph import GraphApi
    from .ports.keys import KeyProvider
    from .ports.notify import Notifier
    from .ports.secrets import SecretBackend
    from .service import TokenManager


def default_actor() -> str:
    """Who is acting, for the audit trail: user@host (overridable with TOKENVAULT_ACTOR)."""
    explicit = os.environ.get("TOKENVAULT_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def build_key_provider(settings: Settings, name: str, environ: Mapping[str, str] | None = None) -> KeyProvider:
    """The key provider called ``name`` (keyring | file | env | vault-transit)."""
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

        return TransitKeyProvider(build_vault_client(settings, env), mount=settings.vault_transit_mount,
                                  key_name=settings.vault_transit_key)
    raise UsageError(f"Unknown key provider {name!r}.", hint="Choose keyring, file, env or vault-transit.")


def build_vault_client(settings: Settings, environ: Mapping[str, str] | None = None) -> Any:
    """An hvac client from TOKENVAULT_VAULT_* settings only (never HashiCorp's VAULT_* variables)."""
    from .adapters.hashicorp_client import build_client

    env = os.environ if environ is None else environ
    if not settings.vault_addr:
        raise UsageError("TOKENVAULT_VAULT_ADDR is not set.",
                         hint="Set TOKENVAULT_VAULT_ADDR (and TOKENVAULT_VAULT_TOKEN or an AppRole) to use Vault.")
    return build_client(
        url=settings.vault_addr,
        token=settings.vault_token,
        namespace=settings.vault_namespace,
        ca_cert=settings.vault_ca_cert,
        role_id=settings.vault_role_id,
        secret_id=env.get("TOKENVAULT_VAULT_SECRET_ID"),
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


def build_graph_factory(settings: Settings, clock: Clock, client: Any = None) -> Callable[[], GraphApi]:
    def factory() -> GraphApi:
        from .adapters.graph_httpx import HttpxGraphApi

        return HttpxGraphApi(client, base_url=settings.graph_url, version=settings.graph_version, clock=clock)

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
) -> TokenManager:
    """Build the manager for ``settings``.

    ``create`` makes the home (0700) and the database (0600) when missing (``init``); otherwise a
    missing store raises :class:`~vault.errors.DatabaseUnavailable` with the hint to run init.
    ``graph_client`` is an ``httpx.Client`` to use (tests and the demo pass one on the simulator).
    """
    from .adapters.store_sql import SqlStore
    from .ports.clock import SystemClock
    from .service import TokenManager

    if create and not settings.db_url:
        ensure_private_dir(settings.home)
    store = SqlStore.open(settings.database_url, create=create)
    the_clock = clock or SystemClock()
    if key_provider is None:
        name = choose_key_provider(settings, store.get_setting("key_provider"))
        key_provider = build_key_provider(settings, name, environ)
    if secrets is None:
        secrets = build_secret_backend(settings, store, key_provider, environ)
    return TokenManager(
        store=store,
        secrets=secrets,
        keys=key_provider,
        graph=build_graph_factory(settings, the_clock, graph_client),
        notifier=build_notifier(settings),
        clock=the_clock,
        actor=default_actor(),
    )


def build_secret_backend(settings: Settings, store: Any, keys: KeyProvider,
                         environ: Mapping[str, str] | None = None) -> SecretBackend:
    if settings.backend == "vault":
        from .adapters.secrets_hashicorp import HashicorpBackend

        return HashicorpBackend(build_vault_client(settings, environ), mount=settings.vault_mount,
                                prefix=settings.vault_prefix)
    from .adapters.secrets_local import LocalBackend

    return LocalBackend(store, keys)
