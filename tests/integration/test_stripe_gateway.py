"""The Stripe connector against a local server speaking Stripe's protocol, and the whole
charge path through it (database on both backends)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from ivr.gateways.base import ChargeFailed, OutcomeUnknown
from ivr.gateways.stripe_gateway import StripeGateway
from ivr.services.payments import Approved, Declined, PaymentService, Pending
from ivr.services.reconcile import reconcile_once
from ivr.storage.models import Account, Payment, PaymentMethod
from tests.fixtures.stripe_fake import FakeStripe


@pytest.fixture
async def fake():
    server = await FakeStripe().start()
    yield server
    await server.stop()


@pytest.fixture
def gateway(fake: FakeStripe) -> StripeGateway:
    return StripeGateway(fake.api_key, api_base=fake.url, max_network_retries=2, timeout=5)


async def test_charge_sends_off_session_confirm_with_our_key(fake, gateway):
    r = await gateway.charge("pm_card_visa", 8417, "USD", "key-1", {"account_id": "7"},
                             customer="cus_1")
    assert r.approved and r.reference and r.reference.startswith("pi_")
    _method, _path, params, headers = fake.requests[0]
    assert headers["Idempotency-Key"] == "key-1"
    assert params["off_session"] == "true" and params["confirm"] == "true"
    assert params["customer"] == "cus_1" and params["amount"] == "8417"
    assert params["currency"] == "usd" and params["metadata[starpay_key]"] == "key-1"
    again = await gateway.charge("pm_card_visa", 8417, "USD", "key-1", {"account_id": "7"},
                                 customer="cus_1")
    assert again.reference == r.reference and len(fake.charges) == 1


@pytest.mark.parametrize("pm,code", [
    ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card"),
])
async def test_card_errors_map_to_declines(gateway, pm, code):
    r = await gateway.charge(pm, 100, "USD", "k-" + code, {})
    assert r.status == "declined" and r.decline_code == code and r.reason
    looked = await gateway.lookup("k-" + code)
    assert looked is not None and looked.status == "declined" and looked.decline_code == code


async def test_authentication_required_is_distinct(gateway):
    r = await gateway.charge("pm_card_authenticationRequired", 100, "USD", "k-3ds", {})
    assert r.status == "action_required"


async def test_same_key_other_parameters_is_refused(gateway):
    await gateway.charge("pm_card_visa", 100, "USD", "k-x", {})
    with pytest.raises(ChargeFailed):
        await gateway.charge("pm_card_visa", 200, "USD", "k-x", {})


async def test_dropped_connection_after_charge_is_retried_with_same_key(fake, gateway):
    fake.fault_after_charge = "drop"
    r = await gateway.charge("pm_card_visa", 500, "USD", "k-drop", {})
    assert r.approved
    assert len(fake.charges) == 1
    assert len([q for q in fake.requests if q[0] == "POST"]) >= 2  # the retry happened


async def test_500_after_charge_is_unknown_then_found(fake, gateway):
    fake.fault_after_charge = "500"
    with pytest.raises(OutcomeUnknown):
        await gateway.charge("pm_card_visa", 500, "USD", "k-500", {})
    found = await gateway.lookup("k-500")
    assert found is not None and found.approved
    assert await gateway.lookup("never-sent") is None
    assert await gateway.lookup("x", reference="pi_missing") is None


async def test_refund(gateway):
    r = await gateway.charge("pm_card_visa", 700, "USD", "k-r", {})
    refund = await gateway.refund(r.reference, 700, "refund:k-r")  # type: ignore[arg-type]
    assert refund.status == "succeeded" and refund.amount_minor == 700


async def _stripe_account(db, pm: str) -> int:
    async with db.session() as s:
        a = Account(account_number="S1", name="Stripe Customer", zip_code="10001",
                    balance_minor=8417)
        s.add(a)
        await s.flush()
        s.add(PaymentMethod(account_id=a.id, processor="stripe", token=pm,
                            processor_customer="cus_test", brand="visa", last4="4242",
                            exp_month=12, exp_year=date.today().year + 1))
        return a.id


async def test_500_after_charge_ends_with_exactly_one_charge(db, fake, gateway):
    aid = await _stripe_account(db, "pm_card_visa")
    svc = PaymentService(db, gateway)
    fake.fault_after_charge = "500"
    out = await svc.charge(aid, 8417, "ivr", "call-9-pay", "call-9")
    assert isinstance(out, Pending)
    # The caller (or a retry) repeats: no second request reaches Stripe with a new key.
    assert isinstance(await svc.charge(aid, 8417, "ivr", "call-9-pay", "call-9"), Pending)
    report = await reconcile_once(db, gateway, min_age=timedelta(0))
    assert report.approved == 1
    assert len(fake.charges) == 1
    async with db.session() as s:
        p = (await s.execute(select(Payment))).scalar_one()
        assert p.state == "approved" and p.processor_reference == fake.charges[0]["id"]
        assert (await s.get(Account, aid)).balance_minor == 0  # type: ignore[union-attr]
    assert isinstance(await svc.charge(aid, 8417, "ivr", "call-9-pay", "call-9"), Approved)


async def test_decline_through_service(db, gateway):
    aid = await _stripe_account(db, "pm_card_authenticationRequired")
    out = await PaymentService(db, gateway).charge(aid, 1000, "ivr", "k", None)
    assert isinstance(out, Declined) and out.agent_required
