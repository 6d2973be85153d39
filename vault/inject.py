"""Getting tokens into deployments: templates, exports and ``exec``.

Pure logic plus process plumbing; no typer, no rich, nothing heavy at import time (``tokenvault
exec`` must start fast). Three ways out of the vault, from most to least contained:

* :func:`run_command` (``tokenvault exec``): the token exists only in the environment of one
  child process. Never in any argv, never in our own ``os.environ``, never in a file.
* :func:`parse_template` / :func:`render_template` (``tokenvault inject``): ``{{ tokenvault://LABEL }}``
  references in a config file; the caller writes the result 0600, atomically.
* ``export_*`` (``tokenvault export``): dotenv, JSON, a Kubernetes Secret, GitHub Actions' ``GITHUB_ENV``.

Template syntax
---------------
``{{ tokenvault://LABEL }}`` is the token's value; ``{{ tokenvault://LABEL/FIELD }}`` is one field of its
metadata (see :data:`FIELDS`). Whitespace inside the braces is optional. Only text starting with
``{{`` + optional whitespace + ``tokenvault:`` is special: every other byte, including other ``{{ ... }}``
templates (Helm, Jinja, Go), is copied unchanged. A backslash before a reference makes it literal:
``\\{{ tokenvault://x }}`` renders ``{{ tokenvault://x }}``; an even number of backslashes is halved and
the reference is still rendered (``\\\\{{ tokenvault://x }}`` renders a backslash and the value).
Values are inserted verbatim (no quoting): Meta tokens are ``[A-Za-z0-9]`` and safe in YAML, JSON, INI.
The whole template is parsed and every reference resolved before anything is returned, so a bad
reference means nothing is written.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets as _random
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .errors import InvalidInput, NotFound, UsageError, VaultError
from .types import Secret, TokenRecord, TokenStatus, as_utc

DEFAULT_VAR = "WHATSAPP_TOKEN"
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

# The labels meta_tokenvault.service.validate_label accepts: not starting with '.' or '-'.
_LABEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}\Z")
_VAR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class TokenSource(Protocol):
    """What injection needs from the service (:class:`meta_tokenvault.service.TokenManager` is one)."""

    def show_token(self, label: str) -> TokenRecord: ...

    def resolve(self, label: str, *, allow_inactive: bool = False,
                purpose: str = "read") -> tuple[TokenRecord, Secret]: ...


# ---------------------------------------------------------------------------------------------- templates
def _csv(values: Sequence[str]) -> str:
    return ",".join(values)


def _iso(record: TokenRecord, name: str) -> str:
    value = getattr(record, name)
    return as_utc(value).isoformat() if value is not None else ""


def _first_waba(record: TokenRecord) -> str:
    if not record.provenance.waba_ids:
        raise InvalidInput(f"Token {record.label!r} has no WABA id recorded.",
                           hint="Re-import it with --waba ID, or use a field it has (see docs/injection.md).")
    return record.provenance.waba_ids[0]


#: Metadata fields a template may reference (``{{ tokenvault://LABEL/FIELD }}``). Never the secret:
#: the secret is the reference without a field (or ``/token``). Dates are ISO 8601 UTC, "" when unset.
FIELDS: dict[str, Callable[[TokenRecord], str]] = {
    "label": lambda r: r.label,
    "status": lambda r: r.status.value,
    "version": lambda r: str(r.version),
    "source": lambda r: r.source.value,
    "business": lambda r: r.business_name,
    "business_id": lambda r: r.provenance.business_id,
    "system_user_id": lambda r: r.provenance.system_user_id,
    "app_id": lambda r: r.provenance.app_id,
    "scopes": lambda r: _csv(r.provenance.scopes),
    "waba_ids": lambda r: _csv(r.provenance.waba_ids),
    "waba_id": _first_waba,
    "created_at": lambda r: _iso(r, "created_at"),
    "expires_at": lambda r: _iso(r, "expires_at"),
    "verified_at": lambda r: _iso(r, "verified_at"),
    "fingerprint": lambda r: r.fingerprint,
    "last4": lambda r: r.last4,
    "backend": lambda r: r.backend,
}
TOKEN_FIELD = "token"

# Anything that starts like a reference must be a whole, valid one: a typo is an error, not literal text.
_START = re.compile(r"(\\*)\{\{[ \t]*tokenvault:")
_REF = re.compile(r"\{\{[ \t]*tokenvault://(?P<label>[^\s/{}]+)(?:/(?P<field>[^\s/{}]+))?[ \t]*\}\}")
SYNTAX_HINT = ("Write {{ tokenvault://LABEL }} for the token or {{ tokenvault://LABEL/FIELD }} for metadata "
               "(fields: " + ", ".join(sorted(FIELDS)) + "); escape a literal one as \\{{ tokenvault://... }}.")


@dataclass(frozen=True, slots=True)
class Reference:
    """One ``{{ tokenvault://LABEL[/FIELD] }}`` in a template; ``field`` is ``token`` for the value."""

    label: str
    field: str
    line: int
    col: int

    @property
    def wants_secret(self) -> bool:
        return self.field == TOKEN_FIELD


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal strings and :class:`Reference` objects, in order."""

    name: str
    parts: tuple[str | Reference, ...]

    @property
    def references(self) -> list[Reference]:
        return [p for p in self.parts if isinstance(p, Reference)]

    def where(self, ref: Reference) -> str:
        return f"{self.name}:{ref.line}:{ref.col}"


def _position(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``index`` in ``text``."""
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def parse_template(text: str, *, name: str = "<template>") -> Template:
    """Parse ``text``; no store access. Raises :class:`InvalidInput` naming ``name:line:col`` for a
    malformed reference, an invalid label or an unknown field."""
    parts: list[str | Reference] = []
    pos = 0
    for start in _START.finditer(text):
        if start.start() < pos:
            continue  # inside a reference already consumed
        slashes = len(start.group(1))
        brace = start.start() + slashes
        parts.append(text[pos:start.start()] + "\\" * (slashes // 2))
        if slashes % 2:  # escaped: the braces are literal text, the rest follows as plain text
            parts.append("{{")
            pos = brace + 2
            continue
        line, col = _position(text, brace)
        where = f"{name}:{line}:{col}"
        match = _REF.match(text, brace)
        if match is None:
            raise InvalidInput(f"{where}: malformed tokenvault reference.", hint=SYNTAX_HINT)
        label, field = match.group("label"), match.group("field") or TOKEN_FIELD
        if not _LABEL_RE.match(label):
            raise InvalidInput(f"{where}: {label!r} is not a valid label.", hint=SYNTAX_HINT)
        if field != TOKEN_FIELD and field not in FIELDS:
            raise InvalidInput(f"{where}: unknown field {field!r}.", hint=SYNTAX_HINT)
        parts.append(Reference(label, field, line, col))
        pos = match.end()
    parts.append(text[pos:])
    return Template(name, tuple(p for p in parts if p != ""))


def render_template(template: Template, source: TokenSource, *, allow_inactive: bool = False,
                    purpose: str = "inject") -> str:
    """The rendered text. Every reference is checked (label exists, token usable, field present)
    before any secret is decrypted, and everything is resolved before returning: the caller writes
    only a complete result. Raises NotFound / InvalidInput naming the reference's ``name:line:col``.
    Side effect: one audit event per label whose value is used (``token.<purpose>``)."""
    refs = template.references
    records: dict[str, TokenRecord] = {}
    for ref in refs:
        if ref.label in records:
            continue
        try:
            record = source.show_token(ref.label)
        except NotFound as exc:
            raise NotFound(f"{template.where(ref)}: no token labelled {ref.label!r}.", hint=exc.hint) from None
        _check_usable(record, allow_inactive, template.where(ref))
        records[ref.label] = record
    values: dict[str, Secret] = {}
    for ref in refs:
        if ref.wants_secret and ref.label not in values:
            record, secret = source.resolve(ref.label, allow_inactive=allow_inactive, purpose=purpose)
            records[ref.label], values[ref.label] = record, secret  # the record the value belongs to
    out: list[str] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
        elif part.wants_secret:
            out.append(values[part.label].reveal())
        else:
            try:
                out.append(FIELDS[part.field](records[part.label]))
            except InvalidInput as exc:
                raise InvalidInput(f"{template.where(part)}: {exc.message}", hint=exc.hint) from None
    return "".join(out)


def _check_usable(record: TokenRecord, allow_inactive: bool, where: str = "") -> None:
    if record.status is not TokenStatus.ACTIVE and not allow_inactive:
        prefix = f"{where}: " if where else ""
        raise InvalidInput(
            f"{prefix}token {record.label!r} is {record.status.value}; refusing to hand it out.",
            hint="Rotate it (`tokenvault token rotate`), or pass --allow-inactive if you really mean it.")


# ---------------------------------------------------------------------------------------------- token specs
@dataclass(frozen=True, slots=True)
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
    from .config import ENV_NAMES

    if not raw:
        raise InvalidInput("No token to inject.", hint="Name one with --token LABEL[:ENVVAR].")
    reserved = set(ENV_NAMES.values()) | set(VAULT_CREDENTIALS)
    specs: list[TokenSpec] = []
    for item in raw:
        label, sep, var = item.partition(":")
        if not _LABEL_RE.match(label):
            raise InvalidInput(f"{label!r} is not a valid label.", hint="Use --token LABEL or --token LABEL:ENVVAR.")
        if sep and not _VAR_RE.match(var):
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


@dataclass(frozen=True, slots=True)
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


# ---------------------------------------------------------------------------------------------- exports
_BARE_SAFE = re.compile(r"[A-Za-z0-9_./:@%+,=-]*\Z")


def dotenv_quote(value: str) -> str:
    """``value`` for a dotenv line. Meta tokens (``[A-Za-z0-9]``) and other values made of
    :data:`_BARE_SAFE` characters are written bare, which every reader (POSIX sh, systemd's
    ``EnvironmentFile=``, Docker Compose's ``env_file``, python-dotenv) reads back identically.
    Other values: single quotes when they hold neither ``'`` nor ``\\`` (literal for all of those readers);
    else double quotes with ``\\``, ``"``, ``$`` and backquote escaped, as sh and systemd read them
    (python-dotenv keeps a ``\\$`` as is). Raises InvalidInput for newlines/NUL (no portable form)."""
    if "\n" in value or "\r" in value or "\0" in value:
        raise InvalidInput("A value with a newline cannot be written portably to a dotenv file.",
                           hint="Use --format json instead.")
    if value and _BARE_SAFE.match(value):
        return value
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    escaped = re.sub(r'([\\"$`])', r"\\\1", value)
    return f'"{escaped}"'


def _provenance_comment(record: TokenRecord) -> str:
    return (f"# tokenvault export of {record.label} v{record.version} (fingerprint {record.fingerprint[:16]}). "
            "Contains a secret: keep this file private and out of version control.")


def export_dotenv(record: TokenRecord, secret: Secret, var: str = DEFAULT_VAR) -> str:
    """``VAR=value`` (quoted by :func:`dotenv_quote`) after a provenance comment."""
    _check_var(var)
    return f"{_provenance_comment(record)}\n{var}={dotenv_quote(secret.reveal())}\n"


def export_json(record: TokenRecord, secret: Secret, var: str = DEFAULT_VAR) -> str:
    """``{"label", "var", "token", "metadata"}``; metadata is the ``token show --json`` object."""
    _check_var(var)
    doc = {"label": record.label, "var": var, "token": secret.reveal(), "metadata": record.as_json()}
    return json.dumps(doc, indent=2) + "\n"


_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*\Z")
_DNS_LABEL_RE = re.compile(rf"{_DNS_LABEL}\Z")


def k8s_name(raw: str) -> str:
    """``raw`` made a valid Kubernetes object name (RFC 1123 subdomain, at most 253 characters):
    lower case, other characters become ``-``, each dot-separated part trimmed of leading/trailing ``-``."""
    lowered = re.sub(r"[^a-z0-9.-]+", "-", raw.lower())
    segments = [re.sub(r"-{2,}", "-", s).strip("-") for s in lowered.split(".")]
    name = ".".join(s for s in segments if s)[:253].rstrip(".-")
    if not _SUBDOMAIN_RE.match(name):
        raise InvalidInput(f"Cannot make a Kubernetes name out of {raw!r}.", hint="Pass --name NAME.")
    return name


def export_k8s_secret(record: TokenRecord, secret: Secret, var: str = DEFAULT_VAR, *, name: str | None = None,
                      namespace: str | None = None, string_data: bool = False) -> str:
    """A ``v1/Secret`` (type Opaque) for ``kubectl apply -f -``.

    ``metadata.name`` is ``name`` (validated, not altered: an explicit name that Kubernetes would refuse
    is an InvalidInput naming the sanitised alternative) or :func:`k8s_name` of the label. The value is in
    ``data`` (base64) or, with ``string_data``, ``stringData``. Provenance goes in ``tokenvault.io/*``
    annotations; the value never does (annotations are shown by ``kubectl describe``).
    Every scalar is written as a JSON string, which is a valid YAML double-quoted scalar.
    """
    _check_var(var)
    if name is not None and (len(name) > 253 or not _SUBDOMAIN_RE.match(name)):
        raise InvalidInput(f"{name!r} is not a valid Kubernetes name (RFC 1123: lower-case letters, digits, "
                           "'-' and '.', starting and ending with a letter or digit).",
                           hint=f"For example --name {k8s_name(name) if name.strip('.-_') else 'whatsapp-token'}.")
    if namespace is not None and (len(namespace) > 63 or not _DNS_LABEL_RE.match(namespace)):
        raise InvalidInput(f"{namespace!r} is not a valid Kubernetes namespace.",
                           hint="Lower-case letters, digits and '-', at most 63 characters.")
    p = record.provenance
    annotations = {
        "tokenvault.io/label": record.label,
        "tokenvault.io/business": record.business_name,
        "tokenvault.io/business-id": p.business_id,
        "tokenvault.io/system-user": p.system_user_id,
        "tokenvault.io/app": p.app_id,
        "tokenvault.io/scopes": ",".join(p.scopes),
        "tokenvault.io/waba-ids": ",".join(p.waba_ids),
        "tokenvault.io/version": str(record.version),
        "tokenvault.io/fingerprint": record.fingerprint,
        "tokenvault.io/created-at": as_utc(record.created_at).isoformat(),
        "tokenvault.io/expires-at": as_utc(record.expires_at).isoformat() if record.expires_at else "never",
    }
    q = json.dumps
    lines = [
        f"# tokenvault export of {record.label} v{record.version}. Contains a secret: apply it, don't commit it.",
        "apiVersion: v1",
        "kind: Secret",
        "type: Opaque",
        "metadata:",
        f"  name: {q(name or k8s_name(record.label))}",
    ]
    if namespace:
        lines.append(f"  namespace: {q(namespace)}")
    lines += ["  labels:", f"    app.kubernetes.io/managed-by: {q('tokenvault')}", "  annotations:"]
    lines += [f"    {key}: {q(value)}" for key, value in annotations.items()]
    if string_data:
        lines += ["stringData:", f"  {var}: {q(secret.reveal())}"]
    else:
        lines += ["data:", f"  {var}: {q(base64.b64encode(secret.reveal().encode()).decode())}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class GithubEnv:
    """GitHub Actions output: ``mask`` goes to the step's stdout (the runner reads workflow commands
    there and hides the value from every later log line); ``env_block`` is appended to ``$GITHUB_ENV``
    (multi-line syntax ``NAME<<DELIM`` ... ``DELIM`` with a random delimiter, so no value can end it)."""

    mask: str
    env_block: str

    def __repr__(self) -> str:  # both strings hold the value
        return "GithubEnv(<redacted>)"


def export_github_env(record: TokenRecord, secret: Secret, var: str = DEFAULT_VAR) -> GithubEnv:
    """The ``::add-mask::`` line and the ``GITHUB_ENV`` block for one token."""
    _check_var(var)
    value = secret.reveal()
    delimiter = f"ghadelimiter_{_random.token_hex(16)}"
    while delimiter in value:  # astronomically unlikely; but a delimiter inside the value would end it early
        delimiter = f"ghadelimiter_{_random.token_hex(16)}"
    return GithubEnv(mask=f"::add-mask::{value}\n", env_block=f"{var}<<{delimiter}\n{value}\n{delimiter}\n")


def _check_var(var: str) -> None:
    if not _VAR_RE.match(var):
        raise InvalidInput(f"{var!r} is not a valid variable name.",
                           hint="Use letters, digits and '_', not starting with a digit (e.g. WHATSAPP_TOKEN).")


def append_private(path: os.PathLike[str] | str, data: bytes) -> None:
    """Append ``data`` to ``path`` (created 0600 if missing; an existing file keeps its mode).
    For ``$GITHUB_ENV``, which the runner owns and other commands of the step append to."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError as exc:
        raise UsageError(f"Cannot open {os.fspath(path)} for appending: {exc.strerror}.") from None
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------- --mask
class StreamRedactor:
    """Replaces known secret values in a byte stream with ``<redacted:LABEL>``, across chunk borders.

    :meth:`feed` returns at once everything that can no longer become part of a secret; it holds back
    only the longest tail that is a proper prefix of some secret (at most ``len(secret) - 1`` bytes),
    so a secret written in two halves is still caught. Output is delayed only while its end could be
    the start of a secret (Meta tokens start with ``EAA``: a chunk ending in ``E`` waits for the next
    one, or for :meth:`flush` at end of stream). Bytes, not text: binary output passes intact.
    Only exact values are caught (not base64 or URL-encoded forms). When one value is a prefix of
    another, the longer one wins wherever it is complete.
    """

    def __init__(self, secrets: Mapping[str, Secret]) -> None:
        pairs = {s.reveal().encode(): f"<redacted:{label}>".encode() for label, s in secrets.items()
                 if s.reveal()}
        self._replacement = pairs
        self._values = sorted(pairs, key=len, reverse=True)  # longest first: a value inside another
        self._pattern = re.compile(b"|".join(re.escape(v) for v in self._values)) if pairs else None
        self._longest = len(self._values[0]) if pairs else 0
        self._tail = b""

    def __repr__(self) -> str:
        return f"StreamRedactor({len(self._values)} values)"

    def clone(self) -> StreamRedactor:
        """A redactor for the same values with its own (empty) tail: one per stream."""
        twin = object.__new__(StreamRedactor)
        twin._replacement, twin._values, twin._pattern = self._replacement, self._values, self._pattern
        twin._longest, twin._tail = self._longest, b""
        return twin

    def feed(self, data: bytes) -> bytes:
        """Redacted output that is final; keeps back a tail that may still grow into a secret."""
        if self._pattern is None:
            return data
        buf = self._tail + data
        # Bytes from ``limit`` on could be the start of a secret that the next chunk completes. A match
        # starting before ``limit`` is final: no longer value can start there and still be incomplete.
        limit = len(buf) - self._held_length(buf)
        out: list[bytes] = []
        pos = 0
        for match in self._pattern.finditer(buf):
            if match.start() >= limit:
                break
            out.append(buf[pos:match.start()])
            out.append(self._replacement[match.group()])
            pos = match.end()
        if pos > limit:  # a final match ran into the held tail: hold only what follows it
            limit = len(buf) - self._held_length(buf[pos:])
        out.append(buf[pos:limit])
        self._tail = buf[limit:]
        return b"".join(out)

    def _held_length(self, rest: bytes) -> int:
        for k in range(min(len(rest), self._longest - 1), 0, -1):
            suffix = rest[-k:]
            if any(v.startswith(suffix) for v in self._values):
                return k
        return 0

    def flush(self) -> bytes:
        """The held tail at end of stream, redacted (it may hold a value that is a prefix of another)."""
        tail, self._tail = self._tail, b""
        if self._pattern is None or not tail:
            return tail
        return self._pattern.sub(lambda m: self._replacement[m.group()], tail)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


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
            _write_all(dst, redactor.feed(data))
        _write_all(dst, redactor.flush())
    except OSError:  # BrokenPipeError included: our side is gone, stop copying
        pass
    finally:
        os.close(src)


# ---------------------------------------------------------------------------------------------- exec
class CommandNotRunnable(UsageError):
    """The command could not be started: 127 when it does not exist, 126 when it cannot be executed,
    the codes shells and ``env`` use, so scripts can tell them from the command's own exit codes."""

    def __init__(self, message: str, *, exit_code: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
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
    try:
        child = subprocess.Popen(list(argv), env=dict(env), stdout=pipe, stderr=pipe, close_fds=True)
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
        assert child.stdout is not None and child.stderr is not None
        # Each stream gets its own redactor state; the pipes are detached so only the pump closes them.
        for stream, dst in ((child.stdout, stdout_fd), (child.stderr, stderr_fd)):
            src = os.dup(stream.fileno())
            stream.close()
            thread = threading.Thread(target=_pump, args=(src, dst, redactor.clone()), daemon=True,
                                      name="tokenvault-mask")
            thread.start()
            threads.append(thread)
        child.stdout = child.stderr = None
    return child, threads


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
            redactor = StreamRedactor({i.spec.label: i.secret for i in injected}) if options.mask else None
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


__all__ = [
    "DEFAULT_VAR",
    "FIELDS",
    "FORWARDED_SIGNALS",
    "VAULT_CREDENTIALS",
    "CommandNotRunnable",
    "ExecOptions",
    "GithubEnv",
    "Injected",
    "Reference",
    "StreamRedactor",
    "Template",
    "TokenSource",
    "TokenSpec",
    "append_private",
    "child_environment",
    "current_key",
    "derived_var",
    "dotenv_quote",
    "exit_status",
    "export_dotenv",
    "export_github_env",
    "export_json",
    "export_k8s_secret",
    "k8s_name",
    "parse_template",
    "parse_token_specs",
    "render_template",
    "resolve_specs",
    "run_command",
    "version_key",
]
