"""Property-based tests (hypothesis) of template parsing and rendering (:mod:`meta_tokenvault.inject`).

The syntax, as docs/injection.md states it: ``{{ tokenvault://LABEL }}`` is the token,
``{{ tokenvault://LABEL/FIELD }}`` a metadata field; anything that *starts* like a reference (``{{`` +
optional blanks + ``tokenvault:``) must be a whole valid one; a backslash before it makes it literal, and
two backslashes are one literal backslash. Checked here for arbitrary text: text with no reference renders
unchanged and never touches the store; references round-trip (labels, fields, positions and the rendered
values, in order); escapes; parsing either succeeds or raises InvalidInput naming ``name:line:col``; and a
bad reference anywhere means no secret is decrypted at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from meta_tokenvault.errors import InvalidInput, NotFound
from meta_tokenvault.inject import FIELDS, TOKEN_FIELD, Reference, parse_template, render_template
from meta_tokenvault.types import Provenance, Secret, TokenRecord, TokenSource, TokenStatus

PROPS = settings(deadline=None, database=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
START = re.compile(r"\{\{[ \t]*tokenvault:")  # the documented start of a reference (the spec, not the code's)

labels = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,20}", fullmatch=True)
fields = st.sampled_from([None, TOKEN_FIELD, *sorted(FIELDS)])
blanks = st.sampled_from(["", " ", "  ", "\t", " \t "])
# text that looks like templates: arbitrary Unicode mixed with the syntax's own pieces
pieces = st.sampled_from(["{{", "}}", "{", "}", "\\", "\\\\", "tokenvault", "tokenvault://", "{{ other }}",
                          "{ {tokenvault:", "\n", " ", "${X}", "{{tokenvault", "tokenvault:{{"])
texts = st.lists(st.one_of(st.text(max_size=12), pieces), max_size=12).map("".join)


def value_of(label: str) -> str:
    return f"EAA{label.replace('.', 'd').replace('-', 'h')}Value9"


def record_of(label: str, status: TokenStatus = TokenStatus.ACTIVE) -> TokenRecord:
    return TokenRecord(id=1, label=label, business_name="acme", status=status, version=3, source=TokenSource.ROTATED,
                       provenance=Provenance("111", "222", "333", ("a", "b"), ("444", "555")),
                       created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), expires_at=None, fingerprint="f" * 32,
                       last4=value_of(label)[-4:], verified_at=None, backend="local")


@dataclass
class Source:
    """A TokenSource with every label known (or only ``known``) that records what was decrypted."""

    known: set[str] | None = None
    inactive: set[str] = field(default_factory=set)
    shown: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)

    def show_token(self, label: str) -> TokenRecord:
        self.shown.append(label)
        if self.known is not None and label not in self.known:
            raise NotFound(f"No token labelled {label!r}.")
        return record_of(label, TokenStatus.REVOKED if label in self.inactive else TokenStatus.ACTIVE)

    def resolve(self, label: str, *, allow_inactive: bool = False, purpose: str = "read") -> tuple[TokenRecord, Secret]:
        self.resolved.append(label)
        return self.show_token(label), Secret(value_of(label))


def ref_text(label: str, fld: str | None, before: str, after: str) -> str:
    return "{{" + before + "tokenvault://" + label + (f"/{fld}" if fld else "") + after + "}}"


def expected_value(label: str, fld: str | None) -> str:
    if fld in (None, TOKEN_FIELD):
        return value_of(label)
    return FIELDS[fld](record_of(label))


def position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


@PROPS
@given(text=texts)
def test_text_without_a_reference_renders_unchanged_and_reads_nothing(text: str) -> None:
    assume(START.search(text) is None)
    parsed = parse_template(text)
    assert parsed.references == []
    source = Source()
    assert render_template(parsed, source) == text
    assert source.shown == source.resolved == []


@PROPS
@given(parts=st.lists(st.one_of(texts, st.tuples(labels, fields, blanks, blanks)), max_size=8))
def test_references_round_trip(parts: list[str | tuple[str, str | None, str, str]]) -> None:
    text, expected, refs = "", "", []
    for part in parts:
        if isinstance(part, str):
            assume(not part.endswith("\\"))  # a backslash right before a reference escapes it (next test)
            text += part
            expected += part
        else:
            label, fld, before, after = part
            refs.append((label, fld or TOKEN_FIELD, *position(text, len(text))))
            text += ref_text(label, fld, before, after)
            expected += expected_value(label, fld)
    assume(len(START.findall(text)) == len(refs))  # no reference starts inside the literal text
    parsed = parse_template(text, name="t.tpl")
    assert [(r.label, r.field, r.line, r.col) for r in parsed.references] == refs
    source = Source()
    assert render_template(parsed, source) == expected
    secret_labels = {label for label, fld, *_ in refs if fld == TOKEN_FIELD}
    assert set(source.resolved) == secret_labels and len(source.resolved) == len(secret_labels)  # once per label


@PROPS
@given(slashes=st.integers(0, 7), label=labels, fld=fields, before=texts, after=texts)
def test_backslashes_before_a_reference(slashes: int, label: str, fld: str | None, before: str, after: str) -> None:
    assume(not before.endswith("\\") and START.search(before) is None and START.search(after) is None)
    reference = ref_text(label, fld, " ", " ")
    parsed = parse_template(before + "\\" * slashes + reference + after)
    rendered = render_template(parsed, Source())
    if slashes % 2:  # escaped: the reference is literal text, minus one backslash of each pair and the escape
        assert parsed.references == []
        assert rendered == before + "\\" * (slashes // 2) + reference + after
    else:  # each pair is one literal backslash, and the reference is live
        assert [(r.label, r.field) for r in parsed.references] == [(label, fld or TOKEN_FIELD)]
        assert rendered == before + "\\" * (slashes // 2) + expected_value(label, fld) + after


@PROPS
@given(prefix=texts, junk=texts)
def test_a_reference_start_is_a_whole_reference_or_an_error_naming_where(prefix: str, junk: str) -> None:
    assume(START.search(prefix) is None and not prefix.endswith("\\"))
    text = prefix + "{{ tokenvault:" + junk
    try:
        parsed = parse_template(text, name="t.tpl")
    except InvalidInput as exc:
        line, col = position(text, len(prefix))
        assert exc.message.startswith(f"t.tpl:{line}:{col}: "), (exc.message, line, col)
        assert "\n" not in exc.message and "{{ tokenvault://LABEL }}" in exc.hint
    else:
        assert parsed.references and isinstance(parsed.parts[1 if prefix else 0], Reference)


@PROPS
@given(text=texts)
def test_parsing_any_text_succeeds_or_raises_invalid_input(text: str) -> None:
    try:
        parsed = parse_template(text)
    except InvalidInput:
        return
    assert render_template(parsed, Source()) is not None


@PROPS
@given(good=st.lists(labels, min_size=1, max_size=4), bad=labels, inactive=st.booleans(), where=st.integers(0, 4))
def test_one_bad_reference_means_no_secret_is_decrypted(good: list[str], bad: str, inactive: bool, where: int) -> None:
    assume(bad not in good)
    names = list(good)
    names.insert(min(where, len(names)), bad)
    text = "\n".join(f"X{n}={ref_text(label, None, ' ', ' ')}" for n, label in enumerate(names))
    source = Source(known=set(names) if inactive else set(good), inactive={bad} if inactive else set())
    with pytest.raises((NotFound, InvalidInput)) as info:
        render_template(parse_template(text, name="t.tpl"), source)
    line = names.index(bad) + 1
    assert info.value.message.startswith(f"t.tpl:{line}:4: ")
    assert source.resolved == []  # checked before anything was decrypted
