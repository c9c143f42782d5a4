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

Step 1 is committed durably (flushed to disk) before the gateway is called; step 3 is not
flushed on its own (``durable=False``): it survives a crash of the process, and if a power
cut loses it the payment is simply still open, which the reconciler settles from the
gateway by its key, as after a crash between 2 and 3.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Row, bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ivr.gateways.base import (
    REASONS,
    ChargeFailed,
    ChargeResult,
    Gateway,
    OutcomeUnknown,
    reason_for,
)
from ivr.services.accounts import local_today
from ivr.services.confirmation import confirmation_number
from ivr.services.confirmation import (  # re-exported: callers look for it here
    payment_id_from_confirmation as payment_id_from_confirmation,
)
from ivr.storage import audit
from ivr.storage.db import Database, DatabaseBusy, lock_account
from ivr.storage.models import Account, Payment, PaymentMethod, Statement
from ivr.storage.tx import Tx

log = logging.getLogger(__name__)

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
# Extra writes to commit atomically with a new pending payment: (connection, payment id).
# Synchronous Core code: it runs inside the transaction's body (see Database.run).
PendingHook = Callable[[Tx, int], None]


class StoredPayment(Protocol):
    """What the settling functions return: a row of _PAYMENT_COLS (or a Payment)."""

    id: int
    account_id: int
    amount_minor: int
    currency: str
    state: str
    decline_code: str | None
    decline_reason: str | None
    processor_reference: str | None


@dataclass(frozen=True)
class _NewPayment:
    """A pending payment just committed, with what the gateway call needs."""

    id: int
    account_id: int
    amount_minor: int
    currency: str
    idempotency_key: str
    token: str
    customer: str | None


def outcome_of(p: StoredPayment) -> ChargeOutcome:
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
        if isinstance(created, _NewPayment):
            return await self._call_gateway(created, actor)
        return created

    async def _by_key(self, key: str) -> Row[Any] | None:
        return await self.db.run(
            lambda tx: tx.execute(_BY_KEY, {"key": key}).first(), write=False)

    @staticmethod
    def _replay(p: StoredPayment, account_id: int, amount_minor: int) -> ChargeOutcome:
        if (p.account_id, p.amount_minor) != (account_id, amount_minor):
            return Rejected("key_conflict", REJECT_WORDS["key_conflict"])
        return outcome_of(p)

    async def _create_pending(self, account_id: int, amount: int, channel: str, key: str,
                              source_id: str | None, actor: str,
                              on_pending: PendingHook | None = None
                              ) -> _NewPayment | ChargeOutcome:
        def work(tx: Tx) -> _NewPayment | ChargeOutcome:
            created = self._validate_and_insert(tx, account_id, amount, channel, key,
                                                source_id, actor)
            if on_pending is not None and isinstance(created, _NewPayment):
                on_pending(tx, created.id)
            return created

        try:
            return await self.db.run(work, account_id=account_id)
        except LookupError:
            # No such account; but a repeat of a key used on another account is a conflict.
            existing = await self._by_key(key)
            if existing is not None:
                return self._replay(existing, account_id, amount)
            return Rejected("no_account", REJECT_WORDS["no_account"])

    def _validate_and_insert(self, tx: Tx, account_id: int, amount: int,
                             channel: str, key: str, source_id: str | None, actor: str
                             ) -> _NewPayment | ChargeOutcome:
        acct = tx.execute(_ACCOUNT_AND_CARD, {"id": account_id}).first()
        if acct is None:
            raise LookupError(f"no account with id {account_id}")
        subject = f"account:{account_id}"
        again = tx.execute(_BY_KEY, {"key": key}).first()
        if again is not None:  # a concurrent task with the same key got here first
            return self._replay(again, account_id, amount)
        today = local_today(acct.time_zone)
        reason: RejectReason | None = None
        if acct.card_id is None:
            reason = "no_card"
        elif (acct.exp_year, acct.exp_month) < (today.year, today.month):
            reason = "card_expired"  # a card is good through the last day of its month
        else:
            outstanding, today_total = tx.execute(_TOTALS, {
                "id": account_id, "since": _local_midnight_utc(acct.time_zone)}).one()
            if not self.allow_overpay and amount > acct.balance_minor - int(outstanding):
                reason = "over_balance"
            elif int(today_total) + amount > self.daily_limit_minor:
                reason = "over_daily_limit"
        if reason is not None:
            audit.append(tx, actor, "payment.rejected", subject, reason=reason,
                         amount=amount, key=key)
            return Rejected(reason, REJECT_WORDS[reason])
        pid = tx.execute(_INSERT_PAYMENT, {
            "account_id": account_id, "payment_method_id": acct.card_id, "amount_minor": amount,
            "currency": acct.currency, "state": "pending", "idempotency_key": key,
            "gateway": self.gateway.name, "channel": channel, "source_id": source_id,
        }).scalar_one()
        audit.append(tx, actor, "payment.pending", f"payment:{pid}", account=account_id,
                     amount=amount, currency=acct.currency, channel=channel)
        return _NewPayment(pid, account_id, amount, acct.currency, key, acct.token,
                           acct.processor_customer)

    async def _call_gateway(self, p: _NewPayment, actor: str) -> ChargeOutcome:
        try:
            result = await self.gateway.charge(
                p.token, p.amount_minor, p.currency, p.idempotency_key,
                {"payment_id": str(p.id), "account_id": str(p.account_id)},
                customer=p.customer)
        except OutcomeUnknown as exc:
            log.warning("payment %s: outcome unknown (%s); left for the reconciler", p.id, exc)
            return await _settle(p, mark_unknown(self.db, p.id, exc.reference, actor))
        except ChargeFailed as exc:
            return await _settle(p, mark_failed(self.db, p.id, exc.code, str(exc), actor))
        except Exception as exc:  # anything else: we cannot know whether money moved
            log.exception("payment %s: gateway error; left for the reconciler", p.id)
            return await _settle(p, mark_unknown(self.db, p.id, None, actor, str(exc)))
        return await _settle(p, apply_result(self.db, p.id, result, actor,
                                             account_id=p.account_id))

    async def refund(self, payment_id: int, actor: str = "agent") -> PaymentView:
        """Refund what is left of an approved payment, once (ivr.services.refunds does
        refunds, partial ones included; this keeps the old whole-payment call)."""
        from ivr.services.refunds import RefundRejected, RefundService

        out = await RefundService(self.db, self.gateway).refund(
            payment_id, None, f"refund:{payment_id}:rest", actor)
        if isinstance(out, RefundRejected):
            raise ValueError(out.message)
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


