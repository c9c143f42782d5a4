"""Durable jobs on SQLite and on a real PostgreSQL: each job runs once across workers, a
SIGKILLed worker's job is taken over after its lease, periodic work is deferred once per
period by any number of workers, and a job that keeps failing ends ``failed`` where
`ivr jobs list` shows it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from ivr.cli import main
from ivr.commands.jobs import JOB_STATES as CLI_JOB_STATES
from ivr.jobs import queue
from ivr.jobs.retry import RetryStrategy
from ivr.jobs.worker import JobContext, JobKind, Periodic, Worker
from ivr.storage.db import Database
from ivr.storage.jobs import JOB_STATES
from tests.fixtures.postgres import _TEMPLATE, _clone

ROOT = Path(__file__).resolve().parents[2]
RUNS_TABLE = ("CREATE TABLE job_runs (job_id BIGINT NOT NULL, worker VARCHAR(40) NOT NULL, "
              "finished INTEGER NOT NULL)")
RUN = text("INSERT INTO job_runs (job_id, worker, finished) VALUES (:id, :w, :f)")


async def _with_runs_table(db: Database) -> Database:
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql(RUNS_TABLE)
    return db


@pytest.fixture
async def jobs_db(db: Database) -> AsyncIterator[Database]:
    yield await _with_runs_table(db)


async def _pg_url(request: pytest.FixtureRequest) -> str:
    pg = request.getfixturevalue("postgres_cluster")
    url = await _clone(pg, _TEMPLATE)
    db = Database(url)
    try:
        await _with_runs_table(db)
    finally:
        await db.dispose()
    return url


@pytest.fixture
async def pg_url(request: pytest.FixtureRequest) -> str:
    return await _pg_url(request)


@pytest.fixture(params=["sqlite", "postgresql"])
async def runs_db_url(request: pytest.FixtureRequest, db_url: str) -> str:
    """db_url (both backends) with the job_runs table."""
    db = Database(db_url)
    try:
        await _with_runs_table(db)
    finally:
        await db.dispose()
    return db_url


async def runs(db: Database) -> list[tuple[int, str, int]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(text("SELECT job_id, worker, finished FROM job_runs"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def until(predicate, seconds: float, every: float = 0.1) -> None:  # noqa: ANN001
    """Poll an async predicate until it holds (a test's deadline, not a product wait)."""
    async with asyncio.timeout(seconds):
        while not await predicate():  # noqa: ASYNC110 (polling the database is the point)
            await asyncio.sleep(every)


def counting(db: Database, worker: str):  # noqa: ANN201 (a handler factory)
    async def handle(job: JobContext) -> None:
        await db.run(lambda tx: tx.execute(RUN, {"id": job.id, "w": worker, "f": 1}))
    return handle


def test_the_cli_knows_every_job_state() -> None:
    assert CLI_JOB_STATES == JOB_STATES


async def test_defer_is_deduplicated_and_a_job_runs_once(jobs_db: Database) -> None:
    first = await queue.defer(jobs_db, "count", {"n": 1}, dedupe_key="statement:42")
    again = await queue.defer(jobs_db, "count", {"n": 2}, dedupe_key="statement:42")
    assert first is not None and again is None
    w = Worker(jobs_db, {"count": JobKind(counting(jobs_db, "w1"))})
    assert await w.run_due() == 1
    assert await w.run_due() == 0
    assert await runs(jobs_db) == [(first, "w1", 1)]
    job = await queue.get(jobs_db, first)
    assert job is not None and (job.state, job.attempts, job.payload) == ("done", 1, {"n": 1})


async def test_a_handler_that_always_raises_ends_failed_with_its_error(
        jobs_db: Database, db_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    async def broken(job: JobContext) -> None:
        raise ValueError(f"no such statement {job.payload['statement']}")

    jid = await queue.defer(jobs_db, "notice", {"statement": "S-9"}, max_attempts=3)
    strategy = RetryStrategy(max_attempts=3, base_delay=0.0, jitter=0.0)
    w = Worker(jobs_db, {"notice": JobKind(broken, retry=strategy)})
    assert await w.run_due() == 3  # three attempts, each due at once
    job = await queue.get(jobs_db, jid)  # type: ignore[arg-type]
    assert job is not None and (job.state, job.attempts) == ("failed", 3)
    assert job.last_error == "ValueError: no such statement S-9"

    monkeypatch.setenv("STARPAY_DATABASE_URL", db_url)

    async def cli(*argv: str) -> int:  # the command runs its own event loop
        return await asyncio.to_thread(main, list(argv))

    assert await cli("jobs", "list", "--state", "failed") == 0
    out = capsys.readouterr().out
    assert "1 failed" in out and "notice" in out and "no such statement S-9" in out
    assert await cli("jobs", "retry", str(jid)) == 0
    assert "is now queued" in capsys.readouterr().out
    assert await cli("jobs", "cancel", str(jid)) == 0
    assert await cli("jobs", "retry", "999999") == 1
    assert "there is no job 999999" in capsys.readouterr().err
    job = await queue.get(jobs_db, jid)  # type: ignore[arg-type]
    assert job is not None and job.state == "cancelled"


@pytest.mark.postgres
async def test_ten_thousand_jobs_through_two_workers_each_run_once(pg_url: str) -> None:
    setup = Database(pg_url)
    try:
        async with setup.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO jobs (kind, payload, run_at, state, attempts, max_attempts, "
                "created_at) SELECT 'count', '{}', now(), 'queued', 0, 5, now() "
                "FROM generate_series(1, 10000)"))
    finally:
        await setup.dispose()
    # Two workers, each with its own database pool, as two `ivr serve` processes would be.
    dbs = [Database(pg_url), Database(pg_url)]
    try:
        workers = [Worker(db, {"count": JobKind(counting(db, f"w{i}"))}, concurrency=16,
                          poll_interval=0.05) for i, db in enumerate(dbs)]
        async with workers[0], workers[1]:
            async def all_done() -> bool:
                return (await queue.counts(dbs[0])).get("done", 0) >= 10000

            await until(all_done, 120, 0.2)
        done = await runs(dbs[0])
        per_job = Counter(job_id for job_id, _, _ in done)
        assert len(per_job) == 10000 and set(per_job.values()) == {1}
        per_worker = Counter(w for _, w, _ in done)
        assert per_worker["w0"] > 0 and per_worker["w1"] > 0, per_worker
        assert await queue.counts(dbs[0]) == {"done": 10000}
    finally:
        for db in dbs:
            await db.dispose()


async def test_a_sigkilled_workers_job_is_taken_again_after_its_lease_and_finished_once(
        runs_db_url: str) -> None:
    url = runs_db_url
    db = Database(url)
    victim: asyncio.subprocess.Process | None = None
    try:
        jid = await queue.defer(db, "slow", {})
        victim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.fixtures.job_worker", url, "2", cwd=ROOT,
            stdout=asyncio.subprocess.PIPE)
        assert victim.stdout is not None
        line = await asyncio.wait_for(victim.stdout.readline(), 30)
        assert line.decode().strip() == f"started {jid}"
        os.kill(victim.pid, signal.SIGKILL)  # mid-job: no completion, no release
        await asyncio.wait_for(victim.wait(), 10)
        held = await queue.get(db, jid)  # type: ignore[arg-type]
        assert held is not None and held.state == "running" and held.attempts == 1

        survivor = Worker(db, {"slow": JobKind(counting(db, "survivor"))}, poll_interval=0.05)
        assert await survivor.run_due() == 0  # the lease still holds
        async with survivor:
            async def finished() -> bool:
                return (await queue.get(db, jid)).state == "done"  # type: ignore[arg-type,union-attr]

            await until(finished, 15)
        job = await queue.get(db, jid)  # type: ignore[arg-type]
        assert job is not None and job.attempts == 2 and job.lease_owner is None
        assert sorted(await runs(db)) == [(jid, "survivor", 1), (jid, "victim", 0)]
    finally:
        if victim is not None and victim.returncode is None:
            victim.kill()
            await victim.wait()
        await db.dispose()


async def test_three_workers_scheduling_a_periodic_job_make_one_per_period(
        jobs_db: Database) -> None:
    every = 0.25
    handlers = {"tick": JobKind(counting(jobs_db, "any"))}
    workers = [Worker(jobs_db, handlers, periodic=[Periodic("tick", every)],
                      poll_interval=0.02) for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        for w in workers:
            await stack.enter_async_context(w)
        await asyncio.sleep(2.0)
    jobs = await queue.list_jobs(jobs_db, kind="tick", limit=1000)
    keys = [j.dedupe_key for j in jobs]
    assert len(keys) == len(set(keys))  # one job per period, whoever deferred it
    periods = sorted(int(k.rsplit(":", 1)[1]) for k in keys)  # type: ignore[union-attr]
    assert periods == list(range(periods[0], periods[0] + len(periods)))  # none skipped
    assert 6 <= len(periods) <= 10
    done = Counter(job_id for job_id, _, _ in await runs(jobs_db))
    finished = {j.id for j in jobs if j.state == "done"}
    assert set(done) == finished and set(done.values()) == {1}
    assert len(finished) >= len(jobs) - 1  # the last period's may be starting as we stop
