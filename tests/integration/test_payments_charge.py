"""Exactly-once charging, on SQLite and PostgreSQL, against the sandbox gateway."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.gateways.sandbox import SandboxGateway
from ivr.services.accounts import AccountService
from ivr.services.payments import (
    Approved,
    Declined,
    PaymentService,
    Pending,
    Rejected,
    confirmation_number,
    payment_id_from_confirmation,
)
from ivr.services.reconcile import reconcile_once
from ivr.storage.db import Database
from ivr.storage.models import Account, AuditEntry, Payment, PaymentMethod

NEXT_YEAR = date.today().year + 1


async def make_account(db: Database, *, balance: int = 8417, token: str = "tok_sandbox_approve",
                       exp_year: int = NEXT_YEAR, number: str = "1001", card: bool = True
                       ) -> int:
    async with db.session() as s:
        a = Account(account_number=number, name="Test Person", zip_code="10001",
                    balance_minor=balance, currency="USD")
        s.add(a)
        await s.flush()
        if card:
            s.add(PaymentMethod(account_id=a.id, token=token, brand="visa", last4="4242",
                                exp_month=12, exp_year=exp_year))
        return a.id


@pytest.fixture
async def sandbox(tmp_path: Path) -> SandboxGateway:
    gw = SandboxGateway(tmp_path / "sandbox.db")
    yield gw
    await gw.close()


def service(db: Database, gw: SandboxGateway, **kw: object) -> PaymentService:
    return PaymentService(db, gw, **kw)  # type: ignore[arg-type]


async def balance(db: Database, account_id: int) -> int:
    async with db.session() as s:
        return (await s.get(Account, account_id)).balance_minor  # type: ignore[union-attr]


async def test_approved_moves_balance_and_gives_confirmation(db, sandbox):
    aid = await make_account(db)
    out = await service(db, sandbox).charge(aid, 8417, "ivr", "k1", "call-1")
    assert isinstance(out, Approved)
    assert out.confirmation.isdigit() and len(out.confirmation) == 8
    assert payment_id_from_confirmation(out.confirmation) == out.payment_id
    assert await balance(db, aid) == 0
    assert sandbox.approved_charges() == {"k1": 8417}
    async with db.session() as s:
        actions = [e.action for e in (await s.execute(select(AuditEntry))).scalars()]
    assert actions == ["payment.pending", "payment.approved"]


@pytest.mark.parametrize("token,code", [
    ("tok_sandbox_insufficient_funds", "insufficient_funds"),
    ("tok_sandbox_expired_card", "expired_card"),
    ("tok_sandbox_do_not_honor", "do_not_honor"),
    ("tok_sandbox_processing_error", "processing_error"),
])
async def test_declines_leave_balance(db, sandbox, token, code):
    aid = await make_account(db, token=token)
    out = await service(db, sandbox).charge(aid, 1000, "sms", "k-" + code, "msg-1")
    assert isinstance(out, Declined)
    assert out.code == code and out.reason and not out.agent_required
    assert await balance(db, aid) == 8417


async def test_authentication_required_sends_to_agent(db, sandbox):
    aid = await make_account(db, token="tok_sandbox_authentication_required")
    out = await service(db, sandbox).charge(aid, 1000, "ivr", "k-3ds", None)
    assert isinstance(out, Declined) and out.agent_required


@pytest.mark.parametrize("amount,kw,reason", [
    (0, {}, "not_positive"),
    (-5, {}, "not_positive"),
    (8418, {}, "over_balance"),
    (5000, {"daily_limit_minor": 4999}, "over_daily_limit"),
])
async def test_validation_rejects(db, sandbox, amount, kw, reason):
    aid = await make_account(db)
    out = await service(db, sandbox, **kw).charge(aid, amount, "ivr", "k", None)
    assert isinstance(out, Rejected) and out.reason == reason
    assert sandbox.approved_charges() == {}


async def test_overpay_allowed_by_config(db, sandbox):
    aid = await make_account(db, balance=100)
    out = await service(db, sandbox, allow_overpay=True).charge(aid, 500, "ivr", "k", None)
    assert isinstance(out, Approved)
    assert await balance(db, aid) == -400


async def test_no_card_and_expired_card(db, sandbox):
    a1 = await make_account(db, card=False, number="1")
    a2 = await make_account(db, exp_year=2020, number="2")
    svc = service(db, sandbox)
    assert (await svc.charge(a1, 100, "ivr", "a", None)).reason == "no_card"  # type: ignore[union-attr]
    assert (await svc.charge(a2, 100, "ivr", "b", None)).reason == "card_expired"  # type: ignore[union-attr]


async def test_daily_limit_counts_earlier_payments(db, sandbox):
    aid = await make_account(db, balance=10_000)
    svc = service(db, sandbox, daily_limit_minor=6000)
    assert isinstance(await svc.charge(aid, 4000, "ivr", "a", None), Approved)
    out = await svc.charge(aid, 2001, "ivr", "b", None)
    assert isinstance(out, Rejected) and out.reason == "over_daily_limit"


async def test_duplicate_key_returns_same_payment_without_second_charge(db, sandbox):
    aid = await make_account(db)
    svc = service(db, sandbox)
    first = await svc.charge(aid, 1000, "ivr", "same", "call-1")
    again = await svc.charge(aid, 1000, "ivr", "same", "call-1")
    assert isinstance(first, Approved) and again == first
    other = await svc.charge(aid, 999, "ivr", "same", "call-1")
    assert isinstance(other, Rejected) and other.reason == "key_conflict"
    assert sandbox.approved_charges() == {"same": 1000}
    assert await balance(db, aid) == 7417


async def test_concurrent_duplicates_charge_once(db, sandbox):
    aid = await make_account(db)
    svc = service(db, sandbox)
    outs = await asyncio.gather(*(svc.charge(aid, 1000, "ivr", "dup", None) for _ in range(8)))
    assert {o.payment_id for o in outs} == {outs[0].payment_id}  # type: ignore[union-attr]
    assert sandbox.approved_charges() == {"dup": 1000}
    assert await balance(db, aid) == 7417


async def test_two_concurrent_charges_cannot_overpay(db, sandbox):
    aid = await make_account(db, balance=8417)
    # Two services = two independent callers (e.g. the phone and a text) on one account.
    a, b = service(db, sandbox), service(Database(db.url), sandbox)
    try:
        outs = await asyncio.gather(a.charge(aid, 8417, "ivr", "call", None),
                                    b.charge(aid, 8417, "sms", "text", None))
    finally:
        await b.db.dispose()
    kinds = sorted(o.kind for o in outs)
    assert kinds == ["approved", "rejected"], outs
    assert await balance(db, aid) == 0
    assert len(sandbox.approved_charges()) == 1


async def test_timeout_after_charge_is_settled_by_reconcile(db, sandbox):
    aid = await make_account(db, token="tok_sandbox_timeout_after_charge")
    svc = service(db, sandbox)
    out = await svc.charge(aid, 1000, "ivr", "t1", None)
    assert isinstance(out, Pending)
    assert await balance(db, aid) == 8417
    report = await reconcile_once(db, sandbox, min_age=timedelta(0))
    assert report.approved == 1
    assert isinstance(await svc.charge(aid, 1000, "ivr", "t1", None), Approved)
    assert await balance(db, aid) == 7417
    assert sandbox.approved_charges() == {"t1": 1000}
    # A second pass finds nothing to do and moves nothing.
    assert (await reconcile_once(db, sandbox, min_age=timedelta(0))).checked == 0
    assert await balance(db, aid) == 7417


async def test_timeout_before_charge_fails_after_grace(db, sandbox):
    aid = await make_account(db, token="tok_sandbox_timeout_before_charge")
    svc = service(db, sandbox)
    assert isinstance(await svc.charge(aid, 1000, "ivr", "t2", None), Pending)
    kept = await reconcile_once(db, sandbox, min_age=timedelta(0),
                                give_up_after=timedelta(hours=1))
    assert kept.still_open == 1
    done = await reconcile_once(db, sandbox, min_age=timedelta(0), give_up_after=timedelta(0))
    assert done.failed == 1
    out = await svc.charge(aid, 1000, "ivr", "t2", None)
    assert isinstance(out, Declined) and out.code == "not_received"
    assert await balance(db, aid) == 8417 and sandbox.approved_charges() == {}


async def test_unknown_payment_counts_against_balance(db, sandbox):
    aid = await make_account(db, token="tok_sandbox_timeout_after_charge")
    svc = service(db, sandbox)
    assert isinstance(await svc.charge(aid, 8000, "ivr", "u1", None), Pending)
    out = await svc.charge(aid, 1000, "ivr", "u2", None)
    assert isinstance(out, Rejected) and out.reason == "over_balance"


async def test_refund_restores_balance(db, sandbox):
    aid = await make_account(db)
    svc = service(db, sandbox)
    out = await svc.charge(aid, 1000, "agent", "r1", None)
    view = await svc.refund(out.payment_id)  # type: ignore[union-attr]
    assert view.state == "refunded" and await balance(db, aid) == 8417


async def test_list_payments(db, sandbox):
    aid = await make_account(db)
    svc = service(db, sandbox)
    await svc.charge(aid, 100, "ivr", "l1", None)
    await svc.charge(aid, 200, "sms", "l2", None)
    rows = await svc.list(account_number="1001")
    assert [r.amount_minor for r in rows] == [200, 100]
    assert rows[0].confirmation == confirmation_number(rows[0].id)
    async with db.session() as s:
        assert len((await s.execute(select(Payment))).scalars().all()) == 2


async def test_account_lookup_by_phone(db):
    aid = await make_account(db)
    view = await AccountService(db).get(aid)
    assert view is not None and view.card is not None and view.card.last4 == "4242"


async def test_load_with_timeouts_and_retries_settles_exactly_once(db, tmp_path):
    """Many concurrent attempts, injected gateway timeouts and same-key retries: after
    reconcile every gateway charge has exactly one approved payment and vice versa."""
    gw = SandboxGateway(tmp_path / "faulty.db", timeout_rate=0.2, seed=3)
    ids = [await make_account(db, balance=10**9, number=f"L{i}") for i in range(5)]
    svc = service(db, gw, daily_limit_minor=10**9)
    keys = [(ids[i % 5], 100 + i, f"load-{i}") for i in range(60)]
    attempts = keys + keys[::3]  # every third payment is retried with the same key
    await asyncio.gather(*(svc.charge(a, amt, "ivr", k, None) for a, amt, k in attempts))
    await reconcile_once(db, gw, min_age=timedelta(0), give_up_after=timedelta(0))
    charged = gw.approved_charges()
    async with db.session() as s:
        approved = dict((await s.execute(select(Payment.idempotency_key, Payment.amount_minor)
                                         .where(Payment.state == "approved"))).all())
        states = set((await s.execute(select(Payment.state))).scalars())
        total = sum([(await s.get(Account, a)).balance_minor for a in ids])  # type: ignore[union-attr]
    assert charged == approved
    assert states <= {"approved", "failed"}
    assert total == 5 * 10**9 - sum(approved.values())
    await gw.close()


async def test_the_periodic_reconcile_job_settles_then_stops(db, sandbox):
    from ivr.jobs.worker import JobKind, Periodic, Worker
    from ivr.services.reconcile import RECONCILE_JOB, reconcile_job

    aid = await make_account(db, token="tok_sandbox_timeout_after_charge")
    assert isinstance(await service(db, sandbox).charge(aid, 500, "ivr", "bg", None), Pending)
    kind = JobKind(reconcile_job(db, sandbox, min_age=timedelta(0)))
    worker = Worker(db, {RECONCILE_JOB: kind}, periodic=[Periodic(RECONCILE_JOB, 0.05)],
                    poll_interval=0.02)
    async with worker:
        for _ in range(100):
            if await balance(db, aid) == 7917:
                break
            await asyncio.sleep(0.05)
    await asyncio.wait_for(worker.stop(), 5)  # stopping twice is harmless
    assert await balance(db, aid) == 7917
