"""The Tx a Database.run body gets, on both databases. On a SQLite file that is SqliteTx,
which runs Core statements on a raw sqlite3 connection: these tests hold it to what
SQLAlchemy's own execution gives (rows, types, column defaults, errors)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from ivr.services import accounts, payments
from ivr.services.calls import _INSERT as INSERT_CALL
from ivr.storage import audit
from ivr.storage.calls import CallRecord
from ivr.storage.db import Database
from ivr.storage.models import (
    Account,
    AuditEntry,
    Payment,
    PhoneNumber,
    Statement,
    account_phones,
)
from ivr.storage.tx import SqliteTx
from tests.integration.test_payments_charge import make_account


async def _link_phone(db, account_id: int, e164: str) -> None:
    async with db.session() as s:
        phone = PhoneNumber(e164=e164)
        s.add(phone)
        await s.flush()
        await s.execute(insert(account_phones).values(account_id=account_id,
                                                      phone_id=phone.id))


async def _via_sqlalchemy(db, statement: Any, params: dict[str, Any]) -> list[tuple]:
    async with db.session() as s:
        return [tuple(r) for r in (await s.execute(statement, params)).all()]


async def test_hot_statements_return_what_sqlalchemy_returns(db):
    acct = await make_account(db)
    await _link_phone(db, acct, "+15557654321")
    async with db.session() as s:  # a date, a datetime and booleans to convert
        s.add(Statement(account_id=acct, amount_due_minor=8417, statement_date=date(2026, 11, 1),
                        due_date=date(2026, 11, 20)))
        (await s.get(Account, acct)).locked_until = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    since = datetime.now(UTC) - timedelta(days=1)
    cases = [
        (accounts._BY_PHONE, {"e164": "+15557654321"}),
        (accounts._BY_ID, {"account_id": acct}),
        (payments._ACCOUNT_AND_CARD, {"id": acct}),
        (payments._TOTALS, {"id": acct, "since": since}),
    ]
    for statement, params in cases:
        ours = await db.run(lambda tx, s=statement, p=params: tx.execute(s, p).all(),
                            write=False)
        assert [tuple(r) for r in ours] == await _via_sqlalchemy(db, statement, params)
        assert ours, statement
    view = (await db.run(lambda tx: tx.execute(accounts._BY_ID, {"account_id": acct}).one(),
                         write=False))
    assert (type(view.sms_opt_in), type(view.is_default)) == (bool, bool)
    assert view.due_date == date(2026, 11, 20)
    assert view.locked_until.replace(tzinfo=UTC) == datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    card = (await db.run(lambda tx: tx.execute(payments._ACCOUNT_AND_CARD,
                                               {"id": acct}).one(), write=False))
    assert (card.card_id, card.exp_month, card.time_zone) == (
        card[3], 12, "America/New_York")


async def test_insert_applies_python_defaults_and_returning(db):
    acct = await make_account(db)
    before = datetime.now(UTC)

    def work(tx) -> int:
        return tx.execute(payments._INSERT_PAYMENT, {
            "account_id": acct, "payment_method_id": None, "amount_minor": 1234,
            "currency": "USD", "state": "pending", "idempotency_key": "k-defaults",
            "gateway": "sandbox", "channel": "ivr", "source_id": None}).scalar_one()

    pid = await db.run(work)
    async with db.session() as s:
        p = await s.get(Payment, pid)
    assert p is not None and p.amount_minor == 1234 and p.refunded_minor == 0
    created = p.created_at if p.created_at.tzinfo else p.created_at.replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= created <= datetime.now(UTC) + timedelta(seconds=1)


async def test_constraint_error_is_sqlalchemys_and_rolls_back_the_whole_body(db):
    acct = await make_account(db)
    row = {"account_id": acct, "payment_method_id": None, "amount_minor": 5,
           "currency": "USD", "state": "pending", "idempotency_key": "k-twice",
           "gateway": "sandbox", "channel": "ivr", "source_id": None}

    def twice(tx) -> None:
        audit.append(tx, "test", "tx.before_duplicate")
        tx.execute(payments._INSERT_PAYMENT, row)
        tx.execute(payments._INSERT_PAYMENT, row)  # same idempotency key

    with pytest.raises(IntegrityError):
        await db.run(twice)
    count = select(func.count()).select_from(AuditEntry).where(
        AuditEntry.action == "tx.before_duplicate")
    assert await db.run(lambda tx: tx.execute(count).scalar_one(), write=False) == 0
    assert await db.run(lambda tx: tx.execute(
        payments._BY_KEY, {"key": "k-twice"}).first(), write=False) is None


async def test_values_the_statement_cannot_take_fail_loudly(db):
    by_states = select(Payment.id).where(Payment.state.in_(bindparam("states",
                                                                     expanding=True)))
    missing = select(Payment.id).where(Payment.id == bindparam("pid"))
    if db.is_sqlite:  # SQLAlchemy itself expands lists at execution; SqliteTx refuses
        with pytest.raises(ValueError, match="IN lists"):
            await db.run(lambda tx: tx.execute(by_states, {"states": ["a"]}).all(),
                         write=False)
    with pytest.raises(Exception, match="pid"):
        await db.run(lambda tx: tx.execute(missing, {}).all(), write=False)


async def test_not_durable_relaxes_only_its_own_commit(db_url):
    if db_url.startswith("sqlite"):
        setting = text("PRAGMA synchronous")
        relaxed, durable = 1, 2  # NORMAL, FULL
    else:
        # The test cluster runs with synchronous_commit=off for speed: turn it on for
        # this database, so "durable" has something to show.
        setting = text("SHOW synchronous_commit")
        relaxed, durable = "off", "on"
        admin = Database(db_url)
        try:
            async with admin.engine.begin() as conn:
                name = (await conn.exec_driver_sql("SELECT current_database()")).scalar()
                await conn.exec_driver_sql(f"ALTER DATABASE {name} SET synchronous_commit = on")
        finally:
            await admin.dispose()

    def read(tx) -> Any:
        return tx.execute(setting).scalar_one()

    db = Database(db_url)
    try:
        assert await db.run(read) == durable
        assert await db.run(read, durable=False) == relaxed
        assert await db.run(read) == durable
        assert await db.run(read, write=False) == durable
    finally:
        await db.dispose()


# JSON-able values as call flows put them in call records and audit details.
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(details=st.dictionaries(st.text(max_size=10), _json, max_size=5),
       path=st.lists(st.text(min_size=1, max_size=12), max_size=6),
       ani=st.none() | st.from_regex(r"\+1555[0-9]{7}", fullmatch=True),
       started=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                            timezones=st.just(UTC)))
async def test_written_rows_read_back_through_the_orm(db, details, path, ani, started):
    values = {"uniqueid": "1700000000.1", "ani": ani, "attestation": "A", "language": "en",
              "verified_how": "none", "account_id": None, "path": path, "outcome": None,
              "payment_id": None, "details": details, "started_at": started}

    def work(tx) -> tuple[int, None]:
        audit.append(tx, "test", "tx.roundtrip", None, **details)
        return tx.execute(INSERT_CALL, values).scalar_one(), None

    rid, _ = await db.run(work)
    async with db.session() as s:
        rec = await s.get(CallRecord, rid)
        entry = (await s.execute(select(AuditEntry).order_by(AuditEntry.id.desc())
                                 .limit(1))).scalar_one()
    assert rec is not None
    assert (rec.ani, rec.path, rec.details) == (ani, path, details)
    got = rec.started_at if rec.started_at.tzinfo else rec.started_at.replace(tzinfo=UTC)
    assert got == started
    assert entry.details == details


def test_sqlite_tx_refuses_plain_sql_strings():
    with pytest.raises(TypeError):
        SqliteTx(None).execute("SELECT 1")  # type: ignore[arg-type]
