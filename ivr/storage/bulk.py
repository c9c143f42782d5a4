"""Set-based bulk writes for imports: a batch of rows goes into a staging table (SQLite:
executemany into a TEMP table; PostgreSQL: COPY into a temp table that is dropped at
commit), and a few INSERT ... SELECT / UPDATE statements apply the whole batch. No ORM
object is made per row.

Each batch is one short write transaction (:func:`batch`). On SQLite that transaction holds
the file's single writer, so between two batches the writer goes back to the queue, where
a live call's charge or settlement is served first (Database.write_session)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ivr.storage.db import Database

# (name, type) of a staging table's columns; the types are valid on both databases.
Columns = Sequence[tuple[str, str]]


class Batch:
    """One open transaction of a bulk apply, with its dialect's literals."""

    def __init__(self, conn: AsyncConnection, sqlite: bool) -> None:
        self.conn = conn
        self.sqlite = sqlite

    async def stage(self, table: str, columns: Columns, rows: Sequence[Sequence[Any]]
                    ) -> None:
        """(Re)create the empty staging table ``table`` and load ``rows`` into it. Values
        are as SQLite stores them (dates as ISO text, booleans as 0/1); on PostgreSQL
        dates and booleans are converted for COPY."""
        cols = ", ".join(f"{n} {t}" for n, t in columns)
        if self.sqlite:
            await self.conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({cols})")
            await self.conn.exec_driver_sql(f"DELETE FROM {table}")
            if rows:
                marks = ", ".join("?" for _ in columns)
                await self.conn.exec_driver_sql(f"INSERT INTO {table} VALUES ({marks})",
                                                list(rows))
            return
        await self.conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({cols}) "
                                        "ON COMMIT DROP")
        if not rows:
            return
        convert = [_pg_converter(t) for _, t in columns]
        records = [tuple(v if v is None or c is None else c(v)
                         for v, c in zip(r, convert, strict=True)) for r in rows]
        raw = await self.conn.get_raw_connection()
        # The driver connection is the session's: COPY runs inside its open transaction.
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table, records=records, columns=[n for n, _ in columns])
        # A temp table has no statistics: without them the planner scans it once per row
        # of the correlated statements that follow.
        await self.conn.exec_driver_sql(f"ANALYZE {table}")

    async def execute(self, sql: str) -> int:
        """One set-based statement (no parameters: literals come from the methods below);
        the number of rows it changed."""
        res = await self.conn.exec_driver_sql(sql)
        return res.rowcount

    async def scalar(self, sql: str) -> Any:
        return (await self.conn.exec_driver_sql(sql)).scalar()

    async def rows(self, sql: str) -> list[Any]:
        return list((await self.conn.exec_driver_sql(sql)).all())

    def timestamp(self, at: datetime) -> str:
        """``at`` (UTC) as a literal of a DateTime(timezone=True) column, stored as
        SQLAlchemy stores it (SQLite: naive UTC text, which compares in time order)."""
        at = at.astimezone(UTC)
        if self.sqlite:
            return f"'{at.strftime('%Y-%m-%d %H:%M:%S.%f')}'"
        return f"TIMESTAMPTZ '{at.isoformat()}'"

    def day(self, d: date) -> str:
        return f"'{d.isoformat()}'" if self.sqlite else f"DATE '{d.isoformat()}'"

    @property
    def true(self) -> str:
        return "1" if self.sqlite else "true"

    @property
    def false(self) -> str:
        return "0" if self.sqlite else "false"


def sqlite_timestamp(at: datetime) -> str:
    """A UTC datetime as SQLite stores DateTime columns (for staging values)."""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_converter(sql_type: str) -> Any:
    t = sql_type.upper()
    if t == "DATE":
        return date.fromisoformat
    if t == "BOOLEAN":
        return bool
    if t == "TIMESTAMPTZ":
        return lambda v: datetime.fromisoformat(v).replace(tzinfo=UTC)
    return None


@asynccontextmanager
async def batch(db: Database) -> AsyncIterator[Batch]:
    """One short write transaction for one batch (SQLite: BEGIN IMMEDIATE in the writer
    queue's turn, given back at commit)."""
    async with db.write_session() as s:
        yield Batch(await s.connection(), db.is_sqlite)
