"""Engine and sessions for SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg), chosen by URL.

Serialising writes to one account works the same way for callers on both databases:
``async with db.account_tx(account_id) as session`` holds an in-process lock for that account
(cheap, avoids pointless database contention) and then

* on SQLite, opens the transaction with ``BEGIN IMMEDIATE`` so another process writing the
  same file waits for us instead of failing later with "database is locked";
* on PostgreSQL, takes ``SELECT ... FOR UPDATE`` on the account row.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ivr.storage.models import Account


class StorageError(RuntimeError):
    """A database problem explained for a person; the message says what to do next."""


class DatabaseUnavailable(StorageError):
    pass


class DatabaseNotInitialised(StorageError):
    pass


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if not u.drivername.startswith("sqlite") or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str, echo: bool = False, **kw: Any) -> AsyncEngine:
    """Create the engine; for a SQLite file, create its folder and switch it to WAL."""
    path = _sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if url.startswith("sqlite"):
        kw.setdefault("connect_args", {"timeout": 30})
        engine = create_async_engine(url, echo=echo, **kw)
        _sqlite_events(engine)
        return engine
    kw.setdefault("pool_size", 10)
    kw.setdefault("max_overflow", 20)
    kw.setdefault("pool_pre_ping", True)
    return create_async_engine(url, echo=echo, **kw)


def _sqlite_events(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        # Let us issue BEGIN ourselves (pysqlite's implicit BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed "pending" payment must survive a power cut, not just a crash.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


class Database:
    """One engine, its session factory and the per-account write locks."""

    def __init__(self, url: str, echo: bool = False, **engine_kw: Any) -> None:
        self.url = url
        self.engine = make_engine(url, echo=echo, **engine_kw)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        immediate = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._write_sessions = async_sessionmaker(immediate, expire_on_commit=False)
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary())

    async def dispose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error.

        On SQLite use it for reads and single inserts only: a transaction that reads and
        then writes must use write_session(), or a concurrent writer makes it fail at once
        with "database is locked" (SQLite cannot upgrade a WAL read snapshot)."""
        async with self.sessions() as s, _explained(), s.begin():
            yield s

    @asynccontextmanager
    async def write_session(self) -> AsyncIterator[AsyncSession]:
        """Like session() but takes SQLite's write lock at BEGIN (no-op on PostgreSQL)."""
        async with self._write_sessions() as s, _explained(), s.begin():
            yield s

    @asynccontextmanager
    async def account_tx(self, account_id: int) -> AsyncIterator[tuple[AsyncSession, Account]]:
        """A write transaction holding the account row; concurrent writers to it wait."""
        lock = self._locks.get(account_id)
        if lock is None:
            lock = self._locks[account_id] = asyncio.Lock()
        async with lock, self.write_session() as s:
            account = (await s.execute(
                select(Account).where(Account.id == account_id).with_for_update()
            )).scalar_one_or_none()
            if account is None:
                raise LookupError(f"no account with id {account_id}")
            yield s, account

    async def check(self) -> None:
        """Raise DatabaseUnavailable / DatabaseNotInitialised with advice, or return."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                try:
                    rev = (await conn.execute(
                        text("SELECT version_num FROM alembic_version"))).scalar()
                except DBAPIError:
                    rev = None
        except (OSError, DBAPIError, OperationalError) as exc:
            raise DatabaseUnavailable(describe_failure(self.url, exc)) from None
        if rev is None:
            raise DatabaseNotInitialised(
                "database not initialised: run `ivr db upgrade`")


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def describe_failure(url: str, exc: BaseException) -> str:
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
    if url.startswith("sqlite"):
        hint = "check that the folder exists and is writable (database.url)"
    else:
        hint = ("check that PostgreSQL is running and that database.url (or "
                "STARPAY_DATABASE_URL) has the right host, port, user and password")
    return f"cannot use the database {redact(url)}: {detail}; {hint}"


@asynccontextmanager
async def _explained() -> AsyncIterator[None]:
    """Turn connection failures into StorageError so commands print advice, not tracebacks."""
    try:
        yield
    except (OSError, ConnectionError) as exc:
        raise DatabaseUnavailable(f"the database went away: {exc}; check it is running "
                                  "and retry") from exc
    except OperationalError as exc:
        msg = str(exc.orig)
        if "no such table" in msg or "does not exist" in msg:
            raise DatabaseNotInitialised(
                "database not initialised: run `ivr db upgrade`") from exc
        raise
