"""The processor times out: before it charged, and after it charged.

Through the whole *PAY call (FakeAsterisk → real AGIServer → pay flow → sandbox processor):
the caller hears "your payment is being checked" (never "failed"), the payment is left
``unknown``, the reconciler settles it from the processor's ledger, and a retry with the same
idempotency key never charges again.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from ivr.services.payments import Approved, Declined
from ivr.services.reconcile import reconcile_once
from tests.faults.serve_proc import audit_count
from tests.unit.pay_world import World, make_world, played

AFTER = ("+15550003001", "300001", "tok_sandbox_timeout_after_charge")
BEFORE = ("+15550003002", "300002", "tok_sandbox_timeout_before_charge")
STEPS = (("main_menu", "1"), ("pay_confirm_press", "1"))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        for phone, number, token in (AFTER, BEFORE):
            await w.add_account(number, phone, token, balance=5000)
        yield w


async def test_timeouts_are_checked_then_settled_once(world: World) -> None:
    started = time.monotonic()
    heard = {}
    for phone, number, _ in (AFTER, BEFORE):
        fake = await world.call(*STEPS, callerid=phone, uniqueid=f"1700000300.{number}")
        heard[number] = played(fake)
        assert fake.agi_status != "FAILURE"  # the service ended the call itself
    call_s = time.monotonic() - started
    for ids in heard.values():
        assert ids[-2:] == ["processing", "goodbye"]  # "being checked", then goodbye
        assert "declined" not in ids and "service_trouble" not in ids
    after, before = await world.payments()
    assert (after.state, before.state) == ("unknown", "unknown")
    # The processor charged the first card once and never saw the second.
    assert world.gateway.approved_charges() == {after.idempotency_key: 5000}
    assert await world.balance("300001") == 5000  # not moved until we know

    # Asterisk re-runs the AGI on the same channel before anything is settled: replay only.
    again = await world.call(*STEPS, callerid=AFTER[0], uniqueid="1700000300.300001")
    assert played(again)[-2:] == ["processing", "goodbye"]
    assert len(await world.payments()) == 2

    report = await reconcile_once(world.db, world.gateway, min_age=timedelta(0),
                                  give_up_after=timedelta(0))
    assert (report.checked, report.approved, report.failed) == (2, 1, 1)
    after, before = await world.payments()
    assert (after.state, before.state) == ("approved", "failed")
    assert await world.balance("300001") == 0
    assert await world.balance("300002") == 5000
    # A second pass (another worker, a restart) finds nothing left to do.
    assert (await reconcile_once(world.db, world.gateway, min_age=timedelta(0))).checked == 0

    # Retries with the same keys replay the settled outcome; the processor is not asked again.
    pay = world.ctx.payments
    replay_after = await pay.charge(after.account_id, 5000, "ivr", after.idempotency_key,
                                    "retry")
    replay_before = await pay.charge(before.account_id, 5000, "ivr", before.idempotency_key,
                                     "retry")
    assert isinstance(replay_after, Approved) and replay_after.payment_id == after.id
    assert isinstance(replay_before, Declined) and replay_before.code == "not_received"
    assert world.gateway.approved_charges() == {after.idempotency_key: 5000}
    assert len(await world.payments()) == 2
    approved = await audit_count(world.db.url, "payment.approved")
    assert approved == {f"payment:{after.id}": 1}
    print(f"two timed-out calls in {call_s:.2f} s; settled by one reconcile pass")
