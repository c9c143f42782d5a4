"""Exactly-once charging of the card on file.

The order of events is what makes a charge happen at most once and never get lost:

1. validate and write the payment as ``pending`` with its idempotency key, and COMMIT,
   all while holding the account (so concurrent attempts on one account see each other);
2. call the gateway with that same key, outside any transaction;
3. record the outcome and move the balance in ONE transaction, only if the payment is still
   pending/unknown (so the reconciler and this path cannot both apply it).

If step 2 times out the payment is left ``unknown``; if the process dies between 2 and 3 it is
left ``pending``. Either way :mod:`ivr.services.reconcile` asks the gateway by key later. A
repeat with the same key returns the payment already made; the gateway is not called again.

Step 3 runs on the database's settling path (its own connection, ahead of other writers,
a longer bounded wait; see ivr.storage.db). If even that wait runs out, the payment stays
open for the reconciler and the caller is told it is being checked: a busy database must
never turn a charge the gateway approved into a failure the caller hears.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ivr.gateways.base import (
    REASONS,
    ChargeFailed,
    ChargeResult,
    Gateway,
    OutcomeUnknown,
    reason_for,
)
from ivr.services.accounts import default_card, local_today
from ivr.storage import audit
from ivr.storage.db import Database, DatabaseBusy
from ivr.storage.models import Account, Payment, Statement

log = logging.getLogger(__name__)

# Test-only hook: seconds to sleep after the gateway answered and before the outcome is
# committed, so a test can SIGKILL the process in exactly that window.
PAUSE_ENV = "STARPAY_TEST_PAUSE_AFTER_GATEWAY"

OPEN_STATES = ("pending", "unknown")
RejectReason = Literal["not_positive", "over_balance", "over_daily_limit", "no_card",
                       "card_expired", "key_conflict", "no_account"]
REJECT_WORDS: dict[str, str] = {
    "not_positive": "the amount must be more than zero",
    "over_balance": "the amount is more than the balance",
    "over_daily_limit": "the amount is over the daily payment limit for this account",
    "no_card": "there is no card on file for this account",
    "card_expired": "the card on file has expired",
    "key_conflict": "this request id was already used for a different payment",
    "no_account": "there is no such account",
}


@dataclass(frozen=True)
class Approved:
    payment_id: int
    amount_minor: int
    currency: str
    confirmation: str
    kind: Literal["approved"] = "approved"


@dataclass(frozen=True)
class Declined:
    payment_id: int
    amount_minor: int
    currency: str
    code: str
    reason: str  # plain words
    agent_required: bool = False  # the bank wants the card holder to authenticate
    kind: Literal["declined"] = "declined"


@dataclass(frozen=True)
class Pending:
    """We do not know yet; the reconciler will find out. Say: "your payment is being
    checked"; never say it failed (it may have gone through)."""

    payment_id: int
    amount_minor: int
    currency: str
    kind: Literal["pending"] = "pending"


@dataclass(frozen=True)
class Rejected:
    reason: RejectReason
    message: str
    kind: Literal["rejected"] = "rejected"


ChargeOutcome = Approved | Declined | Pending | Rejected
# Extra writes to commit atomically with a new pending payment: (session, payment id).
PendingHook = Callable[[AsyncSession, int], Awaitable[None]]


def confirmation_number(payment_id: int) -> str:
    """Digits only, 9 or more: the payment id padded to 8 digits plus a Luhn check digit
    (catches one wrong or swapped digit when a customer reads it back to an agent)."""
    body = f"{payment_id:08d}"
    return body + _luhn_digit(body)


def payment_id_from_confirmation(confirmation: str) -> int | None:
    c = confirmation.strip()
    if not c.isdigit() or len(c) < 9 or _luhn_digit(c[:-1]) != c[-1]:
        return None
    return int(c[:-1])


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def outcome_of(p: Payment) -> ChargeOutcome:
    """How a stored payment reads to the caller."""
    if p.state in ("approved", "refunded"):
        return Approved(p.id, p.amount_minor, p.currency, confirmation_number(p.id))
    if p.state in ("declined", "failed"):
        code = p.decline_code or "processing_error"
        return Declined(p.id, p.amount_minor, p.currency, code,
                        p.decline_reason or reason_for(code),
                        agent_required=code == "authentication_required")
    return Pending(p.id, p.amount_minor, p.currency)


