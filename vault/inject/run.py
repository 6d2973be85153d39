"""The supervised child (``tokenvault exec``): tokens in one child's environment only.

Never in any argv, never in our own ``os.environ``, never in a file. Signals are forwarded, the exit
status is the child's, ``--mask`` copies its output through :class:`meta_tokenvault.redact.StreamRedactor`, and
``--restart-on-rotate`` restarts it when a token gets a new version."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

from ..errors import InvalidInput, UsageError, VaultError
from ..records import record
from ..types import Secret, TokenRecord
from .common import DEFAULT_VAR, LABEL_RE, VAR_RE, TokenSource, write_all

TYPE_CHECKING = False  # typing's constant without importing typing at run time (start-up); mypy reads it as True
if TYPE_CHECKING:
    from ..redact import StreamRedactor  # imported by run_command when --mask needs it

DERIVED_PREFIX = "TOKENVAULT_"
#: The vault's own credentials: removed from a child's environment unless asked to keep them. The
#: master keys (current and previous) open every token; a Vault token or AppRole secret id reaches the
#: Vault backend; notification URLs carry webhook/SMTP credentials.
VAULT_CREDENTIALS = ("TOKENVAULT_MASTER_KEY", "TOKENVAULT_MASTER_KEY_PREVIOUS", "TOKENVAULT_VAULT_TOKEN",
                     "TOKENVAULT_VAULT_SECRET_ID", "TOKENVAULT_NOTIFY_URLS")
#: Signals ``exec`` forwards to the child (SIGINT/SIGQUIT with one exception, see :class:`_SignalForwarder`).
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
#: Signals a terminal sends to its whole foreground process group (Ctrl-C, Ctrl-\\).
_FROM_TERMINAL = (signal.SIGINT, signal.SIGQUIT)


# ---------------------------------------------------------------------------------------------- token specs
@record(frozen=True, slots=True)
class TokenSpec:
    """``LABEL[:ENVVAR]`` from ``--token``, with the variable name decided."""

    label: str
    var: str


def derived_var(label: str) -> str:
    """The variable for a label when several tokens are injected without names: ``TOKENVAULT_<LABEL>``."""
    return DERIVED_PREFIX + re.sub(r"[^A-Z0-9]", "_", label.upper())


def parse_token_specs(raw: Sequence[str]) -> list[TokenSpec]:
    """Decide each token's environment variable.

    ``LABEL:VAR`` uses VAR. A single ``LABEL`` gets :data:`DEFAULT_VAR` (``WHATSAPP_TOKEN``); with
    several tokens, each unnamed one gets :func:`derived_var` (``prod-eu`` -> ``TOKENVAULT_PROD_EU``).
    Raises InvalidInput for no tokens, a bad label or name, a name used twice, or a name that would
    change how tokenvault itself is configured (``TOKENVAULT_HOME``...).
    """
    from ..config import ENV_NAMES

    if not raw:
        raise InvalidInput("No token to inject.", hint="Name one with --token LABEL[:ENVVAR].")
    reserved = set(ENV_NAMES.values()) | set(VAULT_CREDENTIALS)
    specs: list[TokenSpec] = []
    for item in raw:
        label, sep, var = item.partition(":")
        if not LABEL_RE.match(label):
            raise InvalidInput(f"{label!r} is not a valid label.", hint="Use --token LABEL or --token LABEL:ENVVAR.")
        if sep and not VAR_RE.match(var):
            raise InvalidInput(f"{var!r} is not a valid environment variable name.",
                               hint="Use letters, digits and '_', not starting with a digit (e.g. WHATSAPP_TOKEN).")
        if not sep:
            var = DEFAULT_VAR if len(raw) == 1 else derived_var(label)
        if var in reserved:
            raise InvalidInput(f"{var} configures tokenvault itself; it cannot carry a token.",
                               hint="Choose another variable: --token LABEL:ENVVAR.")
        specs.append(TokenSpec(label, var))
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.var in seen:
            raise InvalidInput(f"Both {seen[spec.var]!r} and {spec.label!r} would be {spec.var}.",
                               hint="Give each token its own variable: --token LABEL:ENVVAR.")
        seen[spec.var] = spec.label
    return specs


@record(frozen=True, slots=True)
class Injected:
    """A resolved token: its spec, the record of the version handed out, and the value (repr-safe)."""

    spec: TokenSpec
    record: TokenRecord
    secret: Secret


def resolve_specs(source: TokenSource, specs: Sequence[TokenSpec], *, allow_inactive: bool = False,
                  purpose: str = "exec") -> list[Injected]:
    """Resolve every spec (audited as ``token.<purpose>``). Raises NotFound / InvalidInput (inactive)."""
    out = []
    for spec in specs:
        record, secret = source.resolve(spec.label, allow_inactive=allow_inactive, purpose=purpose)
        out.append(Injected(spec, record, secret))
    return out


def version_key(records: Iterable[TokenRecord]) -> tuple[tuple[str, int, str], ...]:
    """What ``--restart-on-rotate`` compares: label, version and fingerprint (metadata only)."""
    return tuple((r.label, r.version, r.fingerprint) for r in records)


def current_key(source: TokenSource, labels: Sequence[str]) -> tuple[tuple[str, int, str], ...]:
    """:func:`version_key` read from the store now; decrypts nothing and writes no audit event."""
    return version_key(source.show_token(label) for label in labels)


def child_environment(base: Mapping[str, str], injected: Sequence[Injected], *,
                      keep_vault_credentials: bool = False) -> dict[str, str]:
    """``base`` plus one variable per token. The vault's own credentials (:data:`VAULT_CREDENTIALS`)
    are dropped unless ``keep_vault_credentials``: the child gets the tokens it asked for, not the
    key to all of them."""
    env = dict(base)
    if not keep_vault_credentials:
        for name in VAULT_CREDENTIALS:
            env.pop(name, None)
    for item in injected:
        env[item.spec.var] = item.secret.reveal()
    return env


# ---------------------------------------------------------------------------------------------- exec
def _pump(src: int, dst: int, redactor: StreamRedactor) -> None:
    """Copy ``src`` to ``dst`` through ``redactor`` until EOF. If ``dst`` is gone (a closed pipe), stop
    reading, so the child sees a broken pipe exactly as it would without us in between."""
    try:
        while True:
            try:
                data = os.read(src, 65536)
            except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity
                continue
            if not data:
                break
            write_all(dst, redactor.feed(data))
        write_all(dst, redactor.flush())
    except OSError:  # BrokenPipeError included: our side is gone, stop copying
        pass
    finally:
        os.close(src)


class CommandNotRunnable(UsageError):
    """The command could not be started: 127 when it does not exist, 126 when it cannot be executed,
    the codes shells and ``env`` use, so scripts can tell them from the command's own exit codes."""

    def __init__(self, message: str, *, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


@record(frozen=True, slots=True)
class ExecOptions:
    """``mask``: child output through :class:`StreamRedactor`. ``restart_on_rotate``: poll the tokens'
    metadata every ``poll_interval`` seconds; on a new version SIGTERM the child, SIGKILL after
    ``grace`` seconds, re-resolve and start it again."""

    mask: bool = False
    restart_on_rotate: bool = False
    poll_interval: float = 5.0
    grace: float = 10.0
    keep_vault_credentials: bool = False


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: its exit code, or 128+N after death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def _terminal_delivers(signum: int) -> bool:
    """True for SIGINT/SIGQUIT when we are the foreground process group of a terminal: a Ctrl-C (or
    Ctrl-\\) then reached the child (same group) directly, and forwarding it would deliver it twice
    (many programs take a second SIGINT as "quit now"). The same signal sent with ``kill`` in that
    situation is the one case not forwarded."""
    if signum not in _FROM_TERMINAL:
        return False
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            if os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp():
                return True
    return False


class _SignalForwarder:
    """Handlers that pass :data:`FORWARDED_SIGNALS` to the current child.

    Installed before the child starts and kept across restarts, so no signal falls between two
    children and kills us while a child lives on. A terminating signal (INT/TERM/HUP/QUIT) that
    arrives while no child runs is remembered: no further child is started, and one being started
    at that moment receives it as soon as it exists (:meth:`attach`). A signal ignored when we
    started (``nohup``, ``trap '' HUP``) stays ignored, by us and by the child, which inherits that.
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.terminated_by: int | None = None
        self._pending: list[int] = []
        self._old: dict[int, object] = {}

    def __enter__(self) -> _SignalForwarder:
        for sig in FORWARDED_SIGNALS:
            try:
                if signal.getsignal(sig) is signal.SIG_IGN:
                    continue
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (embedded use): forwarding is the caller's job
                break
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]

    def attach(self, child: subprocess.Popen[bytes]) -> None:
        """Make ``child`` the target; deliver a terminating signal that came while it was being started."""
        self.child = child  # first: from here on the handler sends directly and pends nothing
        pending, self._pending = self._pending, []
        for signum in pending:
            self._send(child, signum)

    def detach(self) -> None:
        self.child = None

    def _handle(self, signum: int, _frame: object) -> None:
        if signum in _TERMINATING and self.terminated_by is None:
            self.terminated_by = signum
        child = self.child
        if child is None:
            if signum in _TERMINATING:  # a USR1/USR2 would kill a child that has no handler yet
                self._pending.append(signum)
            return
        if _terminal_delivers(signum):
            return
        self._send(child, signum)

    @staticmethod
    def _send(child: subprocess.Popen[bytes], signum: int) -> None:
        if child.returncode is not None:
            return  # reaped: the pid may belong to another process by now
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)


_NOT_EXECUTABLE_HINT = "It must be an executable file (chmod +x), and a script needs a #! line."


def _spawn(argv: Sequence[str], env: Mapping[str, str], redactor: StreamRedactor | None,
           stdout_fd: int, stderr_fd: int) -> tuple[subprocess.Popen[bytes], list[threading.Thread]]:
    pipe = subprocess.PIPE if redactor is not None else None
    # One file behind both (a terminal, `2>&1`): one pipe and one redactor, so a value split between the
    # two streams is still seen whole, in the order the child wrote it.
    merged = redactor is not None and same_file(stdout_fd, stderr_fd)
    try:
        child = subprocess.Popen(list(argv), env=dict(env), stdout=pipe,
                                 stderr=subprocess.STDOUT if merged else pipe, close_fds=True)
    except FileNotFoundError:
        raise CommandNotRunnable(f"Command not found: {argv[0]!r}.", exit_code=127,
                                 hint="Check the name and PATH; put the command after `--`.") from None
    except PermissionError:
        raise CommandNotRunnable(f"Command cannot be executed: {argv[0]!r} (permission denied).",
                                 exit_code=126, hint=_NOT_EXECUTABLE_HINT) from None
    except OSError as exc:
        raise CommandNotRunnable(f"Command cannot be executed: {argv[0]!r} ({exc.strerror}).",
                                 exit_code=126, hint=_NOT_EXECUTABLE_HINT) from None
    threads: list[threading.Thread] = []
    if redactor is not None:
        assert child.stdout is not None and (merged or child.stderr is not None)
        # Each pipe gets its own redactor state; the pipes are detached so only the pump closes them.
        streams = [(child.stdout, stdout_fd)] if merged else [(child.stdout, stdout_fd), (child.stderr, stderr_fd)]
        for stream, dst in streams:
            assert stream is not None
            src = os.dup(stream.fileno())
            stream.close()
            thread = threading.Thread(target=_pump, args=(src, dst, redactor.clone()), daemon=True,
                                      name="tokenvault-mask")
            thread.start()
            threads.append(thread)
        child.stdout = child.stderr = None
    return child, threads


def same_file(fd1: int, fd2: int) -> bool:
    """True when both descriptors lead to one open file, pipe, socket or terminal (same st_dev and st_ino)."""
    try:
        a, b = os.fstat(fd1), os.fstat(fd2)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _stop(child: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; returns once the child is reaped."""
    if child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _redactor(injected: Sequence[Injected]) -> StreamRedactor:
    from ..redact import StreamRedactor

    return StreamRedactor({i.spec.label: i.secret for i in injected})


def run_command(
    argv: Sequence[str],
    resolve: Callable[[], list[Injected]],
    *,
    options: ExecOptions = ExecOptions(),  # noqa: B008 - frozen, immutable default
    watch: Callable[[], tuple[tuple[str, int, str], ...]] | None = None,
    base_env: Mapping[str, str] | None = None,
    notify: Callable[[str], None] = lambda _m: None,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
) -> int:
    """Run ``argv`` with the tokens ``resolve()`` returns in its environment; return its exit status
    (:func:`exit_status`: the child's code, 128+N after signal N).

    * The values go only into the child's environment (``execve``'s envp), never into any argv and
      never into ``os.environ``.
    * SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 sent to us are forwarded to the child
      (:class:`_SignalForwarder`); we keep waiting for it and report its status.
    * ``options.mask``: the child's stdout/stderr are pipes copied through a :class:`StreamRedactor`.
    * ``options.restart_on_rotate`` with ``watch`` (a metadata read, see :func:`current_key`): every
      ``poll_interval`` seconds; when the result differs from the versions handed out, the new tokens
      are resolved first (if that fails the running child is left alone and the check retried), then
      the child is stopped (:func:`_stop`) and a new one started with them. A child that exits on its
      own is never restarted: its status is ours.
    Raises :class:`CommandNotRunnable` (127/126) if the command cannot be started, and whatever
    ``resolve`` raises the first time. ``notify`` receives one-line messages for people (restarts,
    failed checks).
    """
    if not argv:
        raise UsageError("No command to run.", hint="Put it after `--`: tokenvault exec --token LABEL -- CMD ARGS.")
    base = os.environ if base_env is None else base_env
    injected = resolve()
    with _SignalForwarder() as forwarder:
        while True:
            if forwarder.terminated_by is not None:  # told to stop while no child ran: start none
                return 128 + forwarder.terminated_by
            env = child_environment(base, injected, keep_vault_credentials=options.keep_vault_credentials)
            redactor = _redactor(injected) if options.mask else None
            child, pumps = _spawn(argv, env, redactor, stdout_fd, stderr_fd)
            del env  # our copy of the values lives no longer than needed
            forwarder.attach(child)
            fresh: list[Injected] | None = None
            try:
                fresh = _supervise(child, injected, resolve, watch if options.restart_on_rotate else None,
                                   options, notify, forwarder)
                if fresh is not None:
                    _stop(child, options.grace)
            except BaseException:
                _stop(child, options.grace)  # never leave a child running with nobody waiting for it
                raise
            finally:
                forwarder.detach()
                for thread in pumps:
                    thread.join(timeout=5)  # a daemonised grandchild may hold the pipe open: don't hang on it
            assert child.returncode is not None
            if fresh is None or forwarder.terminated_by is not None:
                return exit_status(child.returncode)
            injected = fresh


def _supervise(child: subprocess.Popen[bytes], injected: Sequence[Injected], resolve: Callable[[], list[Injected]],
               watch: Callable[[], tuple[tuple[str, int, str], ...]] | None, options: ExecOptions,
               notify: Callable[[str], None], forwarder: _SignalForwarder) -> list[Injected] | None:
    """Wait for ``child``. None once it has exited; the freshly resolved tokens when a token changed
    (the child still running: the caller stops it)."""
    if watch is None:
        child.wait()
        return None
    handed_out = version_key(i.record for i in injected)
    last_problem = ""
    while True:
        try:
            child.wait(timeout=options.poll_interval)
            return None
        except subprocess.TimeoutExpired:
            pass
        if forwarder.terminated_by is not None:
            continue  # shutting down: let the child finish with the signal it was sent
        try:
            if watch() == handed_out:
                continue
            fresh = resolve()
        except VaultError as exc:  # a database hiccup or an unusable new version must not kill a running service
            if exc.message != last_problem:
                notify(f"tokenvault: cannot pick up the rotated token ({exc.message}); "
                       "the command keeps running with the one it has; will retry")
                last_problem = exc.message
            continue
        now = version_key(i.record for i in fresh)
        if now == handed_out:
            continue
        changed = ", ".join(f"{new[0]} v{old[1]} -> v{new[1]}" for old, new in zip(handed_out, now, strict=True)
                            if old != new)
        notify(f"tokenvault: token rotated ({changed}); restarting the command")
        return fresh