async def _settle(p: _NewPayment, recording: Awaitable[StoredPayment]) -> ChargeOutcome:
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
    def work(tx: Tx) -> int:
        row = tx.execute(_BY_ID, {"pid": payment_id}).first()
        if row is None:
            raise LookupError(f"no payment with id {payment_id}")
        return int(row.account_id)
    return await db.run(work, write=False)


async def apply_result(db: Database, payment_id: int, result: ChargeResult,
                       actor: str, *, account_id: int | None = None) -> StoredPayment:
    """Record the gateway's answer and move the balance in one transaction. A payment that
    is no longer pending/unknown is left alone (someone else settled it first).

    ``account_id``: the payment's account when the caller knows it (saves a read)."""
    if account_id is None:
        account_id = await _account_of(db, payment_id)
    acct_id: int = account_id

    def work(tx: Tx) -> StoredPayment:
        balance: int | None = None
        if not result.approved or tx.dialect != "sqlite":
            # PostgreSQL: the account's row lock first, then the payment's, the order every
            # writer takes them in (on SQLite the write turn is the lock, and an approval
            # reads the new balance from the debit below).
            balance = lock_account(tx, acct_id)
        if result.approved:
            values = {"new_state": "approved", "code": None, "reason": None}
        else:
            values = {"new_state": "declined", "code": result.decline_code,
                      "reason": (result.reason or reason_for(result.decline_code))[:255]}
        p = tx.execute(_SETTLE_OPEN, {"pid": payment_id, "acct": acct_id,
                                        "ref": result.reference, **values}).first()
        if p is None:  # settled already, or not this account's
            p = _existing(tx, payment_id)
            if p.account_id != acct_id:
                raise ValueError(f"payment {payment_id} is not on account {acct_id}")
            return p
        if result.approved:
            if result.amount_minor != p.amount_minor:
                # Never seen; if it happens a person must look, so do not guess.
                log.error("payment %s: gateway amount %s != ours %s", p.id,
                          result.amount_minor, p.amount_minor)
            balance = tx.execute(_DEBIT, {"acct": acct_id, "amount": p.amount_minor}
                                   ).scalar_one()
            if balance <= 0:
                tx.execute(_CLOSE_STATEMENTS, {"acct": acct_id})
        audit.append(tx, actor, f"payment.{p.state}", f"payment:{p.id}",
                     reference=p.processor_reference, code=p.decline_code, balance=balance)
        return p

    # Not durable: if a power cut loses this commit, the payment is still pending (durably,
    # before the gateway was called) and the reconciler settles it from the gateway.
    return await db.run(work, settle=True, durable=False, account_id=acct_id)


