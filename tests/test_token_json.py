"""``token list --json`` writes each token's JSON text straight from its row
(:func:`meta_tokenvault.queries.token_json`); everything else writes ``TokenRecord.as_json()`` through the encoder
of :mod:`meta_tokenvault.jsontext`. Both are compiled from one table (:data:`meta_tokenvault.types.TOKEN_JSON`);
these tests hold them to the same bytes on many generated rows - SQLite's text times and PostgreSQL's
datetimes, any Unicode (control characters, DEL, quotes, backslashes, line separators, astral planes), NULLs,
every status and source, scope and WABA lists, ``on_invalid`` unset - and hold ``as_json`` to the contract's
object as it was written by hand before the table. A row the plain path does not take (a NULL where a record
has a value, an unknown status, a time that does not parse, a number where text belongs) gives what the
record path gives: the same text, or the same exception."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from meta_tokenvault import queries
from meta_tokenvault.jsontext import array_text, one_line_encoder
from meta_tokenvault.types import TOKEN_JSON, TokenRecord, TokenSource, TokenStatus

PROPS = settings(deadline=None, database=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
ENCODE = one_line_encoder()
NAMES = [name for _alias, name in queries.TOKEN_COLUMNS]
TRICKY = "\x00\x01\x08\t\n\x0c\r\x1f\x7f\x80\"\\/ é\u00ff\u0100\u2028\u2029\ufeff\uffff\U0001f600<>&'"


def reference_as_json(r: TokenRecord) -> dict[str, object]:
    """``TokenRecord.as_json`` as written by hand before :data:`TOKEN_JSON` (the contract's object)."""
    def iso(value: datetime | None) -> str | None:
        return None if value is None else value.astimezone(UTC).isoformat()

    return {
        "label": r.label, "status": r.status.value, "version": r.version, "source": r.source.value,
        "business_id": r.provenance.business_id, "system_user_id": r.provenance.system_user_id,
        "app_id": r.provenance.app_id, "scopes": list(r.provenance.scopes), "waba_ids": list(r.provenance.waba_ids),
        "created_at": iso(r.created_at), "expires_at": iso(r.expires_at), "fingerprint": r.fingerprint,
        "last4": r.last4, "verified_at": iso(r.verified_at), "backend": r.backend,
        "data_access_expires_at": iso(r.data_access_expires_at), "on_invalid": r.on_invalid,
    }


def record_path(row: tuple[Any, ...]) -> str:
    """What ``token list --json`` wrote for a row before: the record, its dict, the encoder."""
    return ENCODE(queries.token_record(row).as_json())


# --------------------------------------------------------------------------- generated rows
texts = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(TRICKY)), max_size=24)
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                  timezone(timedelta(hours=-8))]))
whole_seconds = moments.map(lambda d: d.replace(microsecond=0))  # isoformat drops ".000000"


def sqlite_time(d: datetime) -> str:
    return queries.sqlite_datetime(d)  # what SQLAlchemy (and the fast path) store: UTC text, no offset


def postgres_time(d: datetime) -> datetime:
    return d.astimezone(UTC).replace(tzinfo=None)  # what psycopg2 gives for a timestamp column: naive UTC


def string_list(items: list[str], ascii_only: bool, compact: bool) -> str:
    return json.dumps(items, ensure_ascii=ascii_only, separators=(",", ":") if compact else None)


@st.composite
def rows(draw: st.DrawFn, store: str = "sqlite") -> tuple[Any, ...]:
    to_time: Callable[[datetime], Any] = sqlite_time if store == "sqlite" else postgres_time
    a_time = st.one_of(moments, whole_seconds).map(to_time)
    lists = st.builds(string_list, st.lists(texts, max_size=4), st.booleans(), st.booleans())
    values = {
        "id": draw(st.integers(1, 2**31)), "label": draw(texts), "max_age_days": draw(st.none() | st.integers(1, 400)),
        "name": draw(texts), "business_id": draw(texts), "version": draw(st.integers(1, 2**40)),
        "status": draw(st.sampled_from([s.value for s in TokenStatus])),
        "source": draw(st.sampled_from([s.value for s in TokenSource])),
        "system_user_id": draw(texts), "app_id": draw(texts), "scopes": draw(lists), "waba_ids": draw(lists),
        "created_at": draw(a_time), "expires_at": draw(st.none() | a_time), "fingerprint": draw(texts),
        "last4": draw(texts), "verified_at": draw(st.none() | a_time),
        "backend": draw(st.sampled_from(["local", "vault", "keyring"]) | texts),
        "on_invalid": draw(st.sampled_from([None, "", "reissue", "alert"])),
        "data_access_expires_at": draw(st.none() | a_time),
    }
    return tuple(values[name] for name in NAMES)


