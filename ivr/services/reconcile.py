"""Settle payments whose outcome we do not know: ask the gateway by idempotency key.

A payment is looked at when it is ``unknown`` (the gateway timed out or failed mid-way) or
``pending`` for longer than ``min_age`` (the process died between the gateway call and the
commit; ``min_age`` must exceed the longest gateway call so we never race a live one).
If the gateway never saw the key, the payment is marked ``failed`` only after
``give_up_after``: a processor's search can lag behind its writes (Stripe: up to an hour).

Several workers may reconcile at once. Settling is safe anyway (``apply_result`` and
``mark_failed`` change only a payment still open, under row locks), but each payment is also
claimed before it is looked at, so one worker does the work and reports it: on PostgreSQL a
session advisory lock per payment (``pg_try_advisory_lock``; a worker that dies drops its
connection and so its claims); on SQLite, one file on one machine, the state re-read after
the claim is enough.

Each pass also settles open refunds (:func:`ivr.services.refunds.reconcile_refunds`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, text

from ivr.gateways.base import Gateway, GatewayError, OutcomeUnknown
from ivr.jobs.worker import JobContext
from ivr.services.accounts import as_utc
from ivr.services.payments import OPEN_STATES, apply_result, mark_failed
from ivr.services.refunds import RefundReconcileReport, reconcile_refunds
from ivr.storage.db import Database
from ivr.storage.models import Payment

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    checked: int = 0
    approved: int = 0
    declined: int = 0
    failed: int = 0
    still_open: int = 0
    refunds: RefundReconcileReport = field(default_factory=RefundReconcileReport)


def default_give_up_after(gateway: Gateway) -> timedelta:
    # The sandbox ledger is read back immediately; Stripe's search is eventually consistent.
    return timedelta(minutes=10) if gateway.name == "sandbox" else timedelta(hours=2)


async def reconcile_once(db: Database, gateway: Gateway, *,
                         min_age: timedelta = timedelta(minutes=5),
                         give_up_after: timedelta | None = None,
                         now: datetime | None = None, limit: int = 500,
                         actor: str = "reconciler") -> ReconcileReport:
    now = now or datetime.now(UTC)
    give_up = give_up_after if give_up_after is not None else default_give_up_after(gateway)
    report = ReconcileReport()
    async with db.session() as s:
        rows = (await s.execute(
            select(Payment.id, Payment.idempotency_key, Payment.processor_reference,
                   Payment.state, Payment.created_at)
            .where(Payment.state.in_(OPEN_STATES), Payment.gateway == gateway.name)
            .order_by(Payment.id).limit(limit))).all()
    for pid, key, ref, state, created in rows:
        age = now - (as_utc(created) or now)
        if state == "pending" and age < min_age:
            continue
        async with _claim(db, pid) as claimed:
            if not claimed:
                continue  # another worker has it right now
            await _settle(db, gateway, report, pid, key, ref, age, give_up, actor)
    # Open refunds too (ivr.services.refunds): the same pass, the same min_age.
    report.refunds = await reconcile_refunds(db, gateway, min_age=min_age, now=now,
                                             limit=limit, actor=actor)
    if report.checked:
        log.info("reconcile: %s", report)
    return report


# First key of our advisory locks, so they cannot collide with anyone else's on the database.
_CLAIM_SPACE = 0x53504159  # "SPAY"


@contextlib.asynccontextmanager
async def _claim(db: Database, payment_id: int) -> AsyncIterator[bool]:
    """True while this worker alone may reconcile the payment and it is still open."""
    if db.is_sqlite:
        yield await _still_open(db, payment_id)
        return
    async with db.engine.connect() as conn:
        args = {"space": _CLAIM_SPACE, "id": payment_id}
        got = (await conn.execute(text("SELECT pg_try_advisory_lock(:space, :id)"), args)
               ).scalar()
        await conn.commit()  # the lock is the session's; don't sit in a transaction
        if not got:
            yield False
            return
        try:
            # Re-read: the worker that held the claim before us may have settled it.
            yield await _still_open(db, payment_id)
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:space, :id)"), args)
            await conn.commit()


async def _still_open(db: Database, payment_id: int) -> bool:
    async with db.session() as s:
        state = (await s.execute(select(Payment.state).where(Payment.id == payment_id))
                 ).scalar_one_or_none()
    return state in OPEN_STATES


async def _settle(db: Database, gateway: Gateway, report: ReconcileReport, pid: int,
                  key: str, ref: str | None, age: timedelta, give_up: timedelta,
                  actor: str) -> None:
    report.checked += 1
    try:
        result = await gateway.lookup(key, ref)
    except (OutcomeUnknown, GatewayError) as exc:
        log.warning("reconcile payment %s: look-up failed (%s); will retry", pid, exc)
        report.still_open += 1
        return
    if result is None:
        if age >= give_up:
            await mark_failed(db, pid, "not_received",
                              "the processor never received this payment", actor)
            report.failed += 1
        else:
            report.still_open += 1
        return
    p = await apply_result(db, pid, result, actor)
    if p.state == "approved":
        report.approved += 1
    else:
        report.declined += 1


RECONCILE_JOB = "payments.reconcile"


def reconcile_job(db: Database, gateway: Gateway, *, min_age: timedelta
                  ) -> Callable[[JobContext], Awaitable[None]]:
    """The periodic ``payments.reconcile`` job's handler: one :func:`reconcile_once` pass.
    The worker defers one per ``payments.reconcile_interval`` across all workers."""
    async def handle(job: JobContext) -> None:
        await reconcile_once(db, gateway, min_age=min_age)

    return handle
