"""Group commit on a SQLite file (ivr.storage.group_commit): write bodies queued while a
transaction is in flight share the next one, each in its own savepoint."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from ivr.storage import audit
from ivr.storage.db import Database, DatabaseBusy
from ivr.storage.migrate import upgrade
from ivr.storage.models import AuditEntry
from ivr.storage.tx import Tx


@pytest.fixture
async def sdb(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/group.db")
    await upgrade(db.engine)
    try:
        yield db
    finally:
        await db.dispose()


def _count(action: str):
    def work(tx: Tx) -> int:
        return int(tx.execute(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action == action)).scalar_one())
    return work


def _blocker(started: threading.Event, release: threading.Event):
    """A body that holds its transaction (and so the write thread) until released."""
    def work(tx: Tx) -> str:
        audit.append(tx, "test", "gc.blocker", None)
        started.set()
        assert release.wait(10)
        return "blocker"
    return work


def _ok(n: int):
    def work(tx: Tx) -> int:
        audit.append(tx, "test", "gc.ok", None, n=n)
        return n
    return work


async def _behind_a_blocker(db: Database, bodies, **kw):
    """Start a blocking body, queue ``bodies`` behind it, let it go; the results."""
    started, release = threading.Event(), threading.Event()
    first = asyncio.create_task(db.run(_blocker(started, release)))
    assert await asyncio.to_thread(started.wait, 5)
    queued = [asyncio.create_task(db.run(b, **kw)) for b in bodies]
    await asyncio.sleep(0.05)  # all queued behind the blocker
    release.set()
    assert await first == "blocker"
    return await asyncio.gather(*queued, return_exceptions=True)


async def test_bodies_queued_during_a_write_share_one_transaction(sdb: Database):
    assert sdb.group is not None
    before = sdb.group.transactions
    results = await _behind_a_blocker(sdb, [_ok(i) for i in range(50)])
    assert results == list(range(50))
    # The blocker's transaction, then one for all fifty.
    assert sdb.group.transactions - before == 2
    assert await sdb.run(_count("gc.ok"), write=False) == 50


async def test_a_lone_body_runs_at_once_in_its_own_transaction(sdb: Database):
    assert sdb.group is not None
    before = sdb.group.transactions
    for i in range(3):
        assert await sdb.run(_ok(i)) == i
    assert sdb.group.transactions - before == 3


async def test_one_failing_body_rolls_back_only_itself(sdb: Database):
    def fails(tx: Tx) -> None:
        audit.append(tx, "test", "gc.fails", None)
        raise RuntimeError("this body only")

    def constraint(tx: Tx) -> None:  # a database error inside the body
        audit.append(tx, "test", "gc.fails", None)
        tx.execute(AuditEntry.__table__.insert(), {"actor": None, "action": "x"})

    bodies = [_ok(0), fails, _ok(1), constraint, _ok(2)]
    results = await _behind_a_blocker(sdb, bodies)
    assert results[0] == 0 and results[2] == 1 and results[4] == 2
    assert isinstance(results[1], RuntimeError) and "this body only" in str(results[1])
    assert isinstance(results[3], Exception) and "NOT NULL" in str(results[3])
    assert await sdb.run(_count("gc.ok"), write=False) == 3
    assert await sdb.run(_count("gc.fails"), write=False) == 0


async def test_body_cancelled_while_queued_never_runs(sdb: Database):
    started, release = threading.Event(), threading.Event()
    first = asyncio.create_task(sdb.run(_blocker(started, release)))
    assert await asyncio.to_thread(started.wait, 5)
    doomed = asyncio.create_task(sdb.run(_ok(99)))
    kept = asyncio.create_task(sdb.run(_ok(1)))
    await asyncio.sleep(0.05)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    release.set()
    assert await first == "blocker"
    assert await kept == 1
    assert await sdb.run(_count("gc.ok"), write=False) == 1


async def test_cancelled_caller_of_a_running_batch_waits_and_its_body_commits(
        sdb: Database):
    started, release = threading.Event(), threading.Event()
    first = asyncio.create_task(sdb.run(_blocker(started, release)))
    assert await asyncio.to_thread(started.wait, 5)
    first.cancel()
    await asyncio.sleep(0.1)
    assert not first.done(), "the cancellation must wait for the running transaction"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await sdb.run(_count("gc.blocker"), write=False) == 1


async def test_durable_body_is_flushed_before_its_caller_resumes(sdb: Database):
    """A transaction of non-durable bodies commits at synchronous=NORMAL; one durable body
    among them makes it FULL (the level is set before BEGIN, so a body can read it), and
    every caller resumes only once the storage thread has returned from the COMMIT."""
    assert sdb.group is not None
    committed: list[float] = []
    real = sdb.group._transaction

    def timed(works, durable):  # type: ignore[no-untyped-def]
        out = real(works, durable)
        committed.append(time.monotonic())
        return out

    sdb.group._transaction = timed  # type: ignore[method-assign]

    def level(tx: Tx) -> int:
        return int(tx.execute(text("PRAGMA synchronous")).scalar_one())

    async def resumed_at(task: asyncio.Task[int]) -> tuple[int, float]:
        return await task, time.monotonic()

    lazy = await _behind_a_blocker(sdb, [_ok(1), _ok(2), level], durable=False)
    assert lazy == [1, 2, 1]  # NORMAL

    started, release = threading.Event(), threading.Event()
    first = asyncio.create_task(sdb.run(_blocker(started, release)))
    assert await asyncio.to_thread(started.wait, 5)
    lazy_task = asyncio.create_task(sdb.run(level, durable=False))
    durable_task = asyncio.create_task(sdb.run(level))
    await asyncio.sleep(0.05)
    release.set()
    await first
    (lazy_level, t1), (durable_level, t2) = await asyncio.gather(
        resumed_at(lazy_task), resumed_at(durable_task))
    assert (lazy_level, durable_level) == (2, 2)  # FULL: one durable body in the batch
    assert min(t1, t2) >= committed[-1]


async def test_each_queued_body_keeps_its_own_bounded_wait(tmp_path: Path):
    """The write turn held elsewhere past a body's wait: DatabaseBusy for that body."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/busy.db", pool_timeout=0.3)
    await upgrade(db.engine)
    try:
        async with db.write_session():  # holds the process's write turn
            with pytest.raises(DatabaseBusy):
                await db.run(_ok(1))
        assert await db.run(_ok(2)) == 2
    finally:
        await db.dispose()
