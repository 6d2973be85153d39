"""Settings, resolved once and explicitly: flag > ``TOKENVAULT_*`` environment > config.toml > default.

Never read at import time; never reads HashiCorp's own ``VAULT_*`` variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from .errors import InvalidInput
from .records import field, record, record_fields, replace

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from .policy import Renewal

DEFAULT_GRAPH_URL = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v24.0"
KEY_PROVIDERS = ("keyring", "file", "env", "vault-transit")
BACKENDS = ("local", "vault")

# setting name -> environment variable (the contract's names)
ENV_NAMES: dict[str, str] = {
    "home": "TOKENVAULT_HOME",
    "db_url": "TOKENVAULT_DB_URL",
    "key_provider": "TOKENVAULT_KEY_PROVIDER",
    "backend": "TOKENVAULT_BACKEND",
    "vault_addr": "TOKENVAULT_VAULT_ADDR",
    "vault_token": "TOKENVAULT_VAULT_TOKEN",
    "vault_mount": "TOKENVAULT_VAULT_MOUNT",
    "vault_prefix": "TOKENVAULT_VAULT_PREFIX",
    "vault_namespace": "TOKENVAULT_VAULT_NAMESPACE",
    "vault_ca_cert": "TOKENVAULT_VAULT_CACERT",
    "vault_role_id": "TOKENVAULT_VAULT_ROLE_ID",
    "vault_transit_mount": "TOKENVAULT_VAULT_TRANSIT_MOUNT",
    "vault_transit_key": "TOKENVAULT_VAULT_TRANSIT_KEY",
    "graph_url": "TOKENVAULT_GRAPH_URL",
    "graph_version": "TOKENVAULT_GRAPH_VERSION",
    "graph_rate_limit": "TOKENVAULT_GRAPH_RATE_LIMIT",
    "notify_urls": "TOKENVAULT_NOTIFY_URLS",
    "keyring_service": "TOKENVAULT_KEYRING_SERVICE",
    "allow_insecure_http": "TOKENVAULT_ALLOW_INSECURE_HTTP",
    "refresh_margin_days": "TOKENVAULT_REFRESH_MARGIN_DAYS",
    "verify_interval": "TOKENVAULT_VERIFY_INTERVAL",
}
CONFIG_FILE = "config.toml"


def default_home() -> Path:
    """The platform's user data dir for tokenvault."""
    import platformdirs

    return Path(platformdirs.user_data_dir("tokenvault", appauthor=False))


