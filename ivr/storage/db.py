"""Engine and sessions for SQLite (aiosqlite, WAL) and PostgreSQL (asyncpg), chosen by URL.

Serialising writes to one account works the same way for callers on both databases:
``async with db.account_tx(account_id) as session`` holds an in-process lock for that account
(cheap, avoids pointless database contention) and then

* on SQLite, opens the transaction with ``BEGIN IMMEDIATE`` so another process writing the
  same file waits for us instead of failing later with "database is locked";
* on PostgreSQL, takes ``SELECT ... FOR UPDATE`` on the account row.

Waits for the database are bounded but generous, and recording a charge's outcome
(``settle=True``) never queues behind ordinary work:

* SQLite has one writer per file. Our writers take turns in-process (:class:`WriterQueue`,
  one per file, settlements first) and write on a connection of their own, so a write never
  waits behind readers for a pooled connection, and SQLite's busy handler (which sleeps up
  to 100 ms between polls while the lock may sit free) only arbitrates between processes.
  ``Database.run`` bodies that queue while one of them writes share the next transaction
  and its one disk flush (group commit, :mod:`ivr.storage.group_commit`), each in its own
  savepoint: under a burst, the flushes no longer queue one per charge.
* PostgreSQL settles on a small pool of its own, so a full main pool cannot stop a
  gateway-approved charge from being recorded.

A wait that runs out logs which wait it was and raises :class:`DatabaseBusy`.

The hot paths (a call's look-up, charge, settlement and call record) use
:meth:`Database.run`: the transaction's body is plain synchronous code over Core statements
(:class:`ivr.storage.tx.Tx`), run whole in a storage thread on its own sqlite3 connection
for a SQLite file (one thread hop per transaction instead of aiosqlite's several per
statement, and none of SQLAlchemy's per-execution machinery: see ivr.storage.tx) and
through ``run_sync`` on PostgreSQL; same locks, same write turns. The rest (admin
commands, imports, verification) keeps the ORM sessions above.

Durability: every commit is durable (SQLite ``synchronous=FULL``: fsync'd) unless the
caller says ``durable=False``, for writes that a later step redoes if a power cut loses
them: recording a gateway's answer (the pending payment, committed durably before the
gateway was called, stays open and the reconciler settles it from the gateway by its
key) and call records. Such a commit still survives a crash of the process (SQLite
``synchronous=NORMAL`` in WAL mode; PostgreSQL ``synchronous_commit=off``) and becomes
durable with the next durable commit; it saves a disk flush, and on SQLite a thread's
sleep on it, per payment and per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, bindparam, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from ivr.storage.group_commit import GroupCommit
from ivr.storage.models import Account
from ivr.storage.threads import StorageThreads
from ivr.storage.tx import CoreTx, SqliteTx, Tx, sqlite_pragmas, wrap_error

log = logging.getLogger(__name__)

# How long an operation may wait for a connection (on SQLite writes: for its turn to write)
# before it fails. Generous: under a burst of calls, waiting is better than failing.
POOL_TIMEOUT_S = 60.0
# The same for recording a charge's outcome. Past it the payment is left open for the
# reconciler (ivr.services.payments), so the wait may be longer: the caller has paid.
SETTLE_TIMEOUT_S = 120.0
# SQLite readers: WAL readers run side by side, each on its own aiosqlite thread.
SQLITE_READ_POOL: dict[str, int] = {"pool_size": 5, "max_overflow": 10}
# SQLite writers take turns, so one connection is used at a time; the second is slack.
SQLITE_WRITE_POOL: dict[str, int] = {"pool_size": 1, "max_overflow": 1}
PG_POOL: dict[str, int] = {"pool_size": 10, "max_overflow": 20}
PG_SETTLE_POOL: dict[str, int] = {"pool_size": 2, "max_overflow": 2}
SETTLE, ORDINARY = 0, 1  # WriterQueue priorities
# Threads that run whole SQLite transactions for Database.run (see there).
SQLITE_READ_THREADS = 4

T = TypeVar("T")
# A transaction's body: plain synchronous code running Core statements on one Tx.
Work = Callable[[Tx], T]


class StorageError(RuntimeError):
    """A database problem explained for a person; the message says what to do next."""


class DatabaseUnavailable(StorageError):
    pass


class DatabaseNotInitialised(StorageError):
    pass


class DatabaseBusy(StorageError):
    """No connection (or SQLite write turn) within the bounded wait: overloaded."""


class WriterQueue:
    """A lock whose waiters are served by priority (lower first), then in arrival order.

    Not bound to an event loop (each waiter's future is made on the running loop), so one
    queue per SQLite file can serve every Database on that file in the process."""

    def __init__(self) -> None:
        self._held = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        """Take the lock if it is free and nobody waits (no await, no timer)."""
        if self._held or self._waiters:
            return False
        self._held = True
        return True

    async def acquire(self, priority: int = ORDINARY) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (priority, next(self._seq), fut)
        heapq.heappush(self._waiters, entry)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # the turn was handed to us as we gave up: pass it on
            else:
                self._waiters.remove(entry)
                heapq.heapify(self._waiters)
            raise

    def release(self) -> None:
        while self._waiters:
            fut = heapq.heappop(self._waiters)[2]
            if not fut.done():
                fut.set_result(None)  # the turn passes straight to this waiter
                return
        self._held = False


# One queue per SQLite file in this process (the reconciler runs its own Database).
_WRITERS: weakref.WeakValueDictionary[str, WriterQueue] = weakref.WeakValueDictionary()


def _writer_queue(path: Path | None) -> WriterQueue:
    if path is None:
        return WriterQueue()  # in-memory: private to its engine anyway
    key = str(path.resolve())
    queue = _WRITERS.get(key)
    if queue is None:
        queue = _WRITERS[key] = WriterQueue()
    return queue


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
        if path is None:  # in-memory: SQLAlchemy picks a pool without a size
            for k in ("pool_size", "max_overflow", "pool_timeout"):
                kw.pop(k, None)
        else:
            for k, v in SQLITE_READ_POOL.items():
                kw.setdefault(k, v)
        engine = create_async_engine(url, echo=echo, **kw)
        _sqlite_events(engine.sync_engine)
        return engine
    for k, v in PG_POOL.items():
        kw.setdefault(k, v)
    kw.setdefault("pool_pre_ping", True)
    return create_async_engine(url, echo=echo, **kw)


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        sqlite_pragmas(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "")
        conn.exec_driver_sql(f"BEGIN {mode}".strip())


class Database:
    """The engines, their session factories and the per-account write locks."""

    def __init__(self, url: str, echo: bool = False, *, pool_timeout: float = POOL_TIMEOUT_S,
                 settle_timeout: float = SETTLE_TIMEOUT_S, **engine_kw: Any) -> None:
        self.url = url
        self.pool_timeout = pool_timeout
        self.settle_timeout = settle_timeout
        self.engine = make_engine(url, echo=echo, pool_timeout=pool_timeout, **engine_kw)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._engines = [self.engine]
        path = _sqlite_path(url)
        writer = self.engine
        settler = self.engine
        if self.is_sqlite and path is not None:
            writer = settler = make_engine(url, echo=echo, pool_timeout=settle_timeout,
                                           **{**engine_kw, **SQLITE_WRITE_POOL})
            self._engines.append(writer)
        elif not self.is_sqlite:
            settler = make_engine(url, echo=echo, pool_timeout=settle_timeout,
                                  **{**engine_kw, **PG_SETTLE_POOL})
            self._engines.append(settler)
        # SQLite: all our writes take turns here; None on PostgreSQL (row locks suffice).
        self.writers: WriterQueue | None = _writer_queue(path) if self.is_sqlite else None
        immediate = {"sqlite_begin": "IMMEDIATE"}
        self._write_sessions = async_sessionmaker(writer.execution_options(**immediate),
                                                  expire_on_commit=False)
        self._settle_sessions = async_sessionmaker(settler.execution_options(**immediate),
                                                   expire_on_commit=False)
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = (
            weakref.WeakValueDictionary())
        # SQLite file: run() executes each transaction whole in a storage thread, on that
        # thread's own sqlite3 connection (aiosqlite hops threads for every execute, fetch
        # and commit: ~60 hops and most of a call's CPU, where this takes one hop per
        # transaction). Writes go through one thread, after their WriterQueue turn; reads
        # through a few.
        self._path = path if self.is_sqlite else None
        self._local = threading.local()
        self._raw: list[sqlite3.Connection] = []  # every thread's connection, to close
        self._raw_lock = threading.Lock()
        self._write_thread: StorageThreads | None = None
        self._read_threads: StorageThreads | None = None
        # SQLite file: write bodies share transactions (and disk flushes) when they queue.
        self.group: GroupCommit | None = None
        if self._path is not None:
            self._write_thread = StorageThreads(1, "starpay-db-write")
            self._read_threads = StorageThreads(SQLITE_READ_THREADS, "starpay-db-read")
            assert self.writers is not None
            self.group = GroupCommit(self._write_thread, self._turn_until,
                                     self.writers.release, self._thread_conn, self._busy)

    @property
    def settle_capacity(self) -> int:
        """How many settling transactions can run at once (tests fill them all)."""
        if self.writers is not None:
            return 1
        return PG_SETTLE_POOL["pool_size"] + PG_SETTLE_POOL["max_overflow"]

    async def dispose(self) -> None:
        for engine in self._engines:
            await engine.dispose()
        for pool in (self._write_thread, self._read_threads):
            if pool is not None:
                await asyncio.to_thread(pool.shutdown)
        with self._raw_lock:
            raw, self._raw = self._raw, []
        for conn in raw:  # their threads have ended
            conn.close()

    async def run(self, work: Work[T], *, write: bool = True, settle: bool = False,
                  durable: bool = True, account_id: int | None = None) -> T:
        """Run ``work(tx)`` in one transaction: commit if it returns, roll back if it
        raises. ``work`` is synchronous code over Core statements, so the same function
        runs on both databases: on a SQLite file in a storage thread (one thread hop for
        the whole transaction), otherwise on the async engine through ``run_sync`` (there
        it runs on the event loop's thread, awaiting each statement: it must not block
        otherwise).

        ``write``: takes the write turn (SQLite: BEGIN IMMEDIATE, see write_session);
        ``settle``: as in write_session; ``durable=False``: see the module docstring (only
        for writes something else redoes); ``account_id``: also hold that account's
        in-process lock (the work should still lock the row: :func:`lock_account`).

        Once started, a transaction finishes even if the caller is cancelled (the
        cancellation waits for it), so a write turn is never handed on mid-transaction.

        On a SQLite file, write bodies queued while another transaction writes run
        together in the next one (:mod:`ivr.storage.group_commit`): a body that raises
        rolls back only its own savepoint and raises only to its caller, and every caller
        resumes after the shared COMMIT (flushed if any body in it is durable). A caller
        cancelled while its body still waits in the queue takes it out unrun."""
        if account_id is None:
            return await self._run(work, write, settle, durable)
        async with self._account_lock(account_id):
            return await self._run(work, write, settle, durable)

    async def _run(self, work: Work[T], write: bool, settle: bool, durable: bool) -> T:
        # Written for the common case (no errors): this runs four or five times per call,
        # and every context manager or extra future costs CPU.
        if self._path is None:
            return await _finish_even_if_cancelled(
                asyncio.ensure_future(self._run_async(work, write, settle, durable)))
        if not write:
            assert self._read_threads is not None
            return await self._in_thread(self._read_threads, work, "BEGIN", True)
        assert self.group is not None
        try:
            result: T = await self.group.run(
                work, durable=durable, settle=settle,
                wait=self.settle_timeout if settle else self.pool_timeout)
        except Exception as exc:
            explained = _storage_error(exc, "a connection", self.pool_timeout)
            if explained is None:
                raise
            raise explained from exc
        return result

    async def _turn_until(self, settle: bool, deadline: float) -> None:
        """SQLite: this process's turn to write, or TimeoutError at ``deadline`` (loop
        time); for the group writer, which fails the bodies whose wait ran out."""
        assert self.writers is not None
        if self.writers.try_acquire():
            return
        async with asyncio.timeout_at(deadline):
            await self.writers.acquire(SETTLE if settle else ORDINARY)

    def _busy(self, settle: bool) -> DatabaseBusy:
        assert self.writers is not None
        wait = self.settle_timeout if settle else self.pool_timeout
        log.error("database busy: no turn to write after %.0f s (%d writers waiting); "
                  "the service is overloaded", wait, self.writers.waiting)
        return DatabaseBusy(f"no turn to write to the database within {wait:.0f} s; "
                            "the service is overloaded, retry later")

    async def _run_async(self, work: Work[T], write: bool, settle: bool,
                         durable: bool) -> T:
        if not write:
            async with self.session() as s:
                return await (await s.connection()).run_sync(lambda c: work(CoreTx(c)))
        async with self.write_session(settle=settle) as s:
            conn = await s.connection()
            if not durable and not self.is_sqlite:
                await conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return await conn.run_sync(lambda c: work(CoreTx(c)))

    async def _in_thread(self, pool: StorageThreads, work: Work[T], begin: str,
                         durable: bool) -> T:
        """``work`` in one transaction on a storage thread; a cancelled caller still waits
        for the thread to finish (see run); failures explained as in _explained."""
        try:
            return await _finish_even_if_cancelled(
                pool.submit(self._sqlite_tx, work, begin, durable))
        except Exception as exc:
            explained = _storage_error(exc, "a connection", self.pool_timeout)
            if explained is None:
                raise
            raise explained from exc

    def _thread_conn(self, durable: bool) -> sqlite3.Connection:
        """In a storage thread: its own connection, its commits flushed if ``durable``."""
        local = self._local
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        sync = "FULL" if durable else "NORMAL"
        try:
            if conn is None:
                assert self._path is not None
                # Used only by this thread; check_same_thread=False lets dispose() close it.
                conn = sqlite3.connect(self._path, timeout=30, check_same_thread=False)
                sqlite_pragmas(conn)  # synchronous=FULL
                local.conn, local.sync = conn, "FULL"
                with self._raw_lock:
                    self._raw.append(conn)
            if local.sync != sync:
                conn.execute(f"PRAGMA synchronous={sync}")
                local.sync = sync
        except sqlite3.Error as exc:
            raise wrap_error(exc, "PRAGMA synchronous") from exc
        return conn

    def _sqlite_tx(self, work: Work[T], begin: str, durable: bool) -> T:
        """In a storage thread: one transaction on the thread's own connection."""
        conn = self._thread_conn(durable)
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise wrap_error(exc, begin) from exc
        try:
            result = work(SqliteTx(conn))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise wrap_error(exc, "COMMIT") from exc
            raise
        return result

    def _account_lock(self, account_id: int) -> asyncio.Lock:
        lock = self._locks.get(account_id)
        if lock is None:
            lock = self._locks[account_id] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session whose transaction commits on success and rolls back on error.

        On SQLite use it for reads and single inserts only: a transaction that reads and
        then writes must use write_session(), or a concurrent writer makes it fail at once
        with "database is locked" (SQLite cannot upgrade a WAL read snapshot)."""
        async with self.sessions() as s, _explained("a connection", self.pool_timeout), \
                s.begin():
            yield s

    @asynccontextmanager
    async def write_session(self, *, settle: bool = False) -> AsyncIterator[AsyncSession]:
        """Like session() but takes SQLite's write lock at BEGIN (no-op on PostgreSQL).

        ``settle``: recording a gateway's answer. It goes before other writers and waits
        up to settle_timeout instead of pool_timeout."""
        wait = self.settle_timeout if settle else self.pool_timeout
        what = "a connection to record a payment outcome" if settle else "a connection"
        maker = self._settle_sessions if settle else self._write_sessions
        # The session (and its connection) is closed before the turn passes on.
        async with self._write_turn(settle), maker() as s, _explained(what, wait), \
                s.begin():
            yield s

    @asynccontextmanager
    async def _write_turn(self, settle: bool) -> AsyncIterator[None]:
        """SQLite: this process's turn to write (settlements first), or DatabaseBusy."""
        if self.writers is None:
            yield
            return
        await self._wait_turn(settle)
        try:
            yield
        finally:
            self.writers.release()

    async def _wait_turn(self, settle: bool) -> None:
        assert self.writers is not None
        wait = self.settle_timeout if settle else self.pool_timeout
        try:
            async with asyncio.timeout(wait):
                await self.writers.acquire(SETTLE if settle else ORDINARY)
        except TimeoutError:
            raise self._busy(settle) from None

    @asynccontextmanager
    async def account_tx(self, account_id: int, *, settle: bool = False
                         ) -> AsyncIterator[tuple[AsyncSession, Account]]:
        """A write transaction holding the account row; concurrent writers to it wait."""
        async with self._account_lock(account_id), self.write_session(settle=settle) as s:
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


