"""Group commit for one SQLite file: the write bodies of :meth:`Database.run` share
transactions, and so share the disk flush.

SQLite has one writer per file, and a durable commit (``synchronous=FULL``) waits for the
disk. One transaction per body made the flush, and not the statements, the limit of a
burst: 2,000 callers confirming at once queued their charges behind 2,000 flushes in a row
(the confirmation's round trip: p99 7.5 s where every other command took under 0.4 s).

So bodies wait in a queue. When nobody writes, the first body runs at once, alone (no
added latency for a lone call); the bodies queued while a transaction is in flight run back
to back in the next one, each inside its own ``SAVEPOINT``:

* a body that raises is rolled back to its savepoint and raises to its own caller only;
  the others still commit;
* every caller resumes only after the COMMIT of its body's transaction has returned, and
  the COMMIT is ``synchronous=FULL`` (flushed) if any body in it is durable: a durable
  body is on disk before its caller goes on (a charge before its gateway call); a body
  with ``durable=False`` gets the flush for free when it shares a durable transaction;
* a failed COMMIT fails every body of that transaction;
* settlements (``settle=True``) are taken into a transaction before ordinary bodies, and
  the turn to write is asked for at settling priority when one is queued as the wait
  for it begins;
* a caller cancelled while its body still waits in the queue takes it out (it never runs);
  once its body is in a transaction the cancellation waits for that transaction to end, as
  Database.run promises;
* each body keeps its own bounded wait for the write turn (past it: DatabaseBusy).

Bodies of one transaction see each other's writes in queue order, which is what running
them one after another would give; the account locks Database.run holds keep two bodies
of one account out of one transaction anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from typing import Any

from ivr.storage.threads import StorageThreads
from ivr.storage.tx import SqliteTx, Tx, wrap_error

log = logging.getLogger(__name__)

# Bodies per transaction at most: a transaction holds the write turn (and SQLite's lock)
# while its bodies run, so other processes and settlements should not wait too long.
MAX_BATCH = 256

Body = Callable[[Tx], Any]


class Queued:
    """One body waiting for, or in, a transaction."""

    __slots__ = ("work", "durable", "settle", "deadline", "done", "started")

    def __init__(self, work: Body, durable: bool, settle: bool, deadline: float,
                 done: asyncio.Future[Any]) -> None:
        self.work, self.durable, self.settle = work, durable, settle
        self.deadline = deadline
        self.done = done
        self.started = False  # taken into a transaction: it will run to its end


# What the storage thread hands back for each body: (True, result) or (False, exception).
Outcome = tuple[bool, Any]


class GroupCommit:
    """The batching writer for one Database on a SQLite file.

    ``take_turn(settle, deadline)`` waits for the process's write turn (raising
    TimeoutError when the deadline, a loop time, passes) and ``release_turn()`` gives it
    back; ``connect(durable)`` runs in the storage thread and returns that thread's
    connection set to the right ``synchronous`` level, outside any transaction."""

    def __init__(self, thread: StorageThreads,
                 take_turn: Callable[[bool, float], Any],
                 release_turn: Callable[[], None],
                 connect: Callable[[bool], sqlite3.Connection],
                 on_busy: Callable[[bool], BaseException]) -> None:
        self._thread = thread
        self._take_turn = take_turn
        self._release_turn = release_turn
        self._connect = connect
        self._on_busy = on_busy
        self._queue: deque[Queued] = deque()
        self._settling = 0  # queued settlements (they go first)
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0  # BEGINs so far (tests count how many bodies share one)

    async def run(self, work: Body, *, durable: bool, settle: bool, wait: float) -> Any:
        loop = asyncio.get_running_loop()
        entry = Queued(work, durable, settle, loop.time() + wait, loop.create_future())
        self._queue.append(entry)
        self._settling += settle
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush_all())
        try:
            return await asyncio.shield(entry.done)
        except asyncio.CancelledError:
            if entry.done.done() and not entry.done.cancelled():
                raise  # already finished: the result is dropped with the caller
            if not entry.started:
                self._forget(entry)
                raise
            while not entry.done.done():  # in a transaction: wait for its end
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([entry.done])
            raise

    def _forget(self, entry: Queued) -> None:
        with contextlib.suppress(ValueError):
            self._queue.remove(entry)
            self._settling -= entry.settle
        if not entry.done.done():
            entry.done.cancel()

    async def _flush_all(self) -> None:
        try:
            while self._queue:
                if not await self._wait_turn():
                    continue
                try:
                    batch = self._take()
                    if batch:
                        await self._commit(batch)
                finally:
                    self._release_turn()
        finally:
            self._flusher = None
            if self._queue:  # cancelled (the loop is closing): nobody may hang
                for entry in list(self._queue):
                    self._forget(entry)

    async def _wait_turn(self) -> bool:
        """The write turn for the queued bodies; False (after failing the bodies whose own
        wait ran out) if the earliest deadline passed first."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        for entry in [e for e in self._queue if e.deadline <= now]:
            self._fail_busy(entry)
        if not self._queue:
            return False
        deadline = min(e.deadline for e in self._queue)
        try:
            await self._take_turn(self._settling > 0, deadline)
        except TimeoutError:
            return False
        return True

    def _fail_busy(self, entry: Queued) -> None:
        self._queue.remove(entry)
        self._settling -= entry.settle
        if not entry.done.done():
            entry.done.set_exception(self._on_busy(entry.settle))

    def _take(self) -> list[Queued]:
        """Up to MAX_BATCH queued bodies, settlements first, each in queue order."""
        queue = self._queue
        if self._settling and len(queue) > MAX_BATCH:
            first = [e for e in queue if e.settle][:MAX_BATCH]
            rest = [e for e in queue if not e.settle][:MAX_BATCH - len(first)]
            batch = first + rest
            chosen = set(map(id, batch))
            self._queue = deque(e for e in queue if id(e) not in chosen)
        elif len(queue) > MAX_BATCH:
            batch = [queue.popleft() for _ in range(MAX_BATCH)]
        else:
            batch, self._queue = list(queue), deque()
        batch.sort(key=lambda e: not e.settle)  # stable: queue order within each kind
        for entry in batch:
            entry.started = True
            self._settling -= entry.settle
        return batch

    async def _commit(self, batch: list[Queued]) -> None:
        durable = any(e.durable for e in batch)
        fut = self._thread.submit(self._transaction, [e.work for e in batch], durable)
        try:
            outcomes = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The thread cannot be stopped: hold the turn and deliver once it is done.
            while not fut.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait([fut])
            if fut.exception() is not None:
                outcomes = [(False, fut.exception())] * len(batch)
            else:
                outcomes = fut.result()
            _deliver(batch, outcomes)
            raise
        except BaseException as exc:  # noqa: BLE001 - the batch itself failed: tell all
            outcomes = [(False, exc)] * len(batch)
        _deliver(batch, outcomes)

    def _transaction(self, works: list[Body], durable: bool) -> list[Outcome]:
        """In the storage thread: the bodies in one transaction (or more, if SQLite itself
        rolled one back), committed before anything is returned."""
        conn = self._connect(durable)
        try:
            return self._run_bodies(conn, works)
        except BaseException:
            # A failed savepoint statement, KeyboardInterrupt and the like: nothing of
            # this transaction commits, and the connection is left clean for the next.
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise

    def _run_bodies(self, conn: sqlite3.Connection, works: list[Body]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        begun = 0  # outcomes[begun:] belong to the open transaction
        alone = len(works) == 1  # no savepoint: the whole transaction is the body's
        for work in works:
            if not conn.in_transaction:  # the first body, or SQLite rolled back the last
                begun = len(outcomes)
                self._begin(conn)
            if not alone:
                conn.execute("SAVEPOINT body")
            try:
                result = work(SqliteTx(conn))
            except Exception as exc:  # noqa: BLE001 - handed to that body's caller
                if not conn.in_transaction:
                    # Some errors (disk full, I/O) make SQLite roll the whole transaction
                    # back: the bodies before this one in it are lost as well.
                    outcomes[begun:] = [o if not o[0] else (False, exc)
                                        for o in outcomes[begun:]]
                elif alone:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute("ROLLBACK TO body")
                    conn.execute("RELEASE body")
                outcomes.append((False, exc))
                continue
            if not alone:
                conn.execute("RELEASE body")
            outcomes.append((True, result))
        if conn.in_transaction:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                err = wrap_error(exc, "COMMIT")
                outcomes[begun:] = [(False, err)] * (len(outcomes) - begun)
        return outcomes

    def _begin(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise wrap_error(exc, "BEGIN IMMEDIATE") from exc
        self.transactions += 1


def _deliver(batch: list[Queued], outcomes: list[Outcome]) -> None:
    for entry, (ok, value) in zip(batch, outcomes, strict=True):
        if entry.done.done():
            continue
        if ok:
            entry.done.set_result(value)
        else:
            entry.done.set_exception(value)