@record(frozen=True)
class Settings:
    """Everything configurable. Secrets (vault token, master key) are read where used, not kept here."""

    home: Path = field(default_factory=default_home)
    db_url: str | None = None
    key_provider: str | None = None
    backend: str = "local"
    vault_addr: str | None = None
    vault_token: str | None = field(default=None, repr=False)
    vault_mount: str = "secret"
    vault_prefix: str = "tokenvault"
    vault_namespace: str | None = None
    vault_ca_cert: str | None = None
    vault_role_id: str | None = None
    vault_transit_mount: str = "transit"
    vault_transit_key: str = "tokenvault"
    graph_url: str = DEFAULT_GRAPH_URL
    graph_version: str = DEFAULT_GRAPH_VERSION
    graph_rate_limit: str | None = None  # "CALLS/SECONDS": the app's Graph API limit, kept client-side
    notify_urls: tuple[str, ...] = ()
    keyring_service: str = "tokenvault"
    allow_insecure_http: bool = False  # plain http:// to a Graph/Vault URL that is not on loopback
    refresh_margin_days: int = 10  # run-due refreshes a 60-day token this many days before it expires
    verify_interval: str = "24h"  # run-due checks (debug_token) each token not checked for this long

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'tokenvault.db'}"

    @property
    def config_path(self) -> Path:
        return self.home / CONFIG_FILE

    @classmethod
    def resolve(
        cls, flags: Mapping[str, object] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Resolve settings from flags (non-None values win), the environment, then config.toml."""
        env = os.environ if environ is None else environ
        flags = {k: v for k, v in (flags or {}).items() if v is not None}
        home_raw = flags.get("home") or env.get(ENV_NAMES["home"])
        home = Path(str(home_raw)).expanduser() if home_raw else default_home()
        values: dict[str, object] = {"home": home}
        values.update(_read_config_file(home / CONFIG_FILE))
        for name, var in ENV_NAMES.items():
            if name != "home" and env.get(var):
                values[name] = env[var]
        values.update({k: v for k, v in flags.items() if k != "home"})
        values["home"] = home
        return cls._coerce(values)

    @classmethod
    def _coerce(cls, values: Mapping[str, object]) -> Settings:
        known = set(record_fields(cls))
        unknown = set(values) - known
        if unknown:
            raise InvalidInput(f"Unknown setting(s) in config: {', '.join(sorted(unknown))}.",
                               hint=f"Known settings: {', '.join(sorted(known))}.")
        kwargs = dict(values)
        urls = kwargs.get("notify_urls")
        if isinstance(urls, str):
            kwargs["notify_urls"] = tuple(u.strip() for u in urls.replace("\n", ",").split(",") if u.strip())
        elif isinstance(urls, list):
            kwargs["notify_urls"] = tuple(str(u) for u in urls)
        if "allow_insecure_http" in kwargs:
            kwargs["allow_insecure_http"] = _boolean("allow_insecure_http", kwargs["allow_insecure_http"])
        settings = cls(**kwargs)  # type: ignore[arg-type]
        if settings.key_provider is not None and settings.key_provider not in KEY_PROVIDERS:
            raise InvalidInput(f"Unknown key provider {settings.key_provider!r}.",
                               hint=f"Choose one of: {', '.join(KEY_PROVIDERS)}.")
        if settings.graph_rate_limit is not None:
            parse_rate_limit(settings.graph_rate_limit)
        settings = replace(settings, refresh_margin_days=_margin_days(settings.refresh_margin_days))
        parse_duration(str(settings.verify_interval))
        if settings.backend not in BACKENDS:
            raise InvalidInput(f"Unknown secret backend {settings.backend!r}.",
                               hint=f"Choose one of: {', '.join(BACKENDS)}.")
        return settings

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)

    @property
    def renewal(self) -> Renewal:
        """When run-due refreshes and verifies tokens (``refresh_margin_days``, ``verify_interval``)."""
        from .policy import Renewal

        return Renewal(refresh_margin=timedelta(days=self.refresh_margin_days),
                       verify_interval=parse_duration(str(self.verify_interval)))

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """``graph_rate_limit`` as ``(calls, seconds)``; None when not set."""
        return parse_rate_limit(self.graph_rate_limit) if self.graph_rate_limit else None


def _boolean(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise InvalidInput(f"Invalid value {value!r} for {name}.", hint="Use true or false (1 or 0).")


def parse_rate_limit(text: str) -> tuple[int, float]:
    """``"200/3600"`` (calls per seconds) as ``(200, 3600.0)``; raises InvalidInput otherwise."""
    calls, _, seconds = str(text).partition("/")
    try:
        parsed = int(calls.strip()), float(seconds.strip())
    except ValueError:
        parsed = (0, 0.0)
    if parsed[0] < 1 or not 0 < parsed[1] < float("inf"):
        raise InvalidInput(f"Invalid Graph API rate limit {text!r}.",
                           hint="Give CALLS/SECONDS, e.g. TOKENVAULT_GRAPH_RATE_LIMIT=200/3600 "
                                "(200 calls in any hour).")
    return parsed


def _margin_days(value: object) -> int:
    try:
        days = int(str(value).strip())
    except ValueError:
        days = -1
    if not 0 <= days <= 59:
        raise InvalidInput(f"Invalid refresh margin {value!r}.",
                           hint="Give whole days from 0 to 59, e.g. TOKENVAULT_REFRESH_MARGIN_DAYS=10 (a 60-day token "
                                "is refreshed that many days before it expires).")
    return days


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``"24h"``, ``"30m"``, ``"2d"``, ``"90s"`` or plain seconds as a timedelta; raises InvalidInput otherwise."""
    raw = text.strip().lower()
    unit = raw[-1:] if raw[-1:] in _UNITS else "s"
    number = raw[:-1] if raw[-1:] in _UNITS else raw
    try:
        seconds = float(number) * _UNITS[unit]
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise InvalidInput(f"Invalid duration {text!r}.",
                           hint="Give a number and a unit, e.g. TOKENVAULT_VERIFY_INTERVAL=24h (s, m, h or d).")
    return timedelta(seconds=seconds)


def _read_config_file(path: Path) -> dict[str, object]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except NotADirectoryError:
        raise InvalidInput(f"TOKENVAULT_HOME {path.parent} is not a folder: a file is in the way.",
                           hint="Point TOKENVAULT_HOME (or --home) at a folder; `tokenvault init` creates it 0700.") \
            from None
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror}.", hint="Check the file's permissions.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not valid TOML: {exc}.", hint="Fix or remove the file.") from None
    data = plain_toml(text)
    if data is None:  # anything but the plain form init writes: TOML's own parser, and its errors
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"{path} is not valid TOML: {exc}.", hint="Fix or remove the file.") from None
    section = data.get("tokenvault", data)
    if not isinstance(section, dict):
        raise InvalidInput(f"{path}: [tokenvault] must be a table.")
    return {str(k): v for k, v in section.items()}


