"""The transaction a :meth:`Database.run` body gets: run Core statements, get rows back.

Bodies are written once against :class:`Tx` and run on either implementation:

* :class:`CoreTx` (PostgreSQL, in-memory SQLite): SQLAlchemy's own ``Connection.execute``.
* :class:`SqliteTx` (a SQLite file, in a storage thread): the same Core statements,
  compiled once by SQLAlchemy for SQLite and then run straight on the thread's own
  ``sqlite3`` connection, with SQLAlchemy's type processing (datetimes, JSON, booleans)
  and Python-side column defaults applied as SQLAlchemy would.

Why the second one: a call server's CPU is mostly idle between a caller's key presses, so
each transaction runs on a cold CPU, and there SQLAlchemy's per-execution machinery (pool
checkout, events, execution context, result proxy) costs several times the statement
itself. Measured on the development VM for one account look-up after 10 ms idle: 0.9 ms
of CPU through ``Connection.execute`` in a pooled transaction, 0.2 ms on a raw connection
(0.14 and 0.02 ms hot). A paid call runs 12 statements in 4 transactions.

Only what the hot paths need is supported, and anything else fails at compile time rather
than running differently: no expanding parameters supplied at execution (``IN`` lists of
constants are fine), no SQL-expression defaults evaluated by SQLAlchemy, no executemany.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, create_engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, MultipleResultsFound, NoResultFound
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase

Params = Mapping[str, Any]


class Rows(Protocol):
    """The part of SQLAlchemy's Result that bodies use (CoreTx returns a real Result)."""

    @property
    def rowcount(self) -> int: ...

    def all(self) -> Sequence[Any]: ...

    def first(self) -> Any | None: ...

    def one(self) -> Any: ...

    def scalar_one(self) -> Any: ...

    def scalar_one_or_none(self) -> Any | None: ...


class Tx(Protocol):
    """One open transaction: commit and rollback belong to Database.run."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``: for the few places locking differs."""
        ...

    def execute(self, statement: Any, params: Params | None = None) -> Rows: ...


class CoreTx:
    """A Tx on a SQLAlchemy Connection."""

    __slots__ = ("_conn", "dialect")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.dialect = conn.dialect.name

    def execute(self, statement: Any, params: Params | None = None) -> Rows:
        return self._conn.execute(statement, params)


class _Rows:
    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Any]:
        return self._rows

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Any:
        if len(self._rows) == 1:
            return self._rows[0]
        if not self._rows:
            raise NoResultFound("No row was found when one was required")
        raise MultipleResultsFound("Multiple rows were found when exactly one was required")

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalar_one_or_none(self) -> Any | None:
        if not self._rows:
            return None
        return self.one()[0]


# Where each positional parameter comes from: ("param", name) the call's parameters (or
# the statement's own value for that name when the call gives none), ("fixed", value) one
# value of a constant IN list, ("default", column default) a Python-side column default
# unless the call gives the column; each with SQLAlchemy's bind processor for its type.
_Slot = tuple[str, str, Any, Callable[[Any], Any] | None]
_REQUIRED = object()  # a "param" slot the call must give


