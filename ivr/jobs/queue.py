"""The jobs table's statements: defer, claim, finish, renew, and what `ivr jobs` shows.

Every function is one short transaction through :meth:`Database.run` (a storage thread on a
SQLite file), so background work holds SQLite's single writer for a few statements at a
time and never starves a live call. Bodies ending in ``_in`` run inside a caller's own
transaction, so a business write and the job it needs commit together or not at all.

Claiming is ``UPDATE ... WHERE id IN (SELECT ... LIMIT n) RETURNING``: on PostgreSQL
the sub-select takes ``FOR UPDATE SKIP LOCKED``, so concurrent workers split the due jobs
instead of queueing on each other's rows; on SQLite the statement runs in a
``BEGIN IMMEDIATE`` transaction, which makes it atomic across processes. Due means
``queued`` with ``run_at`` passed, or ``running`` with its lease expired (the worker that
held it died). Finishing checks the lease owner, so a worker whose lease was taken over
cannot complete (or fail) the job a second time. Statements that update several rows
(complete, renew, release) take them in id order, so a worker's lease renewal and its batch
completion, on two connections, can't deadlock each other on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ivr.storage.db import Database
from ivr.storage.jobs import Job
from ivr.storage.tx import Tx

ERROR_MAX = 2000  # characters of an error kept on the job


def utcnow() -> datetime:
    return datetime.now(UTC)


def _utc(at: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for timezone=True columns; they were stored as UTC.
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class Claimed:
    """A job a worker holds; its handler gets this (as ivr.jobs.worker.JobContext)."""

    id: int
    kind: str
    payload: dict[str, Any]
    attempt: int  # this run's number, from 1
    max_attempts: int

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


@dataclass(frozen=True)
class JobView:
    id: int
    kind: str
    payload: dict[str, Any]
    state: str
    run_at: datetime
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires: datetime | None
    last_error: str | None
    dedupe_key: str | None
    created_at: datetime
    finished_at: datetime | None


def _view(row: Any) -> JobView:
    return JobView(id=row.id, kind=row.kind, payload=row.payload or {}, state=row.state,
                   run_at=_utc(row.run_at), attempts=row.attempts,  # type: ignore[arg-type]
                   max_attempts=row.max_attempts, lease_owner=row.lease_owner,
                   lease_expires=_utc(row.lease_expires), last_error=row.last_error,
                   dedupe_key=row.dedupe_key, created_at=_utc(row.created_at),  # type: ignore[arg-type]
                   finished_at=_utc(row.finished_at))


# ---- deferring ---------------------------------------------------------------------------

_INSERT = {
    "sqlite": sqlite_insert(Job).on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(Job.id),
    "postgresql": pg_insert(Job).on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(Job.id),
}


def defer_in(tx: Tx, kind: str, payload: dict[str, Any] | None = None, *,
             run_at: datetime | None = None, dedupe_key: str | None = None,
             max_attempts: int = 5) -> int | None:
    """Add a job inside ``tx``; its id, or None when ``dedupe_key`` already has one."""
    row = tx.execute(_INSERT[tx.dialect], {
        "kind": kind, "payload": payload or {}, "run_at": (run_at or utcnow()).astimezone(UTC),
        "dedupe_key": dedupe_key, "max_attempts": max_attempts, "state": "queued",
        "attempts": 0}).first()
    return None if row is None else int(row[0])


async def defer(db: Database, kind: str, payload: dict[str, Any] | None = None, *,
                run_at: datetime | None = None, dedupe_key: str | None = None,
                max_attempts: int = 5) -> int | None:
    return await db.run(lambda tx: defer_in(tx, kind, payload, run_at=run_at,
                                            dedupe_key=dedupe_key, max_attempts=max_attempts))


_MOVE = (update(Job).where(Job.dedupe_key == bindparam("p_key"), Job.state == "queued")
         .values(run_at=bindparam("p_at")))


def move_in(tx: Tx, dedupe_key: str, run_at: datetime) -> bool:
    """Move a still-queued job to another time (a caller asked again, for later)."""
    return tx.execute(_MOVE, {"p_key": dedupe_key, "p_at": run_at.astimezone(UTC)}
                      ).rowcount == 1


# ---- claiming and finishing ----------------------------------------------------------------

# Two picks, each one index range (ix_jobs_state_run_at): an OR of both in one WHERE would
# make PostgreSQL and SQLite scan and sort every due row on each claim (measured: 5.4 ms at
# 10,000 queued, 43 ms at 100,000, against 0.3-0.4 ms for one indexed range).
_QUEUED = (select(Job.id).where(Job.state == "queued", Job.run_at <= bindparam("p_now"))
           .order_by(Job.run_at).limit(bindparam("p_limit")))
_EXPIRED = (select(Job.id).where(Job.state == "running",
                                 Job.lease_expires < bindparam("p_now"))
            .order_by(Job.lease_expires).limit(bindparam("p_limit")))


def _claim_stmt(pick: Any) -> Any:
    return (update(Job).where(Job.id.in_(pick.scalar_subquery()))
            .values(state="running", lease_owner=bindparam("p_owner"),
                    lease_expires=bindparam("p_until"), attempts=Job.attempts + 1)
            .returning(Job.id, Job.kind, Job.payload, Job.attempts, Job.max_attempts))


_CLAIM = {
    dialect: tuple(_claim_stmt(pick if dialect == "sqlite"
                               else pick.with_for_update(skip_locked=True))
                   for pick in (_EXPIRED, _QUEUED))
    for dialect in ("sqlite", "postgresql")
}


async def claim(db: Database, owner: str, limit: int, lease: float,
                now: datetime | None = None) -> list[Claimed]:
    """Take up to ``limit`` due jobs for ``owner`` for ``lease`` seconds."""
    at = (now or utcnow()).astimezone(UTC)
    params = {"p_now": at, "p_limit": limit, "p_owner": owner,
              "p_until": at + timedelta(seconds=lease)}

    def body(tx: Tx) -> list[Claimed]:
        expired, queued = _CLAIM[tx.dialect]
        rows = list(tx.execute(expired, params).all())  # a dead worker's jobs first
        if len(rows) < limit:
            rows += tx.execute(queued, {**params, "p_limit": limit - len(rows)}).all()
        return sorted((Claimed(r.id, r.kind, r.payload or {}, r.attempts, r.max_attempts)
                       for r in rows), key=lambda c: c.id)

    # Not flushed on its own: a claim lost to a power cut leaves the job queued (or its
    # lease to expire), and it is simply claimed again.
    return await db.run(body, durable=False)


_MINE = and_(Job.id == bindparam("p_id"), Job.lease_owner == bindparam("p_owner"),
             Job.state == "running")
_DONE = update(Job).where(_MINE).values(state="done", finished_at=bindparam("p_now"),
                                        lease_owner=None, lease_expires=None)
_FAIL = update(Job).where(_MINE).values(state="failed", finished_at=bindparam("p_now"),
                                        last_error=bindparam("p_error"), lease_owner=None,
                                        lease_expires=None)
_AGAIN = update(Job).where(_MINE).values(state="queued", run_at=bindparam("p_at"),
                                         last_error=bindparam("p_error"), lease_owner=None,
                                         lease_expires=None)
# A run that did not count (the worker stopped, or the job asked to wait for a time).
_LATER = update(Job).where(_MINE).values(state="queued", run_at=bindparam("p_at"),
                                         attempts=Job.attempts - 1, lease_owner=None,
                                         lease_expires=None)
_RENEW = update(Job).where(_MINE).values(lease_expires=bindparam("p_until"))


def complete_in(tx: Tx, owner: str, job_id: int, now: datetime | None = None) -> bool:
    """Mark ``owner``'s job done; False when it is no longer ``owner``'s to finish."""
    return tx.execute(_DONE, {"p_id": job_id, "p_owner": owner,
                              "p_now": (now or utcnow()).astimezone(UTC)}).rowcount == 1


async def complete(db: Database, owner: str, job_ids: Sequence[int]) -> int:
    """Mark several jobs done in one transaction; how many were still ``owner``'s."""
    now = utcnow()
    ids = sorted(job_ids)  # one lock order for every statement that updates several rows
    return await db.run(lambda tx: sum(complete_in(tx, owner, j, now) for j in ids))