def lock_account(tx: Tx, account_id: int) -> int:
    """Take the account's row lock (PostgreSQL; on SQLite the write turn is the lock) so
    writers to one account queue in the database too, not only in this process; return
    its balance (minor units). Raises LookupError if there is no such account."""
    balance = tx.execute(_LOCK_ACCOUNT, {"id": account_id}).scalar_one_or_none()
    if balance is None:
        raise LookupError(f"no account with id {account_id}")
    return int(balance)


_LOCK_ACCOUNT = (select(Account.balance_minor).where(Account.id == bindparam("id"))
                 .with_for_update())


async def _finish_even_if_cancelled(fut: asyncio.Future[T]) -> T:
    """Await a transaction's result; if cancelled meanwhile, wait for it to end first (a
    worker thread cannot be stopped, and whoever holds a lock for it must hold it until
    then; an async one finishes too, so both databases behave alike)."""
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        while not fut.done():
            try:
                await asyncio.wait([fut])
            except asyncio.CancelledError:
                continue
        raise


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
async def _explained(what: str = "a connection", wait: float = POOL_TIMEOUT_S
                     ) -> AsyncIterator[None]:
    """Turn connection failures into StorageError so commands print advice, not tracebacks."""
    try:
        yield
    except Exception as exc:
        explained = _storage_error(exc, what, wait)
        if explained is None:
            raise
        raise explained from exc


def _storage_error(exc: BaseException, what: str, wait: float) -> StorageError | None:
    """The StorageError (with advice) that explains ``exc``, or None to let it through."""
    if isinstance(exc, PoolTimeout):
        log.error("database busy: waited %.0f s for %s in vain; the service is overloaded",
                  wait, what)
        return DatabaseBusy(f"no database connection within {wait:.0f} s; the service is "
                            "overloaded, retry later")
    if isinstance(exc, OSError | ConnectionError):
        return DatabaseUnavailable(f"the database went away: {exc}; check it is running "
                                   "and retry")
    if isinstance(exc, OperationalError):
        msg = str(exc.orig)
        if "no such table" in msg or "does not exist" in msg:
            return DatabaseNotInitialised("database not initialised: run `ivr db upgrade`")
        if "database is locked" in msg:  # another process kept SQLite's write lock too long
            log.error("database busy: the SQLite file stayed locked by another process "
                      "past busy_timeout")
            return DatabaseBusy("the database file stayed locked by another process; "
                                "retry later")
    return None
