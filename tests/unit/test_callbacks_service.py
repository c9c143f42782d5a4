"""Callbacks on the durable jobs, on a real SQLite database (migrated by Alembic): stored with
their job, placed by a worker once and only when due, retried by the job's strategy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.jobs import queue
from ivr.jobs.retry import fixed
from ivr.jobs.worker import JobKind, Worker
from ivr.services.callbacks import (
    CALLBACK_JOB,
    CallbackInfo,
    CallbackStore,
    OpeningHours,
    Originate,
    job_key,
    place_callback_job,
)
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade

T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'cb.db'}")
    await upgrade(database.engine)
    yield database
    await database.dispose()


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at

    def __call__(self) -> datetime:
        return self.now


def worker(store: CallbackStore, originate: Originate, clock: Clock, *,
           hours: OpeningHours | None = None, lease: float = 30.0,
           name: str | None = None) -> Worker:
    kind = JobKind(place_callback_job(store, originate, hours=hours), retry=store.retry)
    return Worker(store.db, {CALLBACK_JOB: kind}, clock=clock, lease=lease, name=name,
                  poll_interval=0.01)


async def test_due_callback_is_placed_once_and_only_when_due(db: Database) -> None:
    clock = Clock(T0)
    store = CallbackStore(db, clock=clock)
    cb = await store.schedule("+15551230001", T0 + timedelta(hours=11), language="es")
    placed: list[CallbackInfo] = []

    async def originate(info: CallbackInfo) -> bool:
        placed.append(info)
        return True

    w = worker(store, originate, clock)
    assert await w.run_due() == 0
    clock.now = T0 + timedelta(hours=11)
    assert await w.run_due() == 1
    clock.now = T0 + timedelta(hours=12)
    assert await w.run_due() == 0
    assert [p.number for p in placed] == ["+15551230001"]
    assert placed[0].language == "es"
    got = await store.get(cb.id)
    assert got is not None and got.status == "placed" and got.attempts == 1
    job = (await queue.list_jobs(db, kind=CALLBACK_JOB))[0]
    assert (job.state, job.dedupe_key) == ("done", job_key(cb.id))


async def test_second_request_moves_the_pending_callback_and_its_job(db: Database) -> None:
    store = CallbackStore(db)
    a = await store.schedule("+15551230001", T0)
    b = await store.schedule("+15551230001", T0 + timedelta(days=1))
    assert a.id == b.id
    assert [p.due_at for p in await store.pending()] == [T0 + timedelta(days=1)]
    jobs = await queue.list_jobs(db, kind=CALLBACK_JOB)
    assert [(j.state, j.run_at) for j in jobs] == [("queued", T0 + timedelta(days=1))]


async def test_failed_originate_retries_then_gives_up(db: Database) -> None:
    clock = Clock(T0)
    store = CallbackStore(db, clock=clock, retry=fixed(15 * 60.0, max_attempts=3))
    cb = await store.schedule("+15551230002", T0)
    tries: list[datetime] = []

    async def busy(info: CallbackInfo) -> bool:
        tries.append(clock.now)
        raise ConnectionError("AMI down")

    w = worker(store, busy, clock)
    for _ in range(3):
        assert await w.run_due() == 1
        assert await w.run_due() == 0  # the retry is 15 minutes out, not now
        clock.now += timedelta(minutes=15)
    assert await w.run_due() == 0
    assert tries == [T0, T0 + timedelta(minutes=15), T0 + timedelta(minutes=30)]
    got = await store.get(cb.id)
    assert got is not None and got.status == "failed" and got.attempts == 3
    assert got.last_error == "ConnectionError: AMI down"
    (job,) = await queue.list_jobs(db, state="failed")
    assert job.attempts == 3 and "AMI down" in (job.last_error or "")


class Closed:
    """Closed until ``opens``."""

    def __init__(self, opens: datetime) -> None:
        self.opens = opens

    def is_open(self, at: datetime) -> bool:
        return at >= self.opens

    def next_opening(self, at: datetime) -> datetime:
        return self.opens


async def test_closed_center_places_nothing_and_waits_for_the_opening(db: Database) -> None:
    clock = Clock(T0)
    store = CallbackStore(db, clock=clock)
    cb = await store.schedule("+15551230003", T0)
    calls: list[CallbackInfo] = []

    async def originate(info: CallbackInfo) -> bool:
        calls.append(info)
        return True

    opens = T0 + timedelta(hours=10)
    w = worker(store, originate, clock, hours=Closed(opens))
    assert await w.run_due() == 1  # looked at, and put back until the opening
    assert calls == []
    (job,) = await queue.list_jobs(db, kind=CALLBACK_JOB)
    assert (job.state, job.run_at, job.attempts) == ("queued", opens, 0)
    clock.now = opens
    assert await w.run_due() == 1
    got = await store.get(cb.id)
    assert [c.id for c in calls] == [cb.id] and got is not None and got.status == "placed"


async def test_two_workers_place_a_callback_once(db: Database) -> None:
    clock = Clock(T0)
    store = CallbackStore(db, clock=clock)
    await store.schedule("+15551230004", T0)
    calls: list[int] = []

    async def originate(info: CallbackInfo) -> bool:
        calls.append(info.id)
        await asyncio.sleep(0.01)
        return True

    workers = [worker(store, originate, clock) for _ in range(2)]
    async with workers[0], workers[1]:
        await asyncio.sleep(0.3)
    assert len(calls) == 1


async def test_a_callback_left_by_a_dead_worker_is_taken_again_after_its_lease(
        db: Database) -> None:
    """A worker that died between claiming and finishing must not lose the callback;
    a live lease must not be taken twice."""
    clock = Clock(T0)
    store = CallbackStore(db, clock=clock)
    cb = await store.schedule("+15551230009", T0)
    first = await queue.claim(db, "dead-worker", 10, lease=600, now=T0)  # ...then it dies
    assert [c.payload["callback_id"] for c in first] == [cb.id]
    placed: list[int] = []

    async def originate(info: CallbackInfo) -> bool:
        placed.append(info.id)
        return True

    w = worker(store, originate, clock)
    clock.now = T0 + timedelta(minutes=1)
    assert await w.run_due() == 0  # still the other worker's
    clock.now = T0 + timedelta(minutes=11)
    assert await w.run_due() == 1
    assert placed == [cb.id]
    (job,) = await queue.list_jobs(db, kind=CALLBACK_JOB)
    assert (job.state, job.attempts) == ("done", 2)
    clock.now = T0 + timedelta(hours=1)
    assert await w.run_due() == 0