class _Compiled:
    """One statement compiled for SQLite, with how to fill its parameters and read rows."""

    __slots__ = ("sql", "slots", "result_procs", "row_type")

    def __init__(self, statement: Any, keys: tuple[str, ...] | None, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=keys)
        sql = str(compiled)
        defaults = {c.key: c.default for c in compiled.insert_prefetch}
        defaults |= {c.key: c.onupdate for c in compiled.update_prefetch}
        slots: list[_Slot] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            proc = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.callable is not None:
                raise ValueError(f"{name}: callable parameter values are not supported")
            if bind.expanding:
                values = bind.effective_value
                if bind.required or not values:
                    raise ValueError(f"{name}: IN lists must be constants here")
                sql = sql.replace(f"__[POSTCOMPILE_{name}]", ", ".join("?" * len(values)), 1)
                slots.extend(("fixed", name, v, proc) for v in values)
            elif name in defaults and keys is not None and name not in keys:
                default = defaults[name]
                if not (default.is_scalar or default.is_callable):
                    raise ValueError(f"{name}: only scalar and callable defaults are supported")
                slots.append(("default", name, default, proc))
            else:
                value = _REQUIRED if bind.required else bind.effective_value
                slots.append(("param", name, value, proc))
        if "__[POSTCOMPILE" in sql:
            raise ValueError("statement has parameters that cannot be compiled in advance")
        self.sql = sql
        self.slots = tuple(slots)
        columns = list(getattr(statement, "exported_columns", ()))
        self.result_procs = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
        self.row_type: Any = None  # made from the first cursor description

    def values(self, params: Params) -> list[Any]:
        out = []
        for kind, name, extra, proc in self.slots:
            if kind == "fixed":
                value = extra
            elif name in params:
                value = params[name]
            elif kind == "default":
                value = extra.arg(None) if extra.is_callable else extra.arg
            elif extra is _REQUIRED:
                raise KeyError(f"no value for parameter {name!r}")
            else:
                value = extra
            out.append(proc(value) if proc is not None else value)
        return out

    def rows(self, cursor: sqlite3.Cursor) -> list[Any]:
        if cursor.description is None:  # not a row-returning statement
            return []
        raw = cursor.fetchall()
        if not raw:
            return []
        if self.row_type is None:
            names = [d[0] for d in cursor.description]
            self.row_type = collections.namedtuple("Row", names, rename=True)  # type: ignore[misc]
        make = self.row_type._make
        procs = self.result_procs
        if len(procs) != len(raw[0]) or not any(procs):
            return [make(r) for r in raw]
        return [make([v if p is None else p(v) for p, v in zip(procs, r, strict=True)])
                for r in raw]


_DIALECT: Dialect | None = None
_CACHE: dict[tuple[Any, tuple[str, ...] | None], _Compiled] = {}
_CACHE_MAX = 512  # the hot paths use a few dozen; ad-hoc statements compile each time


def _dialect() -> Dialect:
    global _DIALECT
    if _DIALECT is None:
        _DIALECT = create_engine("sqlite://").dialect  # creating an engine connects nothing
    return _DIALECT


def _compiled(statement: Any, params: Params) -> _Compiled:
    # An INSERT or UPDATE compiles to different SQL for each set of parameter names.
    keys = tuple(sorted(params)) if isinstance(statement, UpdateBase) else None
    key = (statement, keys)
    found = _CACHE.get(key)
    if found is None:
        found = _Compiled(statement, keys, _dialect())
        if len(_CACHE) < _CACHE_MAX:  # two threads may both compile it: same result
            _CACHE[key] = found
    return found


class SqliteTx:
    """A Tx on a raw sqlite3 connection inside a transaction Database.run has opened."""

    __slots__ = ("_conn",)
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, statement: Any, params: Params | None = None) -> Rows:
        if not isinstance(statement, ClauseElement):
            raise TypeError("SqliteTx runs SQLAlchemy Core statements")
        compiled = _compiled(statement, params or {})
        values = compiled.values(params or {})
        try:
            cursor = self._conn.execute(compiled.sql, values)
            rows = compiled.rows(cursor)
        except sqlite3.Error as exc:
            raise wrap_error(exc, compiled.sql, values) from exc
        return _Rows(rows, cursor.rowcount)


def wrap_error(exc: sqlite3.Error, sql: str | None, values: Any = None) -> DBAPIError:
    """The SQLAlchemy exception SQLAlchemy would have raised (IntegrityError,
    OperationalError, ...), so callers handle both Tx kinds alike."""
    err = DBAPIError.instance(sql, values, exc, sqlite3.Error)
    assert isinstance(err, DBAPIError)  # a bare StatementError only wraps non-DB-API errors
    return err


def sqlite_pragmas(conn: Any) -> None:
    """The settings every connection to a StarPay SQLite file gets (DB-API connection)."""
    conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's implicit one is DEFERRED)
    cur = conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed "pending" payment must survive a power cut, not just a crash.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