async def mark_unknown(db: Database, payment_id: int, reference: str | None, actor: str,
                       note: str | None = None) -> StoredPayment:
    """The gateway's answer is unknown: leave it for the reconciler to ask."""
    def work(tx: Tx) -> StoredPayment:
        p = tx.execute(_MARK_UNKNOWN, {"pid": payment_id, "ref": reference}).first()
        if p is None:
            return _existing(tx, payment_id)
        audit.append(tx, actor, "payment.unknown", f"payment:{p.id}", note=note)
        return p

    return await db.run(work, settle=True, durable=False)  # lost: still pending, as good


async def mark_failed(db: Database, payment_id: int, code: str, message: str,
                      actor: str) -> StoredPayment:
    """Definitely not charged (the processor refused or never saw it); balance unchanged."""
    reason = reason_for(code) if code in REASONS else message[:255]

    def work(tx: Tx) -> StoredPayment:
        p = tx.execute(_MARK_FAILED, {"pid": payment_id, "code": code[:64],
                                      "reason": reason}).first()
        if p is None:
            return _existing(tx, payment_id)
        audit.append(tx, actor, "payment.failed", f"payment:{p.id}", code=code)
        return p

    # Not durable: if lost, the reconciler asks the gateway, which never charged it.
    return await db.run(work, settle=True, durable=False)


def _existing(tx: Tx, payment_id: int) -> StoredPayment:
    p = tx.execute(_BY_ID, {"pid": payment_id}).first()
    if p is None:
        raise LookupError(f"no payment with id {payment_id}")
    return p


# The statements of the charge and settle paths, built once: a statement object reused
# keeps its compiled form in SQLAlchemy's cache, so a call does not rebuild them.
_PAYMENT_COLS = (Payment.id, Payment.account_id, Payment.amount_minor, Payment.currency,
                 Payment.state, Payment.decline_code, Payment.decline_reason,
                 Payment.processor_reference)
_BY_KEY = select(*_PAYMENT_COLS).where(Payment.idempotency_key == bindparam("key"))
_BY_ID = select(*_PAYMENT_COLS).where(Payment.id == bindparam("pid"))
# The account (row-locked) and its card on file in one statement; default_card()'s rule:
# the newest default card, else the newest card.
_ACCOUNT_AND_CARD = (
    select(Account.balance_minor, Account.currency, Account.time_zone,
           PaymentMethod.id.label("card_id"), PaymentMethod.token,
           PaymentMethod.processor_customer, PaymentMethod.exp_month, PaymentMethod.exp_year)
    .outerjoin(PaymentMethod, PaymentMethod.account_id == Account.id)
    .where(Account.id == bindparam("id"))
    .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id.desc()).limit(1)
    .with_for_update(of=Account))
# Both limits in one statement: open payments against the balance, and today's
# approved-or-open payments against the daily limit.
_OPEN = Payment.state.in_(OPEN_STATES)
_TODAY = Payment.state.in_(("approved", *OPEN_STATES)) & (
    Payment.created_at >= bindparam("since"))
_TOTALS = select(
    func.coalesce(func.sum(case((_OPEN, Payment.amount_minor), else_=0)), 0),
    func.coalesce(func.sum(case((_TODAY, Payment.amount_minor), else_=0)), 0),
).where(Payment.account_id == bindparam("id"), _OPEN | _TODAY)
_INSERT_PAYMENT = insert(Payment).returning(Payment.id)
_SETTLE_OPEN = (update(Payment)
                .where(Payment.id == bindparam("pid"), Payment.account_id == bindparam("acct"),
                       Payment.state.in_(OPEN_STATES))
                .values(state=bindparam("new_state"), decline_code=bindparam("code"),
                        decline_reason=bindparam("reason"),
                        processor_reference=func.coalesce(bindparam("ref"),
                                                          Payment.processor_reference))
                .returning(*_PAYMENT_COLS))
_MARK_UNKNOWN = (update(Payment)
                 .where(Payment.id == bindparam("pid"), Payment.state == "pending")
                 .values(state="unknown", processor_reference=func.coalesce(
                     bindparam("ref"), Payment.processor_reference))
                 .returning(*_PAYMENT_COLS))
_MARK_FAILED = (update(Payment)
                .where(Payment.id == bindparam("pid"), Payment.state.in_(OPEN_STATES))
                .values(state="failed", decline_code=bindparam("code"),
                        decline_reason=bindparam("reason"))
                .returning(*_PAYMENT_COLS))
_DEBIT = (update(Account).where(Account.id == bindparam("acct"))
          .values(balance_minor=Account.balance_minor - bindparam("amount"))
          .returning(Account.balance_minor))
_CLOSE_STATEMENTS = (update(Statement)
                     .where(Statement.account_id == bindparam("acct"), Statement.status == "open")
                     .values(status="paid"))
