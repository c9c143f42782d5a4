"""Callbacks promised to callers after hours, and the scheduler that places them.

A callback is stored when the caller asks for one (number, account, due time = the next
opening). :func:`run_callback_scheduler` wakes every ``interval`` seconds, claims the due
ones and places each through the ``originate`` function it is given (AMI Originate in
production, anything in tests), so this module knows nothing of AMI.

Claiming flips ``pending`` → ``placing`` in one conditional UPDATE, so two schedulers (or
two processes) never place the same callback twice. A failed attempt goes back to pending
``retry_minutes`` later until ``max_attempts``, then stays ``failed`` for a person to see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, or_, select, update

from ivr.config import Config
from ivr.storage.calls import Callback
from ivr.storage.db import Database

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# originate(callback) places the call; it raises (or returns False) when it was not placed.
Originate = Callable[["CallbackInfo"], Awaitable[bool | None]]
# is_open(at): whether agents are there to take the call being placed.
IsOpen = Callable[[datetime], bool]
# A claim older than this belonged to a worker that died mid-attempt (Originate waits 45 s).
STALE_CLAIM = timedelta(minutes=10)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone=True columns; they were stored as UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class CallbackInfo:
    id: int
    number: str
    account_id: int | None
    language: str
    due_at: datetime
    status: str
    attempts: int

    @classmethod
    def of(cls, row: Callback) -> CallbackInfo:
        return cls(id=row.id, number=row.number, account_id=row.account_id,
                   language=row.language, due_at=_aware(row.due_at), status=row.status,
                   attempts=row.attempts)


class CallbackStore:
    def __init__(self, db: Database, clock: Clock = _utcnow) -> None:
        self.db = db
        self.clock = clock

    async def schedule(self, number: str, due_at: datetime, *, account_id: int | None = None,
                       language: str = "en", call_uniqueid: str | None = None) -> CallbackInfo:
        """Store a callback; one pending callback per number (a second request moves it)."""
        async with self.db.write_session() as s:
            row = (await s.execute(select(Callback).where(
                Callback.number == number, Callback.status == "pending"))).scalars().first()
            if row is None:
                row = Callback(number=number, status="pending", attempts=0)
                s.add(row)
            row.due_at = due_at.astimezone(UTC)
            row.account_id = account_id
            row.language = language
            row.call_uniqueid = call_uniqueid
            await s.flush()
            return CallbackInfo.of(row)

    async def get(self, callback_id: int) -> CallbackInfo | None:
        async with self.db.session() as s:
            row = await s.get(Callback, callback_id)
            return CallbackInfo.of(row) if row else None

    async def pending(self) -> list[CallbackInfo]:
        async with self.db.session() as s:
            rows = (await s.execute(select(Callback).where(Callback.status == "pending")
                                    .order_by(Callback.due_at))).scalars().all()
            return [CallbackInfo.of(r) for r in rows]

    async def claim_due(self, now: datetime, limit: int = 10,
                        stale_after: timedelta = STALE_CLAIM) -> list[CallbackInfo]:
        """Mark up to ``limit`` due callbacks as being placed and return them.

        A callback still ``placing`` long after its claim (``stale_after``, far beyond the
        Originate timeout) belonged to a worker that died mid-attempt: it is claimed again
        rather than lost. The claim time is ``now``, so tests' clocks stay consistent."""
        now = now.astimezone(UTC)
        cutoff = now - stale_after
        claimable = or_(and_(Callback.status == "pending", Callback.due_at <= now),
                        and_(Callback.status == "placing", Callback.updated_at <= cutoff))
        claimed: list[CallbackInfo] = []
        async with self.db.write_session() as s:
            ids = (await s.execute(
                select(Callback.id).where(claimable)
                .order_by(Callback.due_at).limit(limit))).scalars().all()
            for cid in ids:
                res = await s.execute(
                    update(Callback).where(Callback.id == cid, claimable)
                    .values(status="placing", attempts=Callback.attempts + 1,
                            updated_at=now))
                if res.rowcount == 1:  # type: ignore[attr-defined]
                    row = await s.get(Callback, cid)
                    assert row is not None
                    await s.refresh(row)
                    claimed.append(CallbackInfo.of(row))
        return claimed

    async def finish(self, callback_id: int, *, placed: bool, error: str | None = None,
                     retry_at: datetime | None = None) -> None:
        async with self.db.write_session() as s:
            row = await s.get(Callback, callback_id)
            if row is None:
                return
            if placed:
                row.status = "placed"
            elif retry_at is not None:
                row.status = "pending"
                row.due_at = retry_at.astimezone(UTC)
            else:
                row.status = "failed"
            row.last_error = (error or "")[:255] or None


