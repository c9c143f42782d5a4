"""The call record: one row per call, written when the call ends.

Nothing is written when a call starts: most calls never touch money, and a write per call
start was a whole transaction (an fsync behind SQLite's single writer) for a row that the
end of the call rewrites anyway. What a crash may lose is therefore bounded by design:

* a call that reaches a charge gets its record in the same transaction as the pending
  payment (:meth:`CallLog.stage`, via PaymentService.charge's ``on_pending``), so a process
  that dies mid-payment still leaves the record (no end time, the path so far, the
  payment id) beside the payment the reconciler will settle;
* a call that dies before any charge leaves no record (nothing happened to money; the
  Asterisk CDR still has the call).

Closing is done from the flow's ``finally`` and shielded, so a hang-up cannot lose it.
Closes that arrive while a write is in progress are committed together in the next
transaction (group commit): each caller still waits until its own record is committed,
but a burst of calls ending together costs one commit, not one each. Closing commits are
not flushed to disk one by one (``durable=False``, see ivr.storage.db): they survive a
crash of the process; a power cut can lose the ends of the last calls' records, while a
paid call's record exists regardless (committed durably with its pending payment).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, update

from ivr.storage.calls import CallRecord
from ivr.storage.db import Database
from ivr.storage.tx import Tx

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Rows per closing transaction: bounds one transaction's time holding the write lock.
MAX_BATCH = 200


@dataclass
class CallFacts:
    """What the flow learns during a call; written to the record at the end."""

    uniqueid: str
    ani: str | None
    attestation: str | None
    started_at: datetime
    language: str = "en"
    verified_how: str = "none"
    account_id: int | None = None
    path: list[str] = field(default_factory=list)
    outcome: str | None = None
    payment_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    record_id: int | None = None


def _values(facts: CallFacts) -> dict[str, Any]:
    return {"uniqueid": facts.uniqueid, "ani": facts.ani, "attestation": facts.attestation,
            "language": facts.language, "verified_how": facts.verified_how,
            "account_id": facts.account_id, "path": list(facts.path),
            "outcome": facts.outcome, "payment_id": facts.payment_id,
            "details": dict(facts.details), "started_at": facts.started_at}


class CallLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._queue: list[tuple[CallFacts, dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def stage(self, tx: Tx, facts: CallFacts, payment_id: int) -> None:
        """Write the record so far inside the caller's transaction (the pending payment's),
        so it commits, or not, with the payment. Synchronous: it runs in that
        transaction's body (PaymentService.charge's ``on_pending``)."""
        values = _values(facts) | {"payment_id": payment_id}
        if facts.record_id is not None and _update(tx, facts.record_id, values):
            return
        facts.record_id = tx.execute(_INSERT, values).scalar_one()

    async def close(self, facts: CallFacts) -> None:
        """Write the finished record; returns once it is committed."""
        ended = self.clock()
        start = facts.started_at if facts.started_at.tzinfo else facts.started_at.replace(
            tzinfo=UTC)
        values = _values(facts) | {
            "ended_at": ended, "duration_s": max(0, int((ended - start).total_seconds()))}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((facts, values, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued())
        await done

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                await self._write(batch)
            except asyncio.CancelledError as exc:  # loop shutting down: nobody may hang
                _finish(batch + self._queue, exc)
                self._queue = []
                raise
            except Exception as exc:
                if len(batch) == 1:
                    _finish(batch, exc)
                    continue
                # One bad row must not lose the others: write them one by one.
                for item in batch:
                    try:
                        await self._write([item])
                    except Exception as one:
                        _finish([item], one)

    async def _write(self, batch: list[tuple[CallFacts, dict[str, Any],
                                             asyncio.Future[None]]]) -> None:
        def work(tx: Tx) -> list[tuple[CallFacts, int]]:
            return [(f, tx.execute(_INSERT, v).scalar_one()) for f, v, _ in batch
                    if f.record_id is None or not _update(tx, f.record_id, v)]

        # Ids are set only after the commit: a rolled-back batch must not leave a record_id
        # pointing at no row.
        # Not durable: a power cut may lose the last records (never a crash of this
        # process); a payment's record was committed durably with its pending payment.
        for facts, rid in await self.db.run(work, durable=False):
            facts.record_id = rid
        _finish(batch, None)

    async def get(self, record_id: int) -> CallRecord | None:
        async with self.db.session() as s:
            return await s.get(CallRecord, record_id)


def _update(tx: Tx, record_id: int, values: dict[str, Any]) -> bool:
    """Rewrite an existing record; False if it is not there (then it is inserted)."""
    res = tx.execute(_UPDATE, values | {"rid": record_id})
    return bool(res.rowcount == 1)


_INSERT = insert(CallRecord).returning(CallRecord.id)
_UPDATE = update(CallRecord).where(CallRecord.id == bindparam("rid"))


def _finish(batch: list[tuple[CallFacts, dict[str, Any], asyncio.Future[None]]],
            exc: BaseException | None) -> None:
    for _, _, done in batch:
        if done.done():
            continue
        if exc is None:
            done.set_result(None)
        else:
            done.set_exception(exc)