_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
#: Characters TOML allows in no comment and no basic string (controls but tab, and DEL), and CR (a lone one
#: is invalid, CRLF is left to tomllib with everything else unusual).
_REFUSED = frozenset(chr(c) for c in (*range(0x09), *range(0x0A, 0x20), 0x7F)) - {"\n"}


def plain_toml(text: str) -> dict[str, object] | None:
    """``text`` parsed as :mod:`tomllib` parses it, when it is in the plain form :func:`write_config` writes
    (blank lines, ``#`` comment lines, at most one ``[tokenvault]`` header before any key, and
    ``key = "value"`` lines: a bare key, a one-line basic string whose only escapes are ``\\\\`` and ``\\"``);
    None for anything else, which the caller gives to tomllib.

    ``tomllib`` costs ~2-4 ms to import, a fifth of the interpreter's own start-up, on every ``token reveal``
    and ``exec``; this reads the files init writes without it. ``tests/test_startup.py`` checks, on generated
    files of every form (and every character TOML treats specially), that the result is None or exactly
    tomllib's, and that whatever :func:`write_config` writes is read here."""
    if not _REFUSED.isdisjoint(text):
        return None
    data: dict[str, object] = {}
    table = data
    for line in text.split("\n"):
        line = line.strip(" \t")
        if not line or line[0] == "#":
            continue
        if line == "[tokenvault]":
            if data:  # a second header, or keys before it
                return None
            table = data["tokenvault"] = {}
            continue
        key, eq, value = line.partition("=")
        key, value = key.rstrip(" \t"), value.lstrip(" \t")
        if not eq or not key or not _BARE_KEY.issuperset(key) or key in table:
            return None
        parsed = _plain_string(value)
        if parsed is None:
            return None
        table[key] = parsed
    return data


def _plain_string(value: str) -> str | None:
    """The text of a one-line basic string ``"..."`` escaping only backslash and quote; None otherwise."""
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return None
    body = value[1:-1]
    if "\\" not in body:
        return None if '"' in body else body
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body) or body[i + 1] not in '\\"':
                return None
            out.append(body[i + 1])
            i += 2
            continue
        if char == '"':
            return None
        out.append(char)
        i += 1
    return "".join(out)


def write_config(path: Path, values: Mapping[str, str]) -> None:
    """Write config.toml (0600, atomic). Only plain strings; never secrets."""
    from .fileutil import atomic_write_private

    lines = ["# Written by `tokenvault init`. Flags and TOKENVAULT_* variables override these.", "[tokenvault]"]
    for key, value in values.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key} = "{escaped}"')
    atomic_write_private(path, ("\n".join(lines) + "\n").encode())
