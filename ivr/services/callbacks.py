"""Callbacks promised to callers, placed by a durable job.

A callback is stored when the caller asks for one (number, account, due time = the next
opening), and in the same transaction a ``callbacks.place`` job is deferred for that time
(dedupe key ``callback:<id>``), so a stored callback always has its job and a second
request for the same number moves both. The job's handler (:func:`place_callback_job`)
places the call through the ``originate`` function it is given (AMI Originate in
production, anything in tests), so this module knows nothing of AMI.

While the center is closed the job waits for the next opening (that run does not count as
an attempt). A failed attempt is retried by the job's :class:`RetryStrategy` (15 minutes
later, three tries in all by default); after the last, the callback stays ``failed`` for a
person to see. Two workers never place one callback twice: the job is leased to one worker,
and the callback moves ``pending`` → ``placing`` in one conditional update.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update

from ivr.jobs.queue import defer_in, move_in
from ivr.jobs.retry import RetryStrategy, fixed
from ivr.jobs.worker import JobContext, Reschedule
from ivr.storage.calls import Callback
from ivr.storage.db import Database
from ivr.storage.tx import Tx

log = logging.getLogger(__name__)

CALLBACK_JOB = "callbacks.place"
Clock = Callable[[], datetime]
# originate(callback) places the call; it raises (or returns False) when it was not placed.
Originate = Callable[["CallbackInfo"], Awaitable[bool | None]]


class OpeningHours(Protocol):
    """The part of ivr.services.hours.BusinessHours used here."""

    def is_open(self, at: datetime) -> bool: ...
    def next_opening(self, at: datetime) -> datetime: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone=True columns; they were stored as UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def job_key(callback_id: int) -> str:
    return f"callback:{callback_id}"


@dataclass(frozen=True)
class CallbackInfo:
    id: int
    number: str
    account_id: int | None
    language: str
    due_at: datetime
    status: str
    attempts: int
    last_error: str | None = None

    @classmethod
    def of(cls, row: Any) -> CallbackInfo:
        return cls(id=row.id, number=row.number, account_id=row.account_id,
                   language=row.language, due_at=_aware(row.due_at), status=row.status,
                   attempts=row.attempts, last_error=row.last_error)


_PENDING_FOR = (select(Callback.id).where(Callback.number == bindparam("p_number"),
                                          Callback.status == "pending"))
_ONE = select(Callback).where(Callback.id == bindparam("p_id"))
_CLAIM = (update(Callback)
          .where(Callback.id == bindparam("p_id"),
                 Callback.status.in_(("pending", "placing")))
          .values(status="placing", attempts=Callback.attempts + 1,
                  updated_at=bindparam("p_now")))
_INSERT = insert(Callback).returning(Callback.id)
_MOVE = update(Callback).where(Callback.id == bindparam("p_id"))  # SET: the columns given
_FINISH = (update(Callback).where(Callback.id == bindparam("p_id"))
           .values(status=bindparam("p_status"), last_error=bindparam("p_error"),
                   updated_at=bindparam("p_now")))


class CallbackStore:
    def __init__(self, db: Database, clock: Clock = _utcnow,
                 retry: RetryStrategy | None = None) -> None:
        self.db = db
        self.clock = clock
        self.retry = retry or fixed(15 * 60.0, max_attempts=3)

    async def schedule(self, number: str, due_at: datetime, *, account_id: int | None = None,
                       language: str = "en", call_uniqueid: str | None = None) -> CallbackInfo:
        """Store a callback and its job; one pending callback per number (a second request
        moves it, and its job)."""
        due = due_at.astimezone(UTC)
        now = self.clock().astimezone(UTC)
        values = {"due_at": due, "account_id": account_id, "language": language,
                  "call_uniqueid": call_uniqueid, "updated_at": now}

        def body(tx: Tx) -> CallbackInfo:
            existing = tx.execute(_PENDING_FOR, {"p_number": number}).scalar_one_or_none()
            if existing is None:
                cid = tx.execute(_INSERT, {
                    **values, "number": number, "status": "pending", "attempts": 0,
                    "created_at": now}).scalar_one()
                defer_in(tx, CALLBACK_JOB, {"callback_id": cid}, run_at=due,
                         dedupe_key=job_key(cid), max_attempts=self.retry.max_attempts)
            else:
                cid = existing
                tx.execute(_MOVE, {**values, "p_id": cid})
                move_in(tx, job_key(cid), due)
            return CallbackInfo.of(tx.execute(_ONE, {"p_id": cid}).one())

        return await self.db.run(body)

    async def get(self, callback_id: int) -> CallbackInfo | None:
        row = await self.db.run(lambda tx: tx.execute(_ONE, {"p_id": callback_id}).first(),
                                write=False)
        return CallbackInfo.of(row) if row else None

    async def pending(self) -> list[CallbackInfo]:
        async with self.db.session() as s:
            rows = (await s.execute(select(Callback).where(Callback.status == "pending")
                                    .order_by(Callback.due_at))).scalars().all()
            return [CallbackInfo.of(r) for r in rows]

    async def list(self, *, status: str | None = None, limit: int = 50
                   ) -> list[CallbackInfo]:
        """Callbacks by due time, the soonest first (any status unless one is given)."""
        q = select(Callback)
        if status:
            q = q.where(Callback.status == status)
        q = q.order_by(Callback.due_at, Callback.id).limit(limit)
        async with self.db.session() as s:
            return [CallbackInfo.of(r) for r in (await s.execute(q)).scalars().all()]

    async def claim(self, callback_id: int) -> CallbackInfo | None:
        """Mark the callback as being placed (one more attempt); None when it is no longer
        waiting (placed, failed or cancelled meanwhile)."""
        now = self.clock().astimezone(UTC)

        def body(tx: Tx) -> CallbackInfo | None:
            if tx.execute(_CLAIM, {"p_id": callback_id, "p_now": now}).rowcount != 1:
                return None
            return CallbackInfo.of(tx.execute(_ONE, {"p_id": callback_id}).one())

        return await self.db.run(body)

    async def finish(self, callback_id: int, status: str, error: str | None = None) -> None:
        """``placed``, ``failed``, or ``pending`` again (a retry is due)."""
        now = self.clock().astimezone(UTC)
        await self.db.run(lambda tx: tx.execute(_FINISH, {
            "p_id": callback_id, "p_status": status, "p_error": (error or "")[:255] or None,
            "p_now": now}))


def place_callback_job(store: CallbackStore, originate: Originate, *,
                       hours: OpeningHours | None = None
                       ) -> Callable[[JobContext], Awaitable[None]]:
    """The ``callbacks.place`` job's handler: place one callback, or say why not.

    Raising hands the attempt back to the job's retry strategy; on the job's last attempt
    the callback is marked failed first, so what people see matches the job."""
    async def handle(job: JobContext) -> None:
        now = store.clock()
        if hours is not None and not hours.is_open(now):
            raise Reschedule(hours.next_opening(now), "the center is closed")
        cb = await store.claim(int(job.payload["callback_id"]))
        if cb is None:
            return  # cancelled or already handled: nothing to place
        try:
            ok = await originate(cb) is not False
            error = None if ok else "not answered"
        except Exception as exc:  # this attempt failed; the strategy decides what next
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            await store.finish(cb.id, "placed")
            log.info("callback %d placed", cb.id)
            return
        await store.finish(cb.id, "failed" if job.last_attempt else "pending", error)
        raise CallbackNotPlaced(f"callback {cb.id} not placed: {error}")

    return handle


class CallbackNotPlaced(Exception):
    """This attempt did not reach the customer; the job's retry strategy takes over."""