@dataclass(frozen=True)
class PaymentView:
    id: int
    account_id: int
    account_number: str
    amount_minor: int
    currency: str
    state: str
    channel: str
    source_id: str | None
    idempotency_key: str
    processor_reference: str | None
    decline_code: str | None
    confirmation: str
    created_at: datetime
    updated_at: datetime


class PaymentService:
    def __init__(self, db: Database, gateway: Gateway, *, allow_overpay: bool = False,
                 daily_limit_minor: int = 500_000) -> None:
        self.db = db
        self.gateway = gateway
        self.allow_overpay = allow_overpay
        self.daily_limit_minor = daily_limit_minor

    async def charge(self, account_id: int, amount_minor: int, channel: str,
                     idempotency_key: str, source_id: str | None,
                     actor: str | None = None, *,
                     on_pending: PendingHook | None = None) -> ChargeOutcome:
        """Charge the account's default card once for this key; see the module docstring.

        ``on_pending`` runs inside the transaction that commits the pending payment (the
        call flow stores its call record there, so a crash mid-charge leaves one)."""
        actor = actor or channel
        if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) \
                or amount_minor <= 0:
            return Rejected("not_positive", REJECT_WORDS["not_positive"])
        if not idempotency_key or len(idempotency_key) > 255:
            raise ValueError("idempotency_key must be 1-255 characters")
        # No look-up by key before this: the locked transaction checks the key first thing
        # (a repeat is rare; one transaction fewer for every first attempt).
        try:
            created = await self._create_pending(account_id, amount_minor, channel,
                                                 idempotency_key, source_id, actor,
                                                 on_pending)
        except IntegrityError:
            # Another process inserted the same key between our check and our insert.
            existing = await self._by_key(idempotency_key)
            if existing is None:
                raise
            return self._replay(existing, account_id, amount_minor)
        if isinstance(created, Rejected | Approved | Declined | Pending):
            return created
        payment, token, customer = created
        return await self._call_gateway(payment, token, customer, actor)

    async def _by_key(self, key: str) -> Payment | None:
        async with self.db.session() as s:
            return (await s.execute(select(Payment).where(Payment.idempotency_key == key))
                    ).scalar_one_or_none()

    @staticmethod
    def _replay(p: Payment, account_id: int, amount_minor: int) -> ChargeOutcome:
        if (p.account_id, p.amount_minor) != (account_id, amount_minor):
            return Rejected("key_conflict", REJECT_WORDS["key_conflict"])
        return outcome_of(p)

    async def _create_pending(self, account_id: int, amount: int, channel: str, key: str,
                              source_id: str | None, actor: str,
                              on_pending: PendingHook | None = None
                              ) -> tuple[Payment, str, str | None] | ChargeOutcome:
        try:
            async with self.db.account_tx(account_id) as (s, acct):
                created = await self._validate_and_insert(s, acct, amount, channel, key,
                                                          source_id, actor)
                if on_pending is not None and isinstance(created, tuple):
                    await on_pending(s, created[0].id)
                return created
        except LookupError:
            # No such account; but a repeat of a key used on another account is a conflict.
            existing = await self._by_key(key)
            if existing is not None:
                return self._replay(existing, account_id, amount)
            return Rejected("no_account", REJECT_WORDS["no_account"])

    async def _validate_and_insert(self, s: AsyncSession, acct: Account, amount: int,
                                   channel: str, key: str, source_id: str | None, actor: str
                                   ) -> tuple[Payment, str, str | None] | ChargeOutcome:
        subject = f"account:{acct.id}"
        again = (await s.execute(select(Payment).where(Payment.idempotency_key == key))
                 ).scalar_one_or_none()
        if again is not None:  # a concurrent task with the same key got here first
            return self._replay(again, acct.id, amount)
        await s.refresh(acct, ["payment_methods"])
        card = default_card(acct)
        reason: RejectReason | None = None
        if card is None:
            reason = "no_card"
        elif card.expired(local_today(acct.time_zone)):
            reason = "card_expired"
        else:
            # Both limits in one statement: open payments against the balance, and today's
            # approved-or-open payments against the daily limit.
            since = _local_midnight_utc(acct.time_zone)
            open_ = Payment.state.in_(OPEN_STATES)
            today = Payment.state.in_(("approved", *OPEN_STATES)) & (
                Payment.created_at >= since)
            outstanding, today_total = (await s.execute(select(
                func.coalesce(func.sum(case((open_, Payment.amount_minor), else_=0)), 0),
                func.coalesce(func.sum(case((today, Payment.amount_minor), else_=0)), 0),
            ).where(Payment.account_id == acct.id, open_ | today))).one()
            if not self.allow_overpay and amount > acct.balance_minor - int(outstanding):
                reason = "over_balance"
            elif int(today_total) + amount > self.daily_limit_minor:
                reason = "over_daily_limit"
        if reason is not None:
            audit.record(s, actor, "payment.rejected", subject, reason=reason, amount=amount,
                         key=key)
            return Rejected(reason, REJECT_WORDS[reason])
        assert card is not None
        p = Payment(account_id=acct.id, payment_method_id=card.id, amount_minor=amount,
                    currency=acct.currency, state="pending", idempotency_key=key,
                    gateway=self.gateway.name, channel=channel, source_id=source_id)
        s.add(p)
        await s.flush()
        audit.record(s, actor, "payment.pending", f"payment:{p.id}", account=acct.id,
                     amount=amount, currency=acct.currency, channel=channel)
        return p, card.token, card.processor_customer

    async def _call_gateway(self, p: Payment, token: str, customer: str | None,
                            actor: str) -> ChargeOutcome:
        try:
            result = await self.gateway.charge(
                token, p.amount_minor, p.currency, p.idempotency_key,
                {"payment_id": str(p.id), "account_id": str(p.account_id)}, customer=customer)
        except OutcomeUnknown as exc:
            log.warning("payment %s: outcome unknown (%s); left for the reconciler", p.id, exc)
            return await _settle(p, mark_unknown(self.db, p.id, exc.reference, actor))
        except ChargeFailed as exc:
            return await _settle(p, mark_failed(self.db, p.id, exc.code, str(exc), actor))
        except Exception as exc:  # anything else: we cannot know whether money moved
            log.exception("payment %s: gateway error; left for the reconciler", p.id)
            return await _settle(p, mark_unknown(self.db, p.id, None, actor, str(exc)))
        if pause := os.environ.get(PAUSE_ENV):
            await asyncio.sleep(float(pause))
        return await _settle(p, apply_result(self.db, p.id, result, actor,
                                             account_id=p.account_id))

    async def refund(self, payment_id: int, actor: str = "agent") -> PaymentView:
        """Refund an approved payment in full and put the amount back on the balance."""
        async with self.db.session() as s:
            p = await s.get(Payment, payment_id)
            if p is None or p.state != "approved" or not p.processor_reference:
                raise ValueError(f"payment {payment_id} is not an approved payment")
        await self.gateway.refund(p.processor_reference, p.amount_minor,
                                  f"refund:{p.idempotency_key}")
        async with self.db.account_tx(p.account_id) as (s, acct):
            p = await s.get(Payment, payment_id, with_for_update=True)
            assert p is not None
            if p.state == "approved":
                p.state = "refunded"
                p.refunded_minor = p.amount_minor
                acct.balance_minor += p.amount_minor
                audit.record(s, actor, "payment.refunded", f"payment:{p.id}",
                             amount=p.amount_minor)
        return (await self.list(payment_id=payment_id))[0]

    async def list(self, *, account_number: str | None = None, state: str | None = None,
                   payment_id: int | None = None, limit: int = 50) -> list[PaymentView]:
        async with self.db.session() as s:
            q = select(Payment, Account.account_number).join(
                Account, Account.id == Payment.account_id)
            if account_number:
                q = q.where(Account.account_number == account_number)
            if state:
                q = q.where(Payment.state == state)
            if payment_id is not None:
                q = q.where(Payment.id == payment_id)
            rows = (await s.execute(q.order_by(Payment.id.desc()).limit(limit))).all()
            return [_view(p, num) for p, num in rows]


