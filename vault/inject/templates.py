"""Templates (``tokenvault inject``): ``{{ tokenvault://LABEL }}`` references in a config file.

The caller writes the result 0600, atomically.

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

import re
from collections.abc import Callable, Sequence

from ..errors import InvalidInput, NotFound
from ..records import record
from ..types import Secret, TokenRecord, as_utc
from .common import LABEL_RE, TokenSource, check_usable


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


@record(frozen=True, slots=True)
class Reference:
    """One ``{{ tokenvault://LABEL[/FIELD] }}`` in a template; ``field`` is ``token`` for the value."""

    label: str
    field: str
    line: int
    col: int

    @property
    def wants_secret(self) -> bool:
        return self.field == TOKEN_FIELD


@record(frozen=True, slots=True)
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
        if not LABEL_RE.match(label):
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
        check_usable(record, allow_inactive, template.where(ref))
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
