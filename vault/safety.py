"""Checks that decide whether tokenvault may trust its surroundings, and process hardening.

One source of truth for the full path (:func:`meta_tokenvault.wiring.build_manager`) and the fast read path
(:func:`meta_tokenvault.fastread.open_fast`): both call :func:`check_settings` before they open anything secret.
Cheap by design (a few ``stat`` calls and a URL parse); stdlib only.

* :func:`trust_problems`: the home, ``config.toml``, the SQLite database and ``keys/`` must not be writable
  by another user, nor owned by one (root excepted): whoever can write them can point ``graph_url`` at
  their own listener, swap the database or plant a key. Key files are checked more strictly, for readers
  too (:func:`private_file_problem`).
* :func:`insecure_url_problems`: a Graph API or Vault URL on plain ``http://`` must be on loopback, unless
  ``allow_insecure_http`` is set: tokens and the app secret travel in those requests.
* :func:`no_core_dumps`: on Linux, ``prctl(PR_SET_DUMPABLE, 0)``.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from .errors import InvalidInput
from .records import record

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from .config import Settings

LOOPBACK_NAMES = ("localhost", "localhost.", "ip6-localhost")


@record(frozen=True, slots=True)
class Problem:
    """Something tokenvault will not trust: a one-line ``message`` and the command that fixes it."""

    message: str
    fix: str

    def error(self) -> InvalidInput:
        return InvalidInput(self.message, hint=self.fix)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); False for names and other addresses."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    import ipaddress  # only for a plain-http URL or a --host: not on every command's path

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _owner_problem(path: Path, info: os.stat_result, what: str) -> Problem | None:
    uid = os.geteuid()
    if info.st_uid not in (uid, 0):
        return Problem(f"The {what} {path} belongs to another user (uid {info.st_uid}); refusing to trust it.",
                       f"chown {_user()} {path} (as root), or use a {what} of your own.")
    return None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def path_problem(path: Path, what: str) -> Problem | None:
    """Why ``path`` (a file or folder tokenvault reads its setup from) cannot be trusted, or None.

    Another user may not own it (root may) nor write it (group/other write bits). A missing path is no
    problem here (commands that need it say so)."""
    try:
        info = path.stat()
    except OSError:
        return None
    owner = _owner_problem(path, info, what)
    if owner is not None:
        return owner
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o022:
        return Problem(f"The {what} {path} can be written by other users (mode {mode:o}); refusing to trust it.",
                       f"chmod go-w {path} (and check that nobody changed what is in it).")
    return None


def private_file_problem(path: Path, info: os.stat_result, what: str) -> Problem | None:
    """Why a file holding a secret (a key file) cannot be used: another user owns it or can read or write it."""
    owner = _owner_problem(path, info, what)
    if owner is not None:
        return owner
    if stat.S_IMODE(info.st_mode) & 0o077:
        return Problem(f"The {what} {path} can be read by other users; refusing to use it.",
                       f"chmod 600 {path} (and check who could have copied it).")
    return None


def trust_problems(settings: Settings) -> list[Problem]:
    """Every path of ``settings`` that cannot be trusted (see :func:`path_problem`), most general first."""
    from .config import CONFIG_FILE

    paths = [(settings.home, "home folder"), (settings.home / CONFIG_FILE, "configuration file")]
    db = _sqlite_path(settings.database_url)
    if db is not None:
        paths.append((db, "database file"))
    paths.append((settings.home / "keys", "key folder"))
    return [p for p in (path_problem(path, what) for path, what in paths) if p is not None]


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix):].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


def _urls(settings: Settings) -> Iterator[tuple[str, str, str]]:
    yield "Graph API URL", settings.graph_url, "TOKENVAULT_GRAPH_URL"
    if settings.vault_addr:
        yield "Vault address", settings.vault_addr, "TOKENVAULT_VAULT_ADDR"


def insecure_url_problems(settings: Settings) -> list[Problem]:
    """``http://`` Graph or Vault URLs that are not on loopback (unless ``allow_insecure_http``)."""
    if settings.allow_insecure_http:
        return []
    problems = []
    for what, url, var in _urls(settings):
        parts = urlsplit(url)
        if parts.scheme.lower() == "http" and not is_loopback_host(parts.hostname or ""):
            from .redact import strip_userinfo  # only for the message: not on every command's path

            problems.append(Problem(
                f"The {what} {strip_userinfo(url)} is plain http:// to another host: tokens and the app secret "
                "would cross the network unencrypted.",
                f"Use https://, or set allow_insecure_http = \"true\" (TOKENVAULT_ALLOW_INSECURE_HTTP=1) if that "
                f"network is yours (see {var} in docs/configuration.md)."))
    return problems


def check_settings(settings: Settings) -> None:
    """Raise the first :class:`Problem` of :func:`trust_problems` or :func:`insecure_url_problems` as
    InvalidInput (exit 2). Called before any secret is read, by the full and the fast path alike."""
    for problem in (*trust_problems(settings), *insecure_url_problems(settings)):
        raise problem.error()


_hardened = False


def no_core_dumps() -> bool:
    """On Linux, ``prctl(PR_SET_DUMPABLE, 0)``: no core dump of this process, and other processes of the same
    user can no longer ptrace it or read its ``/proc/<pid>/mem`` (root still can). Idempotent; True if set.

    Not inherited across ``execve`` by a child that ``exec`` starts: the kernel makes a new program
    dumpable again (unless it is setuid), so a child debugs and dumps as usual."""
    global _hardened
    if _hardened:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        _hardened = _prctl(_PR_SET_DUMPABLE, 0) == 0
    except (OSError, AttributeError):  # no libc symbol (musl static builds): nothing to harden
        return False
    return _hardened


_PR_SET_DUMPABLE = 4


def _prctl(option: int, arg: int) -> int:
    """libc's ``prctl(option, arg, 0, 0, 0)``. Called through cffi's backend, which ``cryptography`` loads
    anyway to open a sealed blob (``ctypes`` alone costs ~1.5 ms to import, on every ``token reveal``);
    through ``ctypes`` where there is no cffi. Raises OSError/AttributeError when libc has no ``prctl``."""
    try:
        import _cffi_backend as cffi  # type: ignore[import-untyped]

        c_int, c_ulong = cffi.new_primitive_type("int"), cffi.new_primitive_type("unsigned long")
        signature = cffi.new_function_type((c_int, c_ulong, c_ulong, c_ulong, c_ulong), c_int, False)
        prctl = cffi.load_library(None).load_function(signature, "prctl")
    except (ImportError, AttributeError, TypeError, OSError):  # no cffi, another cffi, no symbol: ctypes decides
        import ctypes

        result: int = ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
        return result
    result = prctl(option, arg, 0, 0, 0)
    return result


__all__ = ["Problem", "check_settings", "insecure_url_problems", "is_loopback_host", "no_core_dumps",
           "path_problem", "private_file_problem", "trust_problems"]