def row(**changes: Any) -> tuple[Any, ...]:
    """One ordinary SQLite row, with ``changes``."""
    values = {"id": 7, "label": "prod", "max_age_days": None, "name": "acme", "business_id": "1001", "version": 2,
              "status": "active", "source": "rotated", "system_user_id": "3003", "app_id": "2002",
              "scopes": '["whatsapp_business_messaging"]', "waba_ids": "[]",
              "created_at": "2026-01-02 03:04:05.000000", "expires_at": None, "fingerprint": "ab" * 16,
              "last4": "WXYZ", "verified_at": "2026-01-02 03:04:05.123456", "backend": "local",
              "on_invalid": None, "data_access_expires_at": None, **changes}
    return tuple(values[name] for name in NAMES)


# --------------------------------------------------------------------------- the same bytes
@PROPS
@given(rows("sqlite"))
@example(row())
@example(row(label=TRICKY, on_invalid="", scopes=json.dumps([TRICKY], ensure_ascii=False), waba_ids="[]"))
def test_a_sqlite_row_is_written_as_its_record_is(r: tuple[Any, ...]) -> None:
    plain = queries._compile_token_json()(r)  # the plain path itself takes every well-formed row
    assert plain == queries.token_json(r) == record_path(r) == ENCODE(reference_as_json(queries.token_record(r)))
    assert json.loads(plain) == json.loads(json.dumps(queries.token_record(r).as_json()))


@PROPS
@given(rows("postgres"))
def test_a_postgres_row_is_written_as_its_record_is(r: tuple[Any, ...]) -> None:
    plain = queries._compile_token_json()(r)
    assert plain == record_path(r) == ENCODE(reference_as_json(queries.token_record(r)))


@PROPS
@given(st.one_of(rows("sqlite"), rows("postgres")))
def test_as_json_is_the_contracts_object_key_for_key(r: tuple[Any, ...]) -> None:
    record = queries.token_record(r)
    assert list(record.as_json().items()) == list(reference_as_json(record).items())
    assert [key for key, _attr, _kind in TOKEN_JSON] == list(reference_as_json(record))


