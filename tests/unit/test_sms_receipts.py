"""Receipts on every channel: a *PAY call that pays queues one receipt text through the
outbox (the real call flow on the emulator, tests/unit/pay_world.py), exactly once per
payment, in the caller's language, and none to a number that opted out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ivr.flows.context import Receipt
from ivr.messaging.optouts import OptOuts
from ivr.messaging.outbox import SEND_JOB, Outbox
from ivr.services.confirmation import confirmation_number
from ivr.storage.jobs import Job
from ivr.storage.messages import Message
from tests.unit.pay_world import ALEX, MARIA, World, make_world, played


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


async def _messages(world: World) -> list[Message]:
    async with world.db.session() as s:
        return list((await s.execute(select(Message).order_by(Message.id))).scalars())


async def _send_jobs(world: World) -> int:
    async with world.db.session() as s:
        return (await s.execute(select(func.count()).select_from(Job)
                                .where(Job.kind == SEND_JOB))).scalar_one()


async def test_a_paid_call_queues_one_receipt(world: World) -> None:
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "1"), callerid=ALEX)
    assert "receipt_text" in played(fake)  # "we will send your receipt by text message"
    (payment,) = await world.payments()
    (msg,) = await _messages(world)
    assert (msg.direction, msg.kind, msg.to_number, msg.state) == ("out", "receipt", ALEX,
                                                                   "queued")
    assert msg.dedupe_key == f"receipt:{payment.id}" and msg.payment_id == payment.id
    assert msg.account_id == payment.account_id
    assert "$84.17" in msg.body and confirmation_number(payment.id) in msg.body
    assert (msg.segments, msg.encoding) == (1, "GSM-7")
    assert await _send_jobs(world) == 1
    rec = await world.last_record()
    assert rec.details["receipt_sms"]["ref"] == str(msg.id)

    # Asked again for the same payment (a retry, another channel): the same message.
    assert world.ctx.send_receipt is not None
    again = Receipt(to=ALEX, account_id=payment.account_id, payment_id=payment.id,
                    amount_minor=payment.amount_minor, currency=payment.currency,
                    confirmation=confirmation_number(payment.id), language="en",
                    when=date(2026, 12, 2))
    assert await world.ctx.send_receipt(again) == str(msg.id)
    assert len(await _messages(world)) == 1 and await _send_jobs(world) == 1


async def test_receipt_in_spanish_for_a_spanish_caller(world: World) -> None:
    await world.call(("main_menu", "1"), ("pay_confirm_press", "1"), callerid=MARIA)
    (payment,) = await world.payments()
    (msg,) = await _messages(world)
    assert "recibimos su pago" in msg.body and msg.to_number == MARIA


async def test_no_receipt_to_a_number_that_opted_out(world: World) -> None:
    await OptOuts(world.db).opt_out(ALEX, "keyword")
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "1"), callerid=ALEX)
    (payment,) = await world.payments()
    assert payment.state == "approved"
    assert "receipt_text" not in played(fake)  # not promised when it will not come
    (msg,) = await _messages(world)
    assert (msg.state, msg.error_code) == ("refused", "opted_out")
    assert await _send_jobs(world) == 0
    outbox = Outbox(world.db, sender="+15555550100")
    assert (await outbox.by_key(f"receipt:{payment.id}")) is not None
