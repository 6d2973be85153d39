"""Export formats (``tokenvault export``): dotenv, JSON, a Kubernetes Secret, GitHub Actions' ``GITHUB_ENV``.

Each function returns text holding the secret; the caller decides where it goes."""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import stat

from ..errors import InvalidInput, UsageError
from ..records import record
from ..types import Secret, TokenRecord, as_utc
from .common import DEFAULT_VAR, check_var, write_all

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
    check_var(var)
    return f"{_provenance_comment(record)}\n{var}={dotenv_quote(secret.reveal())}\n"


def export_json(record: TokenRecord, secret: Secret, var: str = DEFAULT_VAR) -> str:
    """``{"label", "var", "token", "metadata"}``; metadata is the ``token show --json`` object."""
    check_var(var)
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
    check_var(var)
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


@record(frozen=True, slots=True)
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
    check_var(var)
    import secrets  # here only: it imports random and hashlib, and exec imports this package's run module

    value = secret.reveal()
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:  # astronomically unlikely; but a delimiter inside the value would end it early
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    return GithubEnv(mask=f"::add-mask::{value}\n", env_block=f"{var}<<{delimiter}\n{value}\n{delimiter}\n")


def append_private(path: os.PathLike[str] | str, data: bytes, *, refuse_shared: bool = False) -> None:
    """Append ``data`` to ``path`` (created 0600 if missing; an existing file keeps its mode).
    For ``$GITHUB_ENV``, which the runner owns and other commands of the step append to.

    Never follows a symlink (``O_NOFOLLOW``): a link planted at the path cannot redirect the secret.
    ``refuse_shared`` (a path the user named): an existing file that the group or others can read, or
    that is not a regular file, is refused (InvalidInput) before anything is written."""
    name = os.fspath(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InvalidInput(f"{name} is a symbolic link; refusing to write a secret through it.",
                               hint="Give -o the real path of a private file.") from None
        raise UsageError(f"Cannot open {name} for appending: {exc.strerror}.") from None
    try:
        info = os.fstat(fd)
        if refuse_shared and (not stat.S_ISREG(info.st_mode) or stat.S_IMODE(info.st_mode) & 0o077):
            raise InvalidInput(f"{name} can be read by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                               "refusing to append a secret to it.", hint=f"chmod 600 {name}, or give -o a new file.")
        write_all(fd, data)
    finally:
        os.close(fd)
