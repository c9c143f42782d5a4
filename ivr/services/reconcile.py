"""Settle payments whose outcome we do not know: ask the gateway by idempotency key.

A payment is looked at when it is ``unknown`` (the gateway timed out or failed mid-way) or
``pending`` for longer than ``min_age`` (the process died between the gateway call and the
commit; ``min_age`` must exceed the longest gateway call so we never race a live one).
If the gateway never saw the key, the payment is marked ``failed`` only after
``give_up_after``: a processor's search can lag behind its writes (Stripe: up to an hour).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from ivr.config import Config
from ivr.gateways.base import Gateway, GatewayError, OutcomeUnknown
from ivr.services.accounts import as_utc
from ivr.services.payments import OPEN_STATES, apply_result, mark_failed
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
        report.checked += 1
        try:
            result = await gateway.lookup(key, ref)
        except (OutcomeUnknown, GatewayError) as exc:
            log.warning("reconcile payment %s: look-up failed (%s); will retry", pid, exc)
            report.still_open += 1
            continue
        if result is None:
            if age >= give_up:
                await mark_failed(db, pid, "not_received",
                                  "the processor never received this payment", actor)
                report.failed += 1
            else:
                report.still_open += 1
            continue
        p = await apply_result(db, pid, result, actor)
        if p.state == "approved":
            report.approved += 1
        else:
            report.declined += 1
    if report.checked:
        log.info("reconcile: %s", report)
    return report


async def run_reconciler(db: Database, gateway: Gateway, interval: float,
                         stop_event: asyncio.Event, **kw: object) -> None:
    """Run :func:`reconcile_once` every ``interval`` seconds until ``stop_event`` is set."""
    while not stop_event.is_set():
        try:
            await reconcile_once(db, gateway, **kw)  # type: ignore[arg-type]
        except Exception:
            log.exception("reconcile pass failed; retrying in %ss", interval)
        try:
            await asyncio.wait_for(stop_event.wait(), timeout=interval)
        except TimeoutError:
            pass


@contextlib.asynccontextmanager
async def reconciler_service(cfg: Config) -> AsyncIterator[None]:
    """Settle `unknown` payments at start and every payments.reconcile_interval seconds
    beside `ivr serve` (an entry for its SERVICES list)."""
    from ivr.gateways import from_config as gateway_from_config

    db = Database(cfg.database.url)
    gateway = gateway_from_config(cfg.payments)
    stop = asyncio.Event()
    task = asyncio.create_task(run_reconciler(db, gateway, cfg.payments.reconcile_interval,
                                              stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await gateway.close()
        await db.dispose()
