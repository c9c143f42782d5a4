"""The data model on both databases: no card numbers, append-only audit, many-to-many
numbers, verification lockout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError

from ivr.services.accounts import AccountService, check_pin, hash_pin
from ivr.services.demo import seed_demo
from ivr.storage import audit
from ivr.storage.models import (
    Account,
    AuditEntry,
    AuditLogIsAppendOnly,
    CardDataRefused,
    PaymentMethod,
    PhoneNumber,
)
from tests.integration.test_payments_charge import make_account


@pytest.mark.parametrize("field,value", [
    ("token", "4242424242424242"), ("token", "4242 4242 4242 4242"),
    ("token", "tok_4242-4242-4242-4242"), ("brand", "visa 4000056655665556"),
    ("processor_customer", "378282246310005"), ("last4", "42424242"), ("last4", "42a2"),
])
def test_model_refuses_card_numbers(field, value):
    kw = dict(account_id=1, token="tok_ok", brand="visa", last4="4242", exp_month=1,
              exp_year=2030)
    kw[field] = value
    with pytest.raises(CardDataRefused):
        PaymentMethod(**kw)


async def test_card_number_never_reaches_database(db):
    aid = await make_account(db, card=False)
    pm = PaymentMethod(account_id=aid, token="tok_ok", brand="visa", last4="4242",
                       exp_month=1, exp_year=2030)
    pm.__dict__["token"] = "4111111111111111"  # bypass the attribute validator
    with pytest.raises(CardDataRefused):
        async with db.session() as s:
            s.add(pm)
    async with db.session() as s:
        assert (await s.execute(text("SELECT count(*) FROM payment_methods"))).scalar() == 0


async def test_audit_log_is_append_only(db):
    async with db.session() as s:
        entry = audit.record(s, "test", "thing.done", "account:1", n=1)
    with pytest.raises(AuditLogIsAppendOnly):
        async with db.session() as s:
            e = await s.get(AuditEntry, entry.id)
            e.action = "rewritten"  # type: ignore[union-attr]
    with pytest.raises(AuditLogIsAppendOnly):
        async with db.session() as s:
            await s.delete(await s.get(AuditEntry, entry.id))
    for stmt in (update(AuditEntry).values(action="x"), delete(AuditEntry)):
        with pytest.raises(DBAPIError, match="append-only"):
            async with db.session() as s:
                await s.execute(stmt)
    async with db.session() as s:
        row = await s.get(AuditEntry, entry.id)
        assert row is not None and row.action == "thing.done" and row.details == {"n": 1}


async def test_number_with_two_accounts_and_account_with_two_numbers(db):
    await seed_demo(db)
    svc = AccountService(db)
    both = await svc.by_phone("+15551234568")
    assert [a.account_number for a in both] == ["100002", "100003"]
    async with db.session() as s:
        a = await s.get(Account, both[0].id, options=[])
        await s.refresh(a, ["phones"])
        a.phones.append(PhoneNumber(e164="+15559990000"))  # type: ignore[union-attr]
    assert [x.account_number for x in await svc.by_phone("+15559990000")] == ["100002"]
    assert (await svc.get(both[0].id)).phones == ("+15551234568", "+15559990000")  # type: ignore[union-attr]


async def test_demo_seed_is_idempotent_and_covers_cases(db):
    assert await seed_demo(db) == (9, 0)
    assert await seed_demo(db) == (0, 9)
    svc = AccountService(db)
    alex = await svc.by_number("100001")
    assert alex and alex.balance_minor == 8417 and alex.card and alex.card.last4 == "4242"
    assert alex.next_due and not alex.past_due
    assert (await svc.by_number("100004")).card is None  # type: ignore[union-attr]
    assert (await svc.by_number("100005")).card.expired  # type: ignore[union-attr]
    assert (await svc.by_number("100006")).balance_minor == 0  # type: ignore[union-attr]
    assert (await svc.by_number("100007")).past_due  # type: ignore[union-attr]
    assert (await svc.by_number("100008")).language == "es"  # type: ignore[union-attr]


def test_pin_hash_is_salted():
    a, b = hash_pin("1234"), hash_pin("1234")
    assert a != b and "1234" not in a
    assert check_pin("1234", a) and not check_pin("1235", a) and not check_pin("1234", None)


async def test_verify_lockout(db):
    await seed_demo(db)
    svc = AccountService(db)
    acct = await svc.by_number("100001")
    assert acct
    t0 = datetime.now(UTC)
    kw = dict(max_failures=3, lockout_minutes=30)
    assert (await svc.verify(acct.id, zip_code="10001", now=t0, **kw)).ok
    r1 = await svc.verify(acct.id, pin="0000", now=t0, **kw)
    assert not r1.ok and r1.attempts_left == 2
    await svc.verify(acct.id, zip_code="99999", now=t0, **kw)
    r3 = await svc.verify(acct.id, pin="0000", now=t0, **kw)
    assert r3.locked and r3.locked_until == t0 + timedelta(minutes=30)
    # While locked even the right PIN is not checked.
    locked = await svc.verify(acct.id, pin="1234", now=t0 + timedelta(minutes=29), **kw)
    assert not locked.ok and locked.locked
    later = await svc.verify(acct.id, pin="1234", now=t0 + timedelta(minutes=31), **kw)
    assert later.ok