async def _settle(p: Payment, recording: Awaitable[Payment]) -> ChargeOutcome:
    """The outcome once recorded; Pending if the database stayed too busy to record it.

    The payment is then still pending in the database (committed before the gateway call),
    so the reconciler settles it from the gateway's ledger once min_age has passed."""
    try:
        return outcome_of(await recording)
    except DatabaseBusy:
        log.error("payment %s: the gateway answered but the database was too busy to record "
                  "it; left pending for the reconciler (the caller hears it is being checked)",
                  p.id)
        return Pending(p.id, p.amount_minor, p.currency)


def _view(p: Payment, account_number: str) -> PaymentView:
    return PaymentView(p.id, p.account_id, account_number, p.amount_minor, p.currency,
                       p.state, p.channel, p.source_id, p.idempotency_key,
                       p.processor_reference, p.decline_code, confirmation_number(p.id),
                       p.created_at, p.updated_at)


def _local_midnight_utc(time_zone: str) -> datetime:
    today = local_today(time_zone)
    try:
        tz = ZoneInfo(time_zone)
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    return datetime.combine(today, time(0), tzinfo=tz).astimezone(UTC)


async def _account_of(db: Database, payment_id: int) -> int:
    async with db.session() as s:
        account_id = (await s.execute(select(Payment.account_id).where(
            Payment.id == payment_id))).scalar_one()
        return int(account_id)