async def fail(db: Database, owner: str, job_id: int, error: str) -> bool:
    return await db.run(lambda tx: tx.execute(_FAIL, {
        "p_id": job_id, "p_owner": owner, "p_now": utcnow(),
        "p_error": error[:ERROR_MAX]}).rowcount == 1)


async def retry_at(db: Database, owner: str, job_id: int, at: datetime, error: str) -> bool:
    return await db.run(lambda tx: tx.execute(_AGAIN, {
        "p_id": job_id, "p_owner": owner, "p_at": at.astimezone(UTC),
        "p_error": error[:ERROR_MAX]}).rowcount == 1)


async def release(db: Database, owner: str, job_ids: Sequence[int], at: datetime) -> int:
    """Give jobs back without counting the run (the worker is stopping, or the job said
    "not before ``at``")."""
    params = [{"p_id": j, "p_owner": owner, "p_at": at.astimezone(UTC)}
              for j in sorted(job_ids)]
    return await db.run(lambda tx: sum(tx.execute(_LATER, p).rowcount for p in params))


async def renew(db: Database, owner: str, job_ids: Sequence[int], lease: float) -> int:
    until = utcnow() + timedelta(seconds=lease)
    return await db.run(lambda tx: sum(
        tx.execute(_RENEW, {"p_id": j, "p_owner": owner, "p_until": until}).rowcount
        for j in sorted(job_ids)), durable=False)