async def place_due(store: CallbackStore, originate: Originate, *, now: datetime,
                    is_open: IsOpen | None = None, max_attempts: int = 3,
                    retry_minutes: int = 15) -> int:
    """Place every callback due at ``now`` (only while open); how many were placed."""
    if is_open is not None and not is_open(now):
        return 0
    placed = 0
    for cb in await store.claim_due(now):
        try:
            ok = await originate(cb) is not False
            error = None if ok else "not answered"
        except Exception as exc:  # one failed call must not stop the others
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            placed += 1
            await store.finish(cb.id, placed=True)
            log.info("callback %d placed", cb.id)
        else:
            retry = (now + timedelta(minutes=retry_minutes)
                     if cb.attempts < max_attempts else None)
            await store.finish(cb.id, placed=False, error=error, retry_at=retry)
            log.warning("callback %d not placed (attempt %d): %s", cb.id, cb.attempts, error)
    return placed


async def run_callback_scheduler(store: CallbackStore, originate: Originate, *,
                                 is_open: IsOpen | None = None, interval: float = 30.0,
                                 stop: asyncio.Event | None = None, max_attempts: int = 3,
                                 retry_minutes: int = 15) -> None:
    """Place due callbacks until ``stop`` is set (or the task is cancelled)."""
    stop = stop or asyncio.Event()
    while not stop.is_set():
        try:
            await place_due(store, originate, now=store.clock(), is_open=is_open,
                            max_attempts=max_attempts, retry_minutes=retry_minutes)
        except Exception:
            # A database hiccup must not kill the scheduler; the next round retries.
            log.exception("callback scheduler round failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass


# Where a callback rings: the admin's outbound route for customer numbers, and what the
# answered call runs (the billing queue, with the account for the agent's screen).
CALLBACK_CHANNEL = "Local/{number}@starpay-callback"
CALLBACK_CONTEXT = "starpay-queue"


class Originator(Protocol):
    """The part of ivr.ami.client.AMIClient used here."""

    async def originate(self, channel: str, *, context: str | None = ...,
                        exten: str | None = ..., variables: dict[str, str] | None = ...,
                        caller_id: str | None = ..., timeout_ms: int = ...) -> Any: ...


def ami_originate(client: Originator, *, channel: str = CALLBACK_CHANNEL,
                  context: str = CALLBACK_CONTEXT, timeout_ms: int = 45000) -> Originate:
    """An ``originate`` for the scheduler: AMI Originate, placed when the customer answers."""
    async def originate(cb: CallbackInfo) -> bool:
        result = await client.originate(
            channel.format(number=cb.number), context=context, exten="s",
            variables={"STARPAY_ACCOUNT": str(cb.account_id or ""),
                       "CHANNEL(language)": cb.language, "STARPAY_CALLBACK": str(cb.id)},
            caller_id="StarPay", timeout_ms=timeout_ms)
        return bool(getattr(result, "success", False))

    return originate


@contextlib.asynccontextmanager
async def callback_scheduler(cfg: Config) -> AsyncIterator[None]:
    """Run the scheduler beside `ivr serve` (an entry for its SERVICES list)."""
    from ivr.ami.client import AMIClient
    from ivr.app_hours import business_hours

    db = Database(cfg.database.url)
    client = AMIClient.from_config(cfg.ami)
    place = ami_originate(client)

    async def originate(cb: CallbackInfo) -> bool | None:
        # Connect on first need: Asterisk may start after us, and a failure here is just
        # this attempt's (the scheduler retries it later).
        if not client.connected:
            await client.connect(timeout=5.0)
        return await place(cb)

    stop = asyncio.Event()
    task = asyncio.create_task(run_callback_scheduler(
        CallbackStore(db), originate,
        is_open=business_hours(cfg.hours).is_open, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await client.close()
        await db.dispose()
