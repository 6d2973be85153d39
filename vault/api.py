"""The in-process API for applications: read a token without a subprocess or a file."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .types import Secret, TokenRecord

if TYPE_CHECKING:
    from .service import TokenManager


class TokenVault:
    """A read-mostly handle on a tokenvault store.

    ``TokenVault.open()`` resolves configuration exactly as the CLI does (TOKENVAULT_* variables,
    then config.toml in TOKENVAULT_HOME). Reads are audited like ``tokenvault token reveal``.
    """

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    @classmethod
    def open(cls, home: str | None = None, *, environ: Mapping[str, str] | None = None,
             **settings: object) -> TokenVault:
        """Open the store. ``home`` and keyword settings override the environment (like CLI flags)."""
        from .config import Settings
        from .wiring import build_manager

        resolved = Settings.resolve({"home": home, **settings}, environ)
        explicit = settings.get("backend")
        return cls(build_manager(resolved, environ=environ, explicit_backend=str(explicit) if explicit else None))

    @property
    def manager(self) -> TokenManager:
        """The full service, for applications that manage tokens, not only read them."""
        return self._manager

    def get(self, label: str, *, allow_inactive: bool = False) -> Secret:
        """The current token of ``label``. Raises NotFound, InvalidInput (not active), IntegrityError."""
        return self._manager.resolve(label, allow_inactive=allow_inactive, purpose="read")[1]

    def record(self, label: str) -> TokenRecord:
        """Metadata and provenance of ``label`` (never the secret)."""
        return self._manager.show_token(label)

    def live(self, label: str, *, check_every: float = 30.0, allow_inactive: bool = False) -> LiveToken:
        """A handle that follows rotations of ``label`` in a long-running process (see :class:`LiveToken`).
        Resolves once now, so a missing or inactive token fails here, not at the first request."""
        return LiveToken(self._manager, label, check_every=check_every, allow_inactive=allow_inactive)

    def close(self) -> None:
        self._manager.close()  # the store and, if one was opened, the Graph client

    def __enter__(self) -> TokenVault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"TokenVault({self._manager.store.display_url!r})"


class LiveToken:
    """The current token of one label, for a process that runs across rotations.

    :meth:`get` returns the token it holds; at most every ``check_every`` seconds it first reads the
    label's metadata (no decryption, no audit event) and decrypts again only when the version changed.
    Call :meth:`refresh` when Meta rejects the token (error 190): it checks right away and returns
    True if a newer version was loaded, so the request is worth repeating. Thread-safe.
    Raises what :meth:`TokenVault.get` raises (NotFound, InvalidInput for an inactive token...).
    """

    def __init__(self, manager: TokenManager, label: str, *, check_every: float = 30.0,
                 allow_inactive: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self._manager = manager
        self.label = label
        self._check_every = check_every
        self._allow_inactive = allow_inactive
        self._clock = clock
        self._lock = threading.Lock()
        self._record, self._secret = manager.resolve(label, allow_inactive=allow_inactive, purpose="read")
        self._checked = clock()

    @property
    def version(self) -> int:
        """The version of the token :meth:`get` returns."""
        return self._record.version

    def get(self) -> Secret:
        with self._lock:
            if self._clock() - self._checked >= self._check_every:
                self._check()
            return self._secret

    def refresh(self) -> bool:
        """Check the store now; True if a different version was loaded."""
        with self._lock:
            return self._check()

    def _check(self) -> bool:
        self._checked = self._clock()
        current = self._manager.store.get_token(self.label)
        if (current.version, current.fingerprint) == (self._record.version, self._record.fingerprint):
            return False
        self._record, self._secret = self._manager.resolve(self.label, allow_inactive=self._allow_inactive,
                                                           purpose="read")
        return True

    def __repr__(self) -> str:
        return f"LiveToken({self.label!r}, v{self._record.version}, {self._secret!r})"
