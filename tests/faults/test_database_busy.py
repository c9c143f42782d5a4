"""The database is too busy around a charge: every pooled connection is taken just as the
processor approves.

Recording the outcome has a path of its own (SQLite: a write turn ahead of other writers on
its own connection; PostgreSQL: a reserved pool), so a full main pool does not stop it. If
even that path stays blocked past its bounded wait, the payment stays ``pending`` for the
reconciler and the caller hears "your payment is being checked" — never the fallback
apology — and reconciling settles it with exactly one charge at the processor.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from ivr.gateways.base import ChargeResult
from ivr.gateways.sandbox import SandboxGateway
from ivr.services.payments import Approved, PaymentService, Pending
from ivr.services.reconcile import reconcile_once
from ivr.storage.db import Database, DatabaseBusy, WriterQueue
from ivr.storage.models import Account, Payment, PaymentMethod
from tests.faults.serve_proc import audit_count
from tests.unit.pay_world import ALEX, World, make_world, played

# Small pools and short waits, so "exhausted" is quick to reach and to time out on.
BUSY = {"pool_size": 2, "max_overflow": 0, "pool_timeout": 0.3, "settle_timeout": 0.5}
STEPS = (("main_menu", "1"), ("pay_confirm_press", "1"))


class TakeConnectionsAfterCharge:
    """The sandbox processor, but the moment it has charged, ``take`` ties up the database
    (run in its own task, which keeps everything until ``release`` is set)."""

    def __init__(self, inner: SandboxGateway, db: Database, *, settle_too: bool) -> None:
        self.inner, self.db, self.settle_too = inner, db, settle_too
        self.name = inner.name
        self.taken = asyncio.Event()
        self.release = asyncio.Event()
        self.holder: asyncio.Task[None] | None = None

    async def charge(self, *args: Any, **kw: Any) -> ChargeResult:
        result = await self.inner.charge(*args, **kw)
        self.holder = asyncio.create_task(self._hold())
        await self.taken.wait()
        return result

    async def _hold(self) -> None:
        async with hold(self.db, settle_too=self.settle_too):
            self.taken.set()
            await self.release.wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@asynccontextmanager
async def hold(db: Database, *, settle_too: bool) -> AsyncIterator[None]:
    """Every connection of the main pool checked out; with ``settle_too`` also every
    settling slot (on SQLite: the write turn, so SQLite's write lock too)."""
    async with AsyncExitStack() as stack:
        for _ in range(BUSY["pool_size"]):  # type: ignore[arg-type]
            await stack.enter_async_context(db.engine.connect())
        if settle_too:
            for _ in range(db.settle_capacity):
                s = await stack.enter_async_context(db.write_session(settle=True))
                await s.execute(select(1))  # a session checks out its connection lazily
        yield


async def _account(db: Database) -> int:
    async with db.write_session() as s:
        a = Account(account_number="900001", name="Busy", zip_code="10001",
                    balance_minor=8417, currency="USD")
        s.add(a)
        await s.flush()
        s.add(PaymentMethod(account_id=a.id, token="tok_sandbox_approve", brand="visa",
                            last4="4242", exp_month=12, exp_year=date.today().year + 2))
        return a.id


async def _state(db: Database, account_id: int) -> tuple[list[str], int]:
    async with db.session() as s:
        states = list((await s.execute(select(Payment.state).where(
            Payment.account_id == account_id))).scalars())
        bal = (await s.execute(select(Account.balance_minor).where(
            Account.id == account_id))).scalar_one()
    return states, bal


@pytest.fixture
async def busy_db(db: Database) -> AsyncIterator[Database]:
    """The test database (SQLite and PostgreSQL), opened again with small pools."""
    busy = Database(db.url, **BUSY)  # type: ignore[arg-type]
    try:
        yield busy
    finally:
        await busy.dispose()


async def test_full_pool_does_not_stop_recording_an_approved_charge(
        busy_db: Database, tmp_path: Path) -> None:
    aid = await _account(busy_db)
    sandbox = SandboxGateway(tmp_path / "ledger.db")
    gateway = TakeConnectionsAfterCharge(sandbox, busy_db, settle_too=False)
    try:
        out = await PaymentService(busy_db, gateway).charge(  # type: ignore[arg-type]
            aid, 8417, "ivr", "busy-1", None)
        # The main pool really was exhausted while the outcome was recorded.
        with pytest.raises(DatabaseBusy):
            async with busy_db.session() as s:
                await s.execute(select(1))
        gateway.release.set()
        assert gateway.holder is not None
        await gateway.holder
        assert isinstance(out, Approved)
        assert await _state(busy_db, aid) == (["approved"], 0)
        assert sandbox.approved_charges() == {"busy-1": 8417}
    finally:
        gateway.release.set()
        await sandbox.close()


async def test_outcome_that_cannot_be_recorded_stays_pending_and_settles_once(
        busy_db: Database, tmp_path: Path) -> None:
    aid = await _account(busy_db)
    sandbox = SandboxGateway(tmp_path / "ledger.db")
    gateway = TakeConnectionsAfterCharge(sandbox, busy_db, settle_too=True)
    try:
        out = await PaymentService(busy_db, gateway).charge(  # type: ignore[arg-type]
            aid, 8417, "ivr", "busy-2", None)
        # Not a failure: "being checked". The processor did charge; we still say pending.
        assert isinstance(out, Pending)
        assert sandbox.approved_charges() == {"busy-2": 8417}
        gateway.release.set()
        assert gateway.holder is not None
        await gateway.holder
        assert await _state(busy_db, aid) == (["pending"], 8417)
        report = await reconcile_once(busy_db, sandbox, min_age=timedelta(0))
        assert report.approved == 1
        assert await _state(busy_db, aid) == (["approved"], 0)
        assert (await reconcile_once(busy_db, sandbox, min_age=timedelta(0))).checked == 0
        assert sandbox.approved_charges() == {"busy-2": 8417}
    finally:
        gateway.release.set()
        await sandbox.close()


async def test_caller_hears_being_checked_when_the_outcome_cannot_be_recorded(
        tmp_path: Path) -> None:
    # Settling gives up after 0.5 s; other writes (the call record) may wait 5 s, and the
    # connections come back 1 s after the charge, so the call record is still written.
    kw = BUSY | {"pool_timeout": 5.0}
    async with make_world(tmp_path, db_kw=kw) as world:
        gateway = TakeConnectionsAfterCharge(world.gateway, world.db, settle_too=True)
        world.ctx.payments.gateway = gateway  # type: ignore[assignment]

        async def release_later() -> None:
            await gateway.taken.wait()
            await asyncio.sleep(1.0)
            gateway.release.set()

        releaser = asyncio.create_task(release_later())
        fake = await world.call(*STEPS, callerid=ALEX, attest="A")
        await releaser
        assert gateway.holder is not None
        await gateway.holder
        ids = played(fake)
        assert "processing" in ids and "approved" not in ids and ids[-1] == "goodbye"
        assert fake.agi_status != "FAILURE"  # no fallback apology from the dialplan
        (payment,) = await world.payments()
        assert payment.state == "pending"
        assert world.gateway.approved_charges() == {payment.idempotency_key: 8417}
        assert await world.balance("100001") == 8417
        rec = await world.last_record()
        assert rec.outcome == "pending" and rec.payment_id == payment.id
        assert rec.ended_at is not None

        report = await reconcile_once(world.db, world.gateway, min_age=timedelta(0))
        assert report.approved == 1
        (payment,) = await world.payments()
        assert payment.state == "approved"
        assert await world.balance("100001") == 0
        assert await _audit(world, "payment.approved") == {f"payment:{payment.id}": 1}
        assert (await reconcile_once(world.db, world.gateway,
                                     min_age=timedelta(0))).checked == 0
        assert len(world.gateway.approved_charges()) == 1


async def _audit(world: World, action: str) -> dict[str, int]:
    return await audit_count(world.db.url, action)


async def test_writer_queue_serves_settlements_first() -> None:
    queue = WriterQueue()
    order: list[str] = []
    await queue.acquire()

    async def writer(name: str, priority: int) -> None:
        await queue.acquire(priority)
        order.append(name)
        queue.release()

    tasks = [asyncio.create_task(writer("call-1", 1)), asyncio.create_task(writer("call-2", 1))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(writer("settle", 0)))
    # One waiter gives up: the queue must skip it, not stall.
    gone = asyncio.create_task(writer("gone", 1))
    await asyncio.sleep(0)
    gone.cancel()
    queue.release()
    await asyncio.gather(*tasks)
    assert order == ["settle", "call-1", "call-2"]
    assert not queue.locked
