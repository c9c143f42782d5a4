"""Exactly-once refunds, whole and partial, on SQLite and PostgreSQL, against the sandbox
gateway and the Stripe connector (a local server speaking Stripe's protocol)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from ivr.gateways.sandbox import SandboxGateway
from ivr.gateways.stripe_gateway import StripeGateway
from ivr.services.payments import Approved, PaymentService
from ivr.services.reconcile import reconcile_once
from ivr.services.refunds import RefundRejected, RefundService, RefundView
from ivr.storage.db import Database
from ivr.storage.models import AuditEntry, Payment
from ivr.storage.refunds import Refund
from tests.fixtures.stripe_fake import FakeStripe
from tests.integration.test_payments_charge import balance, make_account


@pytest.fixture
async def sandbox(tmp_path):
    gw = SandboxGateway(tmp_path / "sandbox.db")
    yield gw
    await gw.close()


async def paid(db: Database, gw, amount: int = 5000, token: str = "tok_sandbox_approve"
               ) -> tuple[int, int]:
    """(account id, payment id) of an approved payment of ``amount`` on a fresh account."""
    aid = await make_account(db, balance=8417, token=token)
    out = await PaymentService(db, gw).charge(aid, amount, "ivr", f"pay-{aid}", None)
    assert isinstance(out, Approved), out
    return aid, out.payment_id


async def payment(db: Database, pid: int) -> Payment:
    async with db.session() as s:
        p = await s.get(Payment, pid)
        assert p is not None
        return p


async def refund_rows(db: Database) -> list[Refund]:
    async with db.session() as s:
        return list((await s.execute(select(Refund).order_by(Refund.id))).scalars())


async def test_same_key_twice_refunds_once(db, sandbox):
    aid, pid = await paid(db, sandbox)
    svc = RefundService(db, sandbox)
    first = await svc.refund(pid, 2000, "rf-1")
    second = await svc.refund(pid, 2000, "rf-1")
    assert isinstance(first, RefundView) and first.state == "succeeded"
    assert isinstance(second, RefundView) and second.replayed and second.id == first.id
    assert sandbox.refunded() == {"rf-1": 2000}
    assert await balance(db, aid) == 8417 - 5000 + 2000
    p = await payment(db, pid)
    assert p.state == "approved" and p.refunded_minor == 2000
    # The same key for another amount is a conflict, not a second refund.
    other = await svc.refund(pid, 100, "rf-1")
    assert isinstance(other, RefundRejected) and other.reason == "key_conflict"
    assert len(await refund_rows(db)) == 1


async def test_two_partial_refunds_then_the_payment_is_refunded(db, sandbox):
    aid, pid = await paid(db, sandbox)
    svc = RefundService(db, sandbox)
    a = await svc.refund(pid, 1500, "rf-a")
    p = await payment(db, pid)
    assert isinstance(a, RefundView) and p.state == "approved" and p.refunded_minor == 1500
    b = await svc.refund(pid, None, "rf-b")  # all that is left
    assert isinstance(b, RefundView) and b.state == "succeeded" and b.amount_minor == 3500
    p = await payment(db, pid)
    assert p.state == "refunded" and p.refunded_minor == 5000
    assert await balance(db, aid) == 8417
    assert sandbox.refunded() == {"rf-a": 1500, "rf-b": 3500}
    async with db.session() as s:
        actions = [e.action for e in (await s.execute(
            select(AuditEntry).where(AuditEntry.action.like("refund.%")))).scalars()]
    assert actions.count("refund.pending") == 2 and actions.count("refund.succeeded") == 2


async def test_over_refund_is_refused(db, sandbox):
    aid, pid = await paid(db, sandbox)
    svc = RefundService(db, sandbox)
    too_much = await svc.refund(pid, 5001, "rf-x")
    assert isinstance(too_much, RefundRejected) and too_much.reason == "over_refund"
    assert "$50.00" in too_much.message
    assert isinstance(await svc.refund(pid, 4000, "rf-1"), RefundView)
    rest = await svc.refund(pid, 1001, "rf-2")
    assert isinstance(rest, RefundRejected) and "$10.00" in rest.message
    assert isinstance(await svc.refund(pid, 1000, "rf-3"), RefundView)
    done = await svc.refund(pid, None, "rf-4")
    assert isinstance(done, RefundRejected) and done.reason == "over_refund"
    assert sum(sandbox.refunded().values()) == 5000
    assert await balance(db, aid) == 8417


async def test_concurrent_refunds_never_add_up_to_more_than_the_payment(db, sandbox):
    _aid, pid = await paid(db, sandbox)
    svc = RefundService(db, sandbox)
    outs = await asyncio.gather(*(svc.refund(pid, 2000, f"rf-c{i}") for i in range(5)))
    made = [o for o in outs if isinstance(o, RefundView)]
    assert len(made) == 2 and sum(sandbox.refunded().values()) == 4000
    assert (await payment(db, pid)).refunded_minor == 4000


async def test_declined_payment_cannot_be_refunded(db, sandbox):
    aid = await make_account(db, token="tok_sandbox_insufficient_funds")
    out = await PaymentService(db, sandbox).charge(aid, 1000, "ivr", "pay-d", None)
    no = await RefundService(db, sandbox).refund(out.payment_id, None, "rf-d")  # type: ignore[union-attr]
    assert isinstance(no, RefundRejected) and no.reason == "not_refundable"
    missing = await RefundService(db, sandbox).refund(999_999, None, "rf-m")
    assert isinstance(missing, RefundRejected) and missing.reason == "no_payment"


@pytest.mark.parametrize("fault", ["before", "after"])
async def test_timeout_leaves_unknown_and_reconcile_settles_it_once(db, sandbox, fault):
    aid, pid = await paid(db, sandbox)
    svc = RefundService(db, sandbox)
    sandbox.refund_fault = fault
    out = await svc.refund(pid, 2500, "rf-t")
    assert isinstance(out, RefundView) and out.state == "unknown"
    assert await balance(db, aid) == 8417 - 5000  # nothing moved back yet
    # The open refund holds its amount: what is left is 2500, not 5000.
    assert isinstance(await svc.refund(pid, 2600, "rf-u"), RefundRejected)
    report = await reconcile_once(db, sandbox, min_age=timedelta(0))
    assert (report.refunds.checked, report.refunds.succeeded) == (1, 1)
    assert sandbox.refunded() == {"rf-t": 2500}
    assert await balance(db, aid) == 8417 - 2500
    assert (await payment(db, pid)).refunded_minor == 2500
    again = await reconcile_once(db, sandbox, min_age=timedelta(0))
    assert again.refunds.checked == 0 and sandbox.refunded() == {"rf-t": 2500}


async def test_young_pending_refund_is_left_to_its_command(db, sandbox):
    _aid, pid = await paid(db, sandbox)
    async with db.session() as s:
        s.add(Refund(payment_id=pid, amount_minor=100, currency="USD", state="pending",
                     idempotency_key="rf-live", actor="cli"))
    report = await reconcile_once(db, sandbox, min_age=timedelta(minutes=5))
    assert report.refunds.checked == 0 and sandbox.refunded() == {}
    # A crash left it pending: once old enough, the reconciler sends it with its key.
    report = await reconcile_once(db, sandbox, min_age=timedelta(0))
    assert report.refunds.succeeded == 1 and sandbox.refunded() == {"rf-live": 100}


# -- Stripe --

@pytest.fixture
async def fake():
    server = await FakeStripe().start()
    yield server
    await server.stop()


@pytest.fixture
def stripe_gw(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(fake.api_key, api_base=fake.url, max_network_retries=0, timeout=5)


def refund_posts(fake: FakeStripe) -> list[dict[str, str]]:
    return [params for method, path, params, _h in fake.requests
            if (method, path) == ("POST", "/v1/refunds")]


async def test_stripe_partial_refunds_with_our_key(db, fake, stripe_gw):
    aid = await make_account(db, token="pm_card_visa")
    out = await PaymentService(db, stripe_gw).charge(aid, 5000, "ivr", "pay-s", None)
    assert isinstance(out, Approved)
    svc = RefundService(db, stripe_gw)
    first = await svc.refund(out.payment_id, 2000, "rf-s1")
    assert isinstance(await svc.refund(out.payment_id, 2000, "rf-s1"), RefundView)
    assert isinstance(first, RefundView) and first.state == "succeeded"
    assert len(refund_posts(fake)) == 1  # the repeat never reached Stripe
    _m, _p, params, headers = next(q for q in fake.requests if q[1] == "/v1/refunds")
    assert headers["Idempotency-Key"] == "rf-s1" and params["amount"] == "2000"
    assert params["metadata[starpay_key]"] == "rf-s1"
    over = await svc.refund(out.payment_id, 3001, "rf-s2")
    assert isinstance(over, RefundRejected)
    assert isinstance(await svc.refund(out.payment_id, None, "rf-s3"), RefundView)
    assert [r["amount"] for r in fake.refunds] == [2000, 3000]
    assert (await payment(db, out.payment_id)).state == "refunded"


async def test_stripe_500_after_refund_then_reconcile(db, fake, stripe_gw):
    aid = await make_account(db, token="pm_card_visa")
    out = await PaymentService(db, stripe_gw).charge(aid, 5000, "ivr", "pay-s5", None)
    assert isinstance(out, Approved)
    fake.fault_after_refund = "500"
    r = await RefundService(db, stripe_gw).refund(out.payment_id, 1200, "rf-500")
    assert isinstance(r, RefundView) and r.state == "unknown"
    report = await reconcile_once(db, stripe_gw, min_age=timedelta(0))
    assert report.refunds.succeeded == 1
    assert len(fake.refunds) == 1 and len(refund_posts(fake)) == 1  # found, not resent
    assert await balance(db, aid) == 8417 - 5000 + 1200