_NEXT_QUEUED = select(func.min(Job.run_at)).where(Job.state == "queued")
_NEXT_LEASE = select(func.min(Job.lease_expires)).where(Job.state == "running")


async def next_due(db: Database) -> datetime | None:
    """When the next job becomes due (a queued run_at or a lease running out)."""
    def body(tx: Tx) -> datetime | None:
        times = [_utc(tx.execute(q).scalar_one()) for q in (_NEXT_QUEUED, _NEXT_LEASE)]
        return min((t for t in times if t is not None), default=None)

    return await db.run(body, write=False)


# ---- what people see and do (`ivr jobs`) ---------------------------------------------------

async def list_jobs(db: Database, state: str | None = None, kind: str | None = None,
                    limit: int = 100) -> list[JobView]:
    q = select(Job).order_by(Job.id.desc()).limit(limit)
    if state:
        q = q.where(Job.state == state)
    if kind:
        q = q.where(Job.kind == kind)
    async with db.session() as s:
        return [_view(j) for j in (await s.execute(q)).scalars()]


async def get(db: Database, job_id: int) -> JobView | None:
    async with db.session() as s:
        job = await s.get(Job, job_id)
        return _view(job) if job else None


async def counts(db: Database) -> dict[str, int]:
    async with db.session() as s:
        rows = (await s.execute(select(Job.state, func.count()).group_by(Job.state))).all()
    return {state: n for state, n in rows}


class JobStateError(ValueError):
    """The job is not in a state that allows this; the message says why."""


async def retry_now(db: Database, job_id: int) -> JobView:
    """A failed or cancelled job runs again now, with its full number of attempts."""
    async with db.write_session() as s:
        job = await s.get(Job, job_id)
        if job is None:
            raise JobStateError(f"there is no job {job_id}")
        if job.state not in ("failed", "cancelled"):
            raise JobStateError(f"job {job_id} is {job.state}; only failed or cancelled jobs "
                                "can be retried")
        job.state, job.attempts, job.run_at, job.finished_at = "queued", 0, utcnow(), None
        await s.flush()
        return _view(job)


async def cancel(db: Database, job_id: int) -> JobView:
    """A queued (or failed) job will not run. A running one finishes its current run, and
    is not retried."""
    async with db.write_session() as s:
        job = await s.get(Job, job_id)
        if job is None:
            raise JobStateError(f"there is no job {job_id}")
        if job.state in ("done", "cancelled"):
            raise JobStateError(f"job {job_id} is already {job.state}")
        job.state, job.finished_at = "cancelled", utcnow()
        job.lease_owner = job.lease_expires = None
        await s.flush()
        return _view(job)


_PURGE = (delete(Job)
          .where(Job.state == "done", Job.finished_at < bindparam("p_before"),
                 Job.dedupe_key.like(bindparam("p_prefix"))))


async def purge_done(db: Database, prefix: str, older_than: timedelta) -> int:
    """Delete finished jobs whose dedupe key starts with ``prefix`` (periodic passes): they
    only keep the table growing once their period is over."""
    params = {"p_before": utcnow() - older_than, "p_prefix": prefix + "%"}
    return await db.run(lambda tx: tx.execute(_PURGE, params).rowcount)
