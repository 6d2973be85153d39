"""Statements the store repeats, run through the database driver directly (bulk rotation runs ~30 per token).

SQLAlchemy spends ~0.1 ms of CPU per statement around the driver's own work (the compiled cache, events,
the execution context, the result's metadata). :class:`DirectStatements` compiles each statement once per
set of parameter names, with the engine's own dialect - the SQL text, the parameter order and style (``?``
for SQLite, ``%(name)s`` for psycopg2), the types' bind and result processors (SQLite's datetimes as text,
booleans as integers), the scalar column defaults, ``RETURNING`` where the dialect adds it - and then runs it
with the driver's cursor, on the connection of the caller's SQLAlchemy transaction (so ``BEGIN IMMEDIATE``,
savepoints, commit and rollback stay SQLAlchemy's). The statements themselves are still written once, as
Core statements or :mod:`meta_tokenvault.queries`' text; this module adds none.

A statement it cannot run this way (a callable default, an ``IN`` list - rendered per execution -, escaped
parameter names) is run by SQLAlchemy as before. A driver error is raised as SQLAlchemy's own wrapper of
it (:meth:`sqlalchemy.exc.DBAPIError.instance`, parameters hidden), so the store's one error table applies.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase


class Result:
    """What the store reads of a statement's result: rows (named tuples), ``rowcount``, the inserted key."""

    __slots__ = ("_rows", "inserted_primary_key", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int, inserted_primary_key: tuple[Any, ...] | None) -> None:
        self._rows, self.rowcount, self.inserted_primary_key = rows, rowcount, inserted_primary_key

    def first(self) -> Any:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def all(self) -> list[Any]:
        return self._rows


class _Plan:
    __slots__ = ("binds", "fixed", "insert", "named", "processors", "result_processors", "returning", "row", "sql")

    def __init__(self, sql: str, binds: list[str], fixed: dict[str, Any], processors: dict[str, Callable[[Any], Any]],
                 named: bool, insert: bool, returning: bool) -> None:
        self.sql, self.binds, self.fixed, self.processors = sql, binds, fixed, processors
        self.named, self.insert, self.returning = named, insert, returning
        self.row: Any = None  # the named-tuple class of its rows, made at the first result
        self.result_processors: list[Callable[[Any], Any] | None] | None = None