# --------------------------------------------------------------------------- rows the plain path does not take
@pytest.mark.parametrize("changes", [
    {"created_at": "2026-01-02T03:04:05+02:00"},  # text with an offset of its own: converted to UTC
    {"expires_at": "2026-01-02 03:04:05+00:00"},
    {"verified_at": "2026-01-02"},  # a date alone: midnight
    {"fingerprint": None}, {"last4": 1234}, {"label": b"bytes"}, {"backend": None},  # the encoder's default
    {"version": "2"}, {"version": 2.5}, {"version": True},
    {"scopes": '["a", 1, null, {"b": [2.5]}]'},  # not only strings: as the record path writes them
    {"created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-3)))},  # aware, not UTC
], ids=["offset-text", "utc-offset-text", "date-only", "null-text", "int-text", "bytes-text", "null-backend",
        "text-version", "float-version", "bool-version", "mixed-list", "aware-datetime"])
def test_an_unusual_row_is_written_as_its_record_is(changes: dict[str, Any]) -> None:
    r = row(**changes)
    assert queries.token_json(r) == record_path(r)
    assert queries.token_json_lines([row(), r, row(label="z")]) == [record_path(row()), record_path(r),
                                                                    record_path(row(label="z"))]


@pytest.mark.parametrize("changes,error", [
    ({"status": "frozen"}, KeyError), ({"source": None}, KeyError), ({"created_at": None}, AttributeError),
    ({"created_at": "yesterday"}, ValueError), ({"expires_at": "2026-13-01 00:00:00.000000"}, ValueError),
    ({"scopes": "not json"}, ValueError), ({"waba_ids": None}, TypeError),
], ids=["unknown-status", "null-source", "null-created", "bad-time", "bad-month", "bad-list", "null-list"])
def test_a_row_the_record_path_refuses_raises_what_it_raised(changes: dict[str, Any],
                                                            error: type[Exception]) -> None:
    r = row(**changes)
    with pytest.raises(error):
        record_path(r)
    with pytest.raises(error):
        queries.token_json(r)
    with pytest.raises(error):
        queries.token_json_lines([row(), r])


# --------------------------------------------------------------------------- through a real store
def test_a_stores_list_is_written_as_its_records_are(tmp_path: Path) -> None:
    """Rows from sqlite3 itself (the fast path's driver) through the statement ``token list`` runs."""
    from sqlalchemy import create_engine

    from meta_tokenvault.models import SQLModel  # the real tables

    path = tmp_path / "tv.db"
    engine = create_engine(f"sqlite:///{path}")
    SQLModel.metadata.create_all(engine)
    engine.dispose()
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("INSERT INTO tv_business (id, name, business_id, app_id, created_at, secrets_version) VALUES "
                         "(1, ?, '1001', '2002', '2026-01-01 00:00:00.000000', 1)", (TRICKY,))
            for i, (label, status) in enumerate(zip([TRICKY, "b\u00e9", "\U0001f600", "plain"] * 5,
                                                    [s.value for s in TokenStatus] * 4, strict=False)):
                conn.execute("INSERT INTO tv_token (id, label, business_pk, current_version, created_at, on_invalid) "
                             "VALUES (?, ?, 1, 1, '2026-01-01 00:00:00.000000', ?)",
                             (i + 1, f"{label}-{i}", ["alert", None][i % 2]))
                conn.execute(
                    "INSERT INTO tv_token_version (token_id, version, status, source, system_user_id, app_id, "
                    "scopes, waba_ids, fingerprint, last4, created_at, expires_at, verified_at, debug_summary, "
                    "backend, data_access_expires_at) VALUES (?, 1, ?, 'imported', '3003', '2002', ?, '[\"4004\"]', "
                    "'f', 'WXYZ', ?, ?, NULL, '{}', 'local', ?)",
                    (i + 1, status, json.dumps([TRICKY, "x"] * (i % 3), ensure_ascii=i % 2 == 0),
                     f"2026-01-0{i % 9 + 1} 00:00:0{i % 10}.{i:06d}", None if i % 3 else "2026-03-01 00:00:00.000000",
                     "2027-01-01 12:00:00.500000" if i % 4 else None))
        lines = queries.token_json_lines(conn.execute(queries.ALL_TOKENS))
        records = queries.token_records(conn.execute(queries.ALL_TOKENS))
    finally:
        conn.close()
    assert len(lines) == 20
    assert lines == [ENCODE(r.as_json()) for r in records] == [ENCODE(reference_as_json(r)) for r in records]
    assert json.loads(array_text(lines)) == [json.loads(json.dumps(r.as_json())) for r in records]


class _Cursor:
    """A DB-API cursor's ``fetchmany`` over ``rows`` (token_json_lines reads a chunk at a time)."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        chunk, self.rows = self.rows[:size], self.rows[size:]
        return chunk


def test_a_cursor_is_read_a_chunk_at_a_time_and_an_unusual_row_takes_the_record_path_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queries, "_CHUNK", 3)
    rows_ = [row(label=f"t{i}", on_invalid=["alert", None][i % 2]) for i in range(10)]
    rows_[4] = row(label="odd", fingerprint=None, verified_at="2026-01-02")  # the middle of the second chunk
    expected = [record_path(r) for r in rows_]
    assert queries.token_json_lines(_Cursor(rows_)) == expected
    assert queries.token_json_lines(iter(rows_)) == expected
    assert queries.token_json_lines(_Cursor([])) == []


@pytest.mark.parametrize("n", [0, 1, 2, 999, 1000, 1001, 2500])
def test_the_array_is_one_document_with_one_element_per_line_however_it_is_cut(n: int) -> None:
    lines = [ENCODE({"i": i}) for i in range(n)]
    text = array_text(lines)
    assert text == "[\n" + ",\n".join(lines) + "\n]\n"
    assert json.loads(text) == [{"i": i} for i in range(n)]
