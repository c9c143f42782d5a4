"""The *PAY call end to end: FakeAsterisk → real AGIServer → pay flow → real services on
SQLite with the sandbox gateway. Each test is one or two scripted calls."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ivr.prompts import speech
from tests.unit.pay_world import ALEX, World, contains, make_world, played


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with make_world(tmp_path) as w:
        yield w


async def test_happy_path_trusted_ani_pays_full_balance(world: World) -> None:
    fake = await world.call(("main_menu", "1"), ("pay_confirm_press", "1"),
                            callerid=ALEX, attest="A")
    ids = played(fake)
    assert ids[:2] == ["greeting", "language_offer"]
    assert contains(ids, ["balance_is", *speech.money(8417, "en"), "balance_due"])
    assert contains(ids, ["pay_to_pay", *speech.money(8417, "en"), "pay_with_the",
                          "brand_visa", "ending_in", "digit_4", "digit_2", "digit_4",
                          "digit_2", "pay_confirm_press"])
    assert "approved" in ids and ids[-1] == "goodbye"
    (payment,) = await world.payments()
    assert payment.state == "approved" and payment.amount_minor == 8417
    assert await world.balance("100001") == 0
    rec = await world.last_record()
    assert rec.verified_how == "ani" and rec.outcome == "paid"
    assert rec.payment_id == payment.id and rec.ani == ALEX and rec.duration_s is not None
    print(ids, rec.path)
