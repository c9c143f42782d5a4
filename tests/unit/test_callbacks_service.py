"""The callback store and scheduler on a real SQLite database (migrated by Alembic)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ivr.services.callbacks import CallbackInfo, CallbackStore, place_due, run_callback_scheduler
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade

T0 = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'cb.db'}")
    await upgrade(database.engine)
    yield database
    await database.dispose()


async def test_due_callback_is_placed_once_and_only_when_due(db: Database) -> None:
    store = CallbackStore(db, clock=lambda: T0)
    cb = await store.schedule("+15551230001", T0 + timedelta(hours=11), language="es")
    placed: list[CallbackInfo] = []

    async def originate(info: CallbackInfo) -> bool:
        placed.append(info)
        return True

    assert await place_due(store, originate, now=T0) == 0
    assert await place_due(store, originate, now=T0 + timedelta(hours=11)) == 1
    assert await place_due(store, originate, now=T0 + timedelta(hours=12)) == 0
    assert [p.number for p in placed] == ["+15551230001"]
    assert placed[0].language == "es"
    got = await store.get(cb.id)
    assert got is not None and got.status == "placed" and got.attempts == 1


async def test_second_request_moves_the_pending_callback(db: Database) -> None:
    store = CallbackStore(db)
    a = await store.schedule("+15551230001", T0)
    b = await store.schedule("+15551230001", T0 + timedelta(days=1))
    assert a.id == b.id
    assert [p.due_at for p in await store.pending()] == [T0 + timedelta(days=1)]


async def test_failed_originate_retries_then_gives_up(db: Database) -> None:
    store = CallbackStore(db)
    cb = await store.schedule("+15551230002", T0)

    async def busy(info: CallbackInfo) -> bool:
        raise ConnectionError("AMI down")

    now = T0
    for _ in range(3):
        assert await place_due(store, busy, now=now, max_attempts=3, retry_minutes=15) == 0
        now += timedelta(minutes=15)
    got = await store.get(cb.id)
    assert got is not None and got.status == "failed" and got.attempts == 3


async def test_closed_center_places_nothing(db: Database) -> None:
    store = CallbackStore(db)
    await store.schedule("+15551230003", T0)
    calls: list[CallbackInfo] = []

    async def originate(info: CallbackInfo) -> bool:
        calls.append(info)
        return True

    assert await place_due(store, originate, now=T0, is_open=lambda at: False) == 0
    assert calls == []


async def test_two_schedulers_place_a_callback_once(db: Database) -> None:
    store = CallbackStore(db, clock=lambda: T0)
    await store.schedule("+15551230004", T0)
    calls: list[int] = []

    async def originate(info: CallbackInfo) -> bool:
        calls.append(info.id)
        await asyncio.sleep(0.01)
        return True

    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_callback_scheduler(store, originate, interval=0.01,
                                                        stop=stop)) for _ in range(2)]
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*tasks)
    assert len(calls) == 1


async def test_a_claim_left_by_a_dead_worker_is_taken_again_later(db: Database) -> None:
    """A worker that died between claiming and finishing must not lose the callback;
    a live claim must not be taken twice."""
    store = CallbackStore(db)
    cb = await store.schedule("+15551230009", T0)
    first = await store.claim_due(T0)  # ...and this worker dies before finish()
    assert [c.id for c in first] == [cb.id]
    assert await store.claim_due(T0 + timedelta(minutes=1)) == []  # still someone's
    again = await store.claim_due(T0 + timedelta(minutes=11))
    assert [(c.id, c.attempts) for c in again] == [(cb.id, 2)]
    await store.finish(cb.id, placed=True)
    assert await store.claim_due(T0 + timedelta(hours=1)) == []
