"""The composition root: `ivr serve` builds each resource once and closes all of it.

Started and stopped 20 times in one process, with a call and a reconcile pass each time,
serve leaves no socket, file descriptor, thread or task behind; while it runs, the call
path and the jobs worker share one Database (one per URL) and one gateway."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import psutil
from sqlalchemy import func, select

from ivr.app import serve_app
from ivr.asterisk.local import free_port
from ivr.commands.serve import serve
from ivr.config import Config
from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.storage.calls import CallRecord
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade


async def _config(tmp_path: Path) -> Config:
    cfg = Config()
    cfg.database.url = f"sqlite+aiosqlite:///{tmp_path / 'starpay.db'}"
    cfg.payments.sandbox_path = str(tmp_path / "ledger.db")
    cfg.payments.reconcile_interval = 0.2
    cfg.agi.port = free_port()
    cfg.agi.shutdown_grace = 2.0
    cfg.ami.port = free_port()  # nothing listens: the AMI link is opened only when needed
    cfg.ami.secret = "not-used"
    db = Database(cfg.database.url)
    try:
        await upgrade(db.engine)
    finally:
        await db.dispose()
    return cfg


async def _one_call(port: int) -> None:
    fake = FakeAsterisk(port, callerid="+15550001111", hangup_at=3)
    await fake.run(max_seconds=10)


async def _serve_once(cfg: Config) -> None:
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(serve(cfg, stop=stop, ready=lambda _s: ready.set()))
    await asyncio.wait_for(ready.wait(), 10)
    await _one_call(cfg.agi.port)
    await asyncio.sleep(0.3)  # at least one reconcile pass through the jobs worker
    stop.set()
    await asyncio.wait_for(task, 20)


def _footprint() -> tuple[int, int, list[str], int]:
    me = psutil.Process()
    gc.collect()
    # The loop's default executor keeps a bounded pool of idle threads (asyncio_N) that
    # grows on first use: not ours to close, and not a leak.
    threads = sorted(t.name for t in threading.enumerate()
                     if not t.name.startswith("asyncio_"))
    return (me.num_fds(), len(me.net_connections(kind="inet")), threads,
            len(asyncio.all_tasks()))


async def test_serve_started_and_stopped_20_times_leaks_nothing(tmp_path: Path) -> None:
    cfg = await _config(tmp_path)
    await _serve_once(cfg)  # the first start loads modules and caches: not a leak
    before = _footprint()
    for _ in range(20):
        await _serve_once(cfg)
    after = _footprint()
    assert after == before, ("fds, sockets, threads, tasks", before, after)
    db = Database(cfg.database.url)
    try:
        async with db.session() as s:
            calls = (await s.execute(select(func.count()).select_from(CallRecord))).scalar()
    finally:
        await db.dispose()
    assert calls == 21  # every start really served a call


async def test_a_running_serve_holds_one_database_per_url_shared_by_calls_and_jobs(
        tmp_path: Path) -> None:
    cfg = await _config(tmp_path)
    gc.collect()
    databases_before = sum(isinstance(o, Database) for o in gc.get_objects())
    async with serve_app(cfg) as app:
        await _one_call(app.cfg.agi.port)
        assert app.engines == 1
        assert app.worker is not None and app.worker.db is app.database()
        ctx = app.flow_context()
        assert ctx.payments.db is ctx.accounts.db is ctx.calls.db is app.worker.db
        assert ctx.payments.gateway is app.gateway
        gc.collect()
        live = sum(isinstance(o, Database) for o in gc.get_objects()) - databases_before
        assert live == 1
