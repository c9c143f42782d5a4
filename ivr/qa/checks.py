"""Checking a scenario's outcome once the call is over: the payment, the call record, the
hand-off (STARPAY_NEXT) and the callback, against the scenario's ``expect``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select

from ivr.agi.protocol import split_command
from ivr.qa.steps import Failed
from ivr.qa.world import World
from ivr.storage.calls import Callback, CallRecord
from ivr.storage.models import Payment


def next_of(commands: Sequence[str]) -> str:
    """STARPAY_NEXT as the service last set it ("none" when it never did)."""
    value = "none"
    for raw in commands:
        words = split_command(raw)
        if len(words) >= 4 and [w.upper() for w in words[:2]] == ["SET", "VARIABLE"] \
                and words[2] == "STARPAY_NEXT":
            value = words[3] or "none"
    return value


async def check_outcome(world: World, commands: Sequence[str]) -> None:
    want = world.scenario.expect
    async with world.db.session() as s:
        payments = list((await s.execute(select(Payment).order_by(Payment.id))).scalars())
        record = (await s.execute(select(CallRecord).order_by(CallRecord.id.desc())
                                  .limit(1))).scalar_one_or_none()
        callbacks = (await s.execute(select(func.count()).select_from(Callback).where(
            Callback.status == "pending"))).scalar_one()
    if want.payment is not None:
        if want.payment.state is None:
            if payments:
                p = payments[-1]
                raise Failed("expect: payment", f"wanted none; got {p.state} "
                             f"{p.amount_minor / 100:.2f}")
        else:
            if not payments:
                raise Failed("expect: payment", f"wanted {want.payment.state}; got none")
            p = payments[-1]
            if p.state != want.payment.state or (want.payment.amount_minor is not None and
                                                 p.amount_minor != want.payment.amount_minor):
                amount = ("" if want.payment.amount_minor is None
                          else f" {want.payment.amount_minor / 100:.2f}")
                raise Failed("expect: payment", f"wanted {want.payment.state}{amount}; got "
                             f"{p.state} {p.amount_minor / 100:.2f}")
    if want.call_outcome is not None or want.language is not None:
        if record is None:
            raise Failed("expect: call_outcome", "no call record was stored")
        if want.call_outcome is not None and record.outcome != want.call_outcome:
            raise Failed("expect: call_outcome",
                         f"wanted {want.call_outcome}; got {record.outcome} "
                         f"(path: {' '.join(record.path or [])})")
        if want.language is not None and record.language != want.language:
            raise Failed("expect: language", f"wanted {want.language}; got {record.language}")
    if want.next is not None and next_of(commands) != want.next:
        raise Failed("expect: next", f"wanted {want.next}; STARPAY_NEXT was "
                     f"{next_of(commands)}")
    if want.callback is not None:
        got = "scheduled" if callbacks else "none"
        if got != want.callback:
            raise Failed("expect: callback", f"wanted {want.callback}; got {got}")