class DirectStatements:
    """Compiled plans per (statement, parameter names), for one engine; thread-safe. The statements are the
    caller's constants (a statement built per call would be compiled per call)."""

    MAX_PLANS = 256

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect
        self._dbapi_error: type[Exception] = self.dialect.loaded_dbapi.Error
        self._plans: dict[tuple[ClauseElement, tuple[str, ...]], _Plan | None] = {}
        self._lock = threading.Lock()

    def execute(self, conn: Connection, stmt: ClauseElement, params: Mapping[str, Any] | None = None) -> Any:
        """Run ``stmt`` with ``params`` on ``conn`` (an SQLAlchemy connection in a transaction); a
        :class:`Result` (or SQLAlchemy's own result, for a statement it runs itself)."""
        values = params or {}
        plan = self._plan(stmt, values)
        if plan is None:
            return conn.execute(stmt, dict(values))  # type: ignore[call-overload]
        args = self._args(plan, values)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            try:
                cursor.execute(plan.sql, args)
            except self._dbapi_error as exc:
                raise self._translated(plan, exc) from None
            rows: list[Any] = []
            if cursor.description is not None:
                rows = self._rows(plan, cursor.description, cursor.fetchall())
            inserted: tuple[Any, ...] | None = None
            if plan.insert:
                inserted = (rows[0][0],) if plan.returning and rows else (cursor.lastrowid,)
            return Result(rows, cursor.rowcount, inserted)
        finally:
            cursor.close()

    def executemany(self, conn: Connection, stmt: ClauseElement, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run ``stmt`` (an INSERT or UPDATE, nothing read back) once per parameter set of ``rows`` (each with the
        same names), in one call of the driver's ``executemany``; one :meth:`execute` each when the statement is
        one SQLAlchemy runs itself or reads a value back (``RETURNING``)."""
        if not rows:
            return
        plan = self._plan(stmt, rows[0])
        if plan is None or plan.returning or len(rows) == 1:
            for values in rows:
                self.execute(conn, stmt, values)
            return
        args = [self._args(plan, values) for values in rows]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            try:
                cursor.executemany(plan.sql, args)
            except self._dbapi_error as exc:
                raise self._translated(plan, exc) from None
        finally:
            cursor.close()

    def _plan(self, stmt: ClauseElement, values: Mapping[str, Any]) -> _Plan | None:
        key = (stmt, tuple(sorted(values)))  # the statement itself (alive while cached): built once, by its owner
        plan = self._plans.get(key, False)
        if plan is False:
            plan = self._compile(stmt, key[1])
            with self._lock:
                if len(self._plans) < self.MAX_PLANS:
                    self._plans[key] = plan
        assert plan is None or isinstance(plan, _Plan)
        return plan

    def _translated(self, plan: _Plan, exc: Exception) -> sa_exc.StatementError:
        """The driver's error as SQLAlchemy raises it (the store translates those), its parameters hidden."""
        return sa_exc.DBAPIError.instance(plan.sql, None, exc, self._dbapi_error, hide_parameters=True,
                                          dialect=self.dialect)

    @staticmethod
    def _args(plan: _Plan, values: Mapping[str, Any]) -> Any:
        """The driver's parameters: each bound value through its type's processor, in the plan's style."""
        processors, fixed = plan.processors, plan.fixed
        bound: list[Any] = []
        for name in plan.binds:
            value = values[name] if name in values else fixed[name]
            proc = processors.get(name)
            bound.append(proc(value) if proc is not None and value is not None else value)
        return dict(zip(plan.binds, bound, strict=True)) if plan.named else tuple(bound)

    def _rows(self, plan: _Plan, description: Sequence[Any], raw: list[Any]) -> list[Any]:
        if plan.row is None:
            plan.row = namedtuple("Row", [d[0] for d in description], rename=True)  # type: ignore[misc]  # noqa: PYI024
        row, procs = plan.row, plan.result_processors
        if not procs or not any(procs):
            return [row._make(r) for r in raw]
        return [row._make(v if p is None or v is None else p(v) for p, v in zip(procs, r, strict=True)) for r in raw]

    def _compile(self, stmt: ClauseElement, names: tuple[str, ...]) -> _Plan | None:
        dml = isinstance(stmt, UpdateBase)
        compiled: Any = stmt.compile(dialect=self.dialect, column_keys=list(names) if dml else None)
        if "POSTCOMPILE" in compiled.string or getattr(compiled, "escaped_bind_names", None):
            return None
        defaults: dict[str, Any] = {}
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default if column in compiled.insert_prefetch else column.onupdate
            if default is None or not default.is_scalar:
                return None
            defaults[column.key] = default.arg
        binds = list(compiled.positiontup) if self.dialect.positional else list(compiled.bind_names.values())
        fixed: dict[str, Any] = {}
        for name in binds:
            bind = compiled.binds[name]
            if name in names:
                continue
            if name in defaults:
                fixed[name] = defaults[name]
            elif bind.callable is not None:
                return None
            elif bind.value is None and bind.required:
                return None  # a missing parameter: let SQLAlchemy say so
            else:
                fixed[name] = bind.value
        processors = {name: proc for name, proc in compiled._bind_processors.items() if name in binds}
        plan = _Plan(compiled.string, binds, fixed, processors, named=not self.dialect.positional,
                     insert=getattr(stmt, "is_insert", False),
                     returning=bool(getattr(compiled, "effective_returning", None)))
        result_columns = getattr(compiled, "_result_columns", None)
        if result_columns:
            plan.result_processors = [entry[3]._cached_result_processor(self.dialect, None)
                                      for entry in result_columns]
        return plan


__all__ = ["DirectStatements", "Result"]
