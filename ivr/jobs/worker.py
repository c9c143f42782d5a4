"""The worker: claims due jobs, runs their kind's handler, finishes or retries them.

One worker runs inside each `ivr serve`; several processes (one PostgreSQL) share the work
through the table, never running a job twice at once (see queue.py). A worker:

- claims up to ``concurrency`` due jobs at a time and runs each as a task;
- completes successful jobs in batches (jobs finishing together share one transaction);
- on an exception asks the kind's :class:`RetryStrategy` for the next run, or leaves the job
  ``failed`` with its error (logged as one line: the cause and what happens next);
- renews the leases of the jobs it runs, so only a dead worker's jobs are taken over;
- defers periodic jobs with one dedupe key per period, so N workers make one job;
- on stop, lets running jobs finish for ``grace`` seconds, then gives them back.

A kind's handler may also be a synchronous ``tx_handler(tx, job)`` run inside the
transaction that completes the job: its database writes and the job's completion then
commit together, so even a SIGKILL between the two cannot run it twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ivr.jobs import queue
from ivr.jobs.queue import Claimed
from ivr.jobs.retry import RetryStrategy
from ivr.storage.db import Database
from ivr.storage.tx import Tx

log = logging.getLogger(__name__)


# What a handler gets: the job's id, kind, payload, this run's attempt and the limit.
JobContext = Claimed


class Reschedule(Exception):  # noqa: N818 (a signal to the worker, not an error)
    """Raised by a handler: run this job again at ``at``; this run does not count."""

    def __init__(self, at: datetime, why: str = "") -> None:
        super().__init__(why or f"not before {at.isoformat()}")
        self.at = at


Handler = Callable[[JobContext], Awaitable[None]]
TxHandler = Callable[[Tx, JobContext], None]


@dataclass(frozen=True)
class JobKind:
    """How to run one kind of job. Exactly one of ``handler`` and ``tx_handler``."""

    handler: Handler | None = None
    tx_handler: TxHandler | None = None
    retry: RetryStrategy = field(default_factory=RetryStrategy)
    timeout: float = 300.0  # one run; past it the run counts as failed

    def __post_init__(self) -> None:
        if (self.handler is None) == (self.tx_handler is None):
            raise ValueError("give a JobKind either handler or tx_handler")


@dataclass(frozen=True)
class Periodic:
    """Defer ``kind`` once every ``every`` seconds, across all workers."""

    kind: str
    every: float
    payload: dict[str, Any] = field(default_factory=dict)

    def key(self, at: datetime) -> tuple[str, datetime]:
        """This period's dedupe key and start."""
        n = int(at.timestamp() // self.every)
        return (f"periodic:{self.kind}:{n}",
                datetime.fromtimestamp(n * self.every, UTC))


PERIODIC_KEEP = timedelta(days=1)  # finished periodic passes kept this long


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    """Run ``async with Worker(db, kinds):``, or start()/stop()."""

    def __init__(self, db: Database, kinds: dict[str, JobKind], *,
                 periodic: Sequence[Periodic] = (), concurrency: int = 16,
                 poll_interval: float = 0.5, lease: float = 30.0, grace: float = 10.0,
                 name: str | None = None,
                 clock: Callable[[], datetime] = queue.utcnow) -> None:
        for p in periodic:
            if p.kind not in kinds:
                raise ValueError(f"periodic job {p.kind!r} has no registered kind")
        self.db = db
        self.kinds = kinds
        self.periodic = list(periodic)
        self.concurrency = max(1, concurrency)
        self._claim_batch = max(1, self.concurrency // 4)
        self.poll_interval = poll_interval
        self.lease = lease
        self.grace = grace
        self.name = name or worker_name()
        self.clock = clock  # "now" for claims and retries (tests move it)
        self._running: dict[int, asyncio.Task[None]] = {}
        self._done: list[int] = []  # completed, not yet written
        self._flushing: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._deferred_period: dict[str, str] = {}
        self._purged = datetime.min.replace(tzinfo=UTC)
        self.ran = 0  # runs finished here (any outcome), for tests and benchmarks

    async def __aenter__(self) -> Worker:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name=f"jobs-{self.name}"),
                       asyncio.create_task(self._heartbeat(), name=f"jobs-lease-{self.name}")]

    def wake(self) -> None:
        """Look for due jobs now (someone in this process just deferred one)."""
        self._wake.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for t in self._tasks:
            with contextlib.suppress(Exception):
                await t
        if self._running:
            _, pending = await asyncio.wait(list(self._running.values()), timeout=self.grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._flush()
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)
        self._tasks = []

    # ---- the claim loop --------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._defer_periodic()
                free = self.concurrency - len(self._running)
                claimed = await queue.claim(self.db, self.name, free, self.lease,
                                             self.clock()) if free > 0 else []
            except Exception as exc:  # a dead database: say it once a round, go on
                log.warning("jobs: cannot reach the jobs table (%s: %s); trying again in "
                            "%.0f s", type(exc).__name__, exc, max(1.0, self.poll_interval))
                await self._sleep(max(1.0, self.poll_interval))
                continue
            for job in claimed:
                self._running[job.id] = asyncio.create_task(self._run(job))
            if len(claimed) == free and free > 0:
                continue  # there may be more due right now
            if len(self._running) > self.concurrency - self._claim_batch:
                await self._room_for_a_batch()
                continue
            await self._sleep(await self._idle_wait())

    async def _room_for_a_batch(self) -> None:
        """Wait until a batch of slots is free (or a moment after the first is): one claim
        for several jobs, rather than a claim transaction per finished job under load."""
        await asyncio.wait(list(self._running.values()), return_when=asyncio.FIRST_COMPLETED)
        deadline = asyncio.get_running_loop().time() + 0.02
        while self._running and len(self._running) > self.concurrency - self._claim_batch:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.wait(list(self._running.values()), timeout=left,
                               return_when=asyncio.FIRST_COMPLETED)

    async def _idle_wait(self) -> float:
        """How long to sleep: until the next due job if sooner than the poll interval."""
        try:
            due = await queue.next_due(self.db)
        except Exception:
            return self.poll_interval
        if due is None:
            return self.poll_interval
        return min(self.poll_interval, max(0.0, (due - self.clock()).total_seconds()))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _defer_periodic(self) -> None:
        now = self.clock()
        for p in self.periodic:
            key, start = p.key(now)
            if self._deferred_period.get(p.kind) == key:
                continue
            await queue.defer(self.db, p.kind, p.payload, run_at=start, dedupe_key=key,
                              max_attempts=1)
            self._deferred_period[p.kind] = key
        if self.periodic and now - self._purged > timedelta(hours=1):
            self._purged = now
            await queue.purge_done(self.db, "periodic:", PERIODIC_KEEP)

    # ---- one job ---------------------------------------------------------------------------

    async def _run(self, job: Claimed) -> None:
        try:
            await self._outcome(job)
        except asyncio.CancelledError:
            # Stopping: give the job back now rather than when the lease runs out.
            with contextlib.suppress(Exception):
                await queue.release(self.db, self.name, [job.id], self.clock())
            raise
        except Exception:
            log.exception("jobs: job %d (%s): could not record its outcome; it runs again "
                          "when its lease expires", job.id, job.kind)
        finally:
            self._running.pop(job.id, None)
            self.ran += 1

    async def _outcome(self, ctx: JobContext) -> None:
        kind = self.kinds.get(ctx.kind)
        if kind is None:
            await self._failed(ctx, None, f"no handler for job kind {ctx.kind!r} in this "
                               "worker")
            return
        if ctx.attempt > ctx.max_attempts:  # its last run died with its worker
            await queue.fail(self.db, self.name, ctx.id, "the worker running its last "
                             "attempt stopped (lease expired)")
            log.warning("jobs: job %d (%s) failed: its worker died on the last attempt",
                        ctx.id, ctx.kind)
            return
        try:
            async with asyncio.timeout(kind.timeout):
                if kind.tx_handler is not None:
                    await self._run_in_tx(kind.tx_handler, ctx)
                    return
                assert kind.handler is not None
                await kind.handler(ctx)
        except Reschedule as r:
            await queue.release(self.db, self.name, [ctx.id], r.at)
            return
        except TimeoutError:
            await self._failed(ctx, kind, f"timed out after {kind.timeout:.0f} s")
            return
        except Exception as exc:
            await self._failed(ctx, kind, f"{type(exc).__name__}: {exc}")
            return
        self._done.append(ctx.id)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush_soon())

    async def _run_in_tx(self, handler: TxHandler, ctx: JobContext) -> None:
        def body(tx: Tx) -> None:
            if not queue.complete_in(tx, self.name, ctx.id):
                raise _LeaseLost
            handler(tx, ctx)

        with contextlib.suppress(_LeaseLost):
            await self.db.run(body)

    async def _failed(self, ctx: JobContext, kind: JobKind | None, error: str) -> None:
        delay = kind.retry.next_delay(ctx.attempt) if kind is not None else None
        if delay is None or ctx.attempt >= ctx.max_attempts:
            await queue.fail(self.db, self.name, ctx.id, error)
            log.warning("jobs: job %d (%s) failed after %d attempt(s): %s", ctx.id, ctx.kind,
                        ctx.attempt, error)
            return
        at = self.clock() + timedelta(seconds=delay)
        await queue.retry_at(self.db, self.name, ctx.id, at, error)
        log.warning("jobs: job %d (%s) attempt %d/%d: %s; next try in %.1f s", ctx.id,
                    ctx.kind, ctx.attempt, ctx.max_attempts, error, delay)

    async def _flush_soon(self) -> None:
        await asyncio.sleep(0)  # let the other jobs finishing in this loop pass join
        await self._flush()

    async def _flush(self) -> None:
        tries = 0
        while self._done:
            batch, self._done = self._done, []
            try:
                await queue.complete(self.db, self.name, batch)
                tries = 0
            except Exception as exc:
                # Keep them: their leases still hold for a while, so writing "done" again
                # shortly beats running them a second time after the lease.
                self._done = batch + self._done
                tries += 1
                if tries >= 5:
                    log.warning("jobs: could not mark %d finished job(s) done (%s: %s); "
                                "they run again after their lease", len(self._done),
                                type(exc).__name__, exc)
                    self._done = []
                    return
                log.warning("jobs: could not mark %d finished job(s) done yet (%s: %s); "
                            "trying again", len(batch), type(exc).__name__, exc)
                await asyncio.sleep(0.2 * tries)

    async def _heartbeat(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.lease / 3)
            ids = [*self._running, *self._done]  # done but not yet written: still ours
            if ids:
                try:
                    await queue.renew(self.db, self.name, ids, self.lease)
                except Exception as exc:
                    log.warning("jobs: could not renew %d lease(s) (%s: %s)", len(ids),
                                type(exc).__name__, exc)

    async def run_due(self) -> int:
        """Run every job due now, one claim after another, until none is due (tests and
        one-shot commands); how many ran."""
        ran = 0
        while batch := await queue.claim(self.db, self.name, self.concurrency, self.lease,
                                         self.clock()):
            await asyncio.gather(*(self._run(job) for job in batch))
            ran += len(batch)
        await self._flush()
        return ran


class _LeaseLost(Exception):
    """Another worker took the job over: roll this run's writes back."""