async def apply_result(db: Database, payment_id: int, result: ChargeResult,
                       actor: str, *, account_id: int | None = None) -> Payment:
    """Record the gateway's answer and move the balance in one transaction. A payment that
    is no longer pending/unknown is left alone (someone else settled it first).

    ``account_id``: the payment's account when the caller knows it (saves a read)."""
    if account_id is None:
        account_id = await _account_of(db, payment_id)
    async with db.account_tx(account_id, settle=True) as (s, acct):
        p = (await s.execute(select(Payment).where(Payment.id == payment_id)
                             .with_for_update())).scalar_one()
        if p.account_id != account_id:
            raise ValueError(f"payment {payment_id} is not on account {account_id}")
        if p.state not in OPEN_STATES:
            return p
        p.processor_reference = result.reference or p.processor_reference
        if result.approved:
            if result.amount_minor != p.amount_minor:
                # Never seen; if it happens a person must look, so do not guess.
                log.error("payment %s: gateway amount %s != ours %s", p.id,
                          result.amount_minor, p.amount_minor)
            p.state = "approved"
            acct.balance_minor -= p.amount_minor
            if acct.balance_minor <= 0:
                await _close_statements(s, acct.id)
        else:
            p.state = "declined"
            p.decline_code = result.decline_code
            p.decline_reason = (result.reason or reason_for(result.decline_code))[:255]
        audit.record(s, actor, f"payment.{p.state}", f"payment:{p.id}",
                     reference=p.processor_reference, code=p.decline_code,
                     balance=acct.balance_minor)
        return p


async def _close_statements(s: AsyncSession, account_id: int) -> None:
    await s.execute(update(Statement).where(
        Statement.account_id == account_id, Statement.status == "open"
    ).values(status="paid").execution_options(synchronize_session=False))


async def mark_unknown(db: Database, payment_id: int, reference: str | None, actor: str,
                       note: str | None = None) -> Payment:
    # Settling path; on SQLite a read-then-write must BEGIN IMMEDIATE anyway.
    async with db.write_session(settle=True) as s:
        p = (await s.execute(select(Payment).where(Payment.id == payment_id)
                             .with_for_update())).scalar_one()
        if p.state == "pending":
            p.state = "unknown"
            p.processor_reference = reference or p.processor_reference
            audit.record(s, actor, "payment.unknown", f"payment:{p.id}", note=note)
        return p


async def mark_failed(db: Database, payment_id: int, code: str, message: str,
                      actor: str) -> Payment:
    """Definitely not charged (the processor refused or never saw it); balance unchanged."""
    # Settling path; on SQLite a read-then-write must BEGIN IMMEDIATE anyway.
    async with db.write_session(settle=True) as s:
        p = (await s.execute(select(Payment).where(Payment.id == payment_id)
                             .with_for_update())).scalar_one()
        if p.state in OPEN_STATES:
            p.state = "failed"
            p.decline_code = code[:64]
            p.decline_reason = reason_for(code) if code in REASONS else message[:255]
            audit.record(s, actor, "payment.failed", f"payment:{p.id}", code=code)
        return p

