"""Demo accounts for `ivr db seed --demo`: one of every case a call flow must handle.

=============  =======  ==================  ====  =====  ====  ========  ======================
Phone          Account  Name                Lang  ZIP    PIN   Balance   Card / case
=============  =======  ==================  ====  =====  ====  ========  ======================
+15551234567   100001   Alex Rivera         en    10001  1234  $84.17    Visa 4242, due in 14 d
+15551234568   100002   Sam Lee (home)      en    94105  2468  $45.00    Mastercard 4444; number
                                                                         has two accounts
+15551234568   100003   Sam Lee (business)  en    94105  2468  $120.50   Amex 0005
+15551234569   100004   Jordan Smith        en    60601  1357  $62.30    no card on file
+15551234570   100005   Casey Brown         en    73301  8642  $39.99    Visa 1881 expired 01/2023
+15551234571   100006   Morgan Davis        en    30301  9753  $0.00     Visa 4242, zero balance
+15551234572   100007   Taylor Wilson       en    02101  1111  $150.25   Visa 4242, 10 d past due
+15551234573   100008   María García        es    33101  4321  $73.40    Visa 4242, Spanish
+15551234574   100009   Riley Chen          en    98101  5555  $58.00    Visa 0341, always declined
                                                                         (insufficient funds)
=============  =======  ==================  ====  =====  ====  ========  ======================

Cards are sandbox tokens (see ivr.gateways.sandbox). Seeding only adds accounts that are not
there yet, so running it twice changes nothing.

:func:`reset_demo` (`ivr db seed --demo --reset`) puts the demo accounts back as seeded, so
a walk-through can be done again: balance, name, language, time zone, ZIP, PIN, lockout,
text opt-in, the card on file (made the default again) and one open statement (earlier open
ones are closed). History stays: payments, refunds, call records, callbacks and the audit
log are records of what happened and are never deleted. Other accounts are not touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.services.accounts import hash_pin
from ivr.storage import audit
from ivr.storage.db import Database
from ivr.storage.models import Account, Payment, PaymentMethod, PhoneNumber, Statement

_FUTURE = date.today().year + 3


@dataclass(frozen=True)
class Demo:
    phone: str
    account: str
    name: str
    language: str
    zip_code: str
    pin: str
    balance_minor: int
    due_in_days: int | None  # None: no open statement
    card: tuple[str, str, str, int, int] | None  # token, brand, last4, month, year
    time_zone: str = "America/New_York"


DEMO: tuple[Demo, ...] = (
    Demo("+15551234567", "100001", "Alex Rivera", "en", "10001", "1234", 8417, 14,
         ("tok_sandbox_approve", "visa", "4242", 12, _FUTURE)),
    Demo("+15551234568", "100002", "Sam Lee (home)", "en", "94105", "2468", 4500, 10,
         ("tok_sandbox_approve", "mastercard", "4444", 6, _FUTURE), "America/Los_Angeles"),
    Demo("+15551234568", "100003", "Sam Lee (business)", "en", "94105", "2468", 12050, 20,
         ("tok_sandbox_approve", "amex", "0005", 3, _FUTURE), "America/Los_Angeles"),
    Demo("+15551234569", "100004", "Jordan Smith", "en", "60601", "1357", 6230, 12, None,
         "America/Chicago"),
    Demo("+15551234570", "100005", "Casey Brown", "en", "73301", "8642", 3999, 9,
         ("tok_sandbox_expired_card", "visa", "1881", 1, 2023), "America/Chicago"),
    Demo("+15551234571", "100006", "Morgan Davis", "en", "30301", "9753", 0, None,
         ("tok_sandbox_approve", "visa", "4242", 12, _FUTURE)),
    Demo("+15551234572", "100007", "Taylor Wilson", "en", "02101", "1111", 15025, -10,
         ("tok_sandbox_approve", "visa", "4242", 12, _FUTURE)),
    Demo("+15551234573", "100008", "María García", "es", "33101", "4321", 7340, 14,
         ("tok_sandbox_approve", "visa", "4242", 12, _FUTURE)),
    Demo("+15551234574", "100009", "Riley Chen", "en", "98101", "5555", 5800, 14,
         ("tok_sandbox_insufficient_funds", "visa", "0341", 12, _FUTURE),
         "America/Los_Angeles"),
)


async def seed_demo(db: Database, today: date | None = None) -> tuple[int, int]:
    """Add missing demo accounts; returns (created, already present)."""
    today = today or date.today()
    created = present = 0
    async with db.write_session() as s:
        for d in DEMO:
            if (await s.execute(select(Account.id).where(
                    Account.account_number == d.account))).first():
                present += 1
                continue
            phone = (await s.execute(select(PhoneNumber).where(
                PhoneNumber.e164 == d.phone))).scalar_one_or_none()
            if phone is None:
                phone = PhoneNumber(e164=d.phone)
                s.add(phone)
            acct = Account(account_number=d.account, name=d.name, language=d.language,
                           time_zone=d.time_zone, zip_code=d.zip_code,
                           pin_hash=hash_pin(d.pin), balance_minor=d.balance_minor,
                           currency="USD", sms_opt_in=True)
            acct.phones.append(phone)
            s.add(acct)
            await s.flush()
            if d.card:
                token, brand, last4, month, year = d.card
                s.add(PaymentMethod(account_id=acct.id, token=token, brand=brand,
                                    last4=last4, exp_month=month, exp_year=year))
            if d.due_in_days is not None:
                due = today + timedelta(days=d.due_in_days)
                s.add(Statement(account_id=acct.id, amount_due_minor=d.balance_minor,
                                currency="USD", statement_date=due - timedelta(days=21),
                                due_date=due, status="open"))
            audit.record(s, "cli", "account.seeded", f"account:{acct.id}")
            created += 1
    return created, present


async def reset_demo(db: Database, today: date | None = None) -> tuple[int, int]:
    """Put every demo account back as seeded (see the module docstring); missing ones are
    added. Returns (reset, added)."""
    today = today or date.today()
    numbers = [d.account for d in DEMO]
    async with db.session() as s:
        existing = set((await s.execute(select(Account.account_number).where(
            Account.account_number.in_(numbers)))).scalars())
    added, _present = await seed_demo(db, today)
    reset = 0
    async with db.write_session() as s:
        for d in DEMO:
            if d.account not in existing:
                continue  # just seeded
            acct = (await s.execute(select(Account).where(
                Account.account_number == d.account).with_for_update())).scalar_one()
            acct.name, acct.language, acct.time_zone = d.name, d.language, d.time_zone
            acct.zip_code, acct.pin_hash = d.zip_code, hash_pin(d.pin)
            acct.balance_minor, acct.currency, acct.sms_opt_in = d.balance_minor, "USD", True
            acct.failed_attempts, acct.locked_until = 0, None
            await _reset_cards(s, acct.id, d)
            await s.execute(update(Statement).where(
                Statement.account_id == acct.id, Statement.status == "open"
            ).values(status="closed"))
            if d.due_in_days is not None:
                due = today + timedelta(days=d.due_in_days)
                s.add(Statement(account_id=acct.id, amount_due_minor=d.balance_minor,
                                currency="USD", statement_date=due - timedelta(days=21),
                                due_date=due, status="open"))
            audit.record(s, "cli", "account.demo_reset", f"account:{acct.id}")
            reset += 1
    return reset, added


async def _reset_cards(s: AsyncSession, account_id: int, d: Demo) -> None:
    """The demo card becomes the default again. Other cards are deleted, except those
    payments refer to (kept, no longer the default)."""
    cards = (await s.execute(select(PaymentMethod).where(
        PaymentMethod.account_id == account_id).order_by(PaymentMethod.id))).scalars().all()
    used = set((await s.execute(select(Payment.payment_method_id).where(
        Payment.account_id == account_id))).scalars())
    keep = next((c for c in cards if d.card is not None and (
        c.token, c.brand, c.last4, c.exp_month, c.exp_year) == d.card), None)
    for card in cards:
        if card is keep:
            continue
        card.is_default = False
        if card.id not in used:
            await s.delete(card)
    if d.card is not None and keep is None:
        token, brand, last4, month, year = d.card
        keep = PaymentMethod(account_id=account_id, token=token, brand=brand, last4=last4,
                             exp_month=month, exp_year=year)
        s.add(keep)
    if keep is not None:
        keep.is_default = True
