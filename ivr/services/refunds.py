"""Exactly-once refunds, whole or partial, of an approved payment.

The same order of events as a charge (see ivr.services.payments):

1. holding the account and the payment's row, check what is left to refund (the payment's
   amount less every refund that succeeded or may still succeed), write the refund as
   ``pending`` with its idempotency key, and COMMIT durably;
2. ask the gateway to refund with that key, outside any transaction;
3. record the answer in one transaction, only if the refund is still pending/unknown: on
   success the amount goes back on the account's balance and onto the payment's
   ``refunded_minor``; the payment becomes ``refunded`` once all of it is refunded (a
   partly refunded payment stays ``approved``, its refunded amount beside it).

A timeout leaves the refund ``unknown`` (and a crash between 2 and 3 leaves it ``pending``):
:func:`reconcile_refunds` (run by every reconcile pass) looks the key up at the gateway and
settles it, or sends the same request again with the same key when the processor never saw
it. A repeat with a key already used returns that refund; the gateway is not asked again.
Because open refunds count against what is left, the refunds of a payment can never add up
to more than it, whichever keys are used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import bindparam, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ivr.gateways.base import ChargeFailed, Gateway, GatewayError, OutcomeUnknown, RefundResult
from ivr.services.confirmation import confirmation_number
from ivr.storage import audit
from ivr.storage.db import Database, lock_account
from ivr.storage.models import Account, Payment
from ivr.storage.refunds import REFUND_HOLDING_STATES, Refund
from ivr.storage.tx import Tx

log = logging.getLogger(__name__)

OPEN_REFUND_STATES = ("pending", "unknown")
RefundRejectReason = Literal["no_payment", "not_refundable", "not_positive", "over_refund",
                             "key_conflict"]


@dataclass(frozen=True)
class RefundView:
    id: int
    payment_id: int
    confirmation: str  # the payment's
    amount_minor: int
    currency: str
    state: str
    idempotency_key: str
    processor_reference: str | None
    failure_code: str | None
    failure_reason: str | None
    actor: str
    created_at: datetime
    updated_at: datetime
    replayed: bool = False  # an earlier request with this key; the gateway was not asked


@dataclass(frozen=True)
class RefundRejected:
    reason: RefundRejectReason
    message: str


RefundOutcome = RefundView | RefundRejected


@dataclass(frozen=True)
class _NewRefund:
    id: int
    account_id: int
    charge_reference: str
    amount_minor: int
    idempotency_key: str


@dataclass
class RefundReconcileReport:
    checked: int = 0
    succeeded: int = 0
    failed: int = 0
    still_open: int = 0


class RefundService:
    def __init__(self, db: Database, gateway: Gateway) -> None:
        self.db = db
        self.gateway = gateway

    async def refund(self, payment_id: int, amount_minor: int | None, idempotency_key: str,
                     actor: str = "cli") -> RefundOutcome:
        """Refund ``amount_minor`` of the payment (None: all that is left) once for this
        key; see the module docstring."""
        if amount_minor is not None and (isinstance(amount_minor, bool)
                                         or not isinstance(amount_minor, int)
                                         or amount_minor <= 0):
            return RefundRejected("not_positive", "the refund must be more than zero")
        if not idempotency_key or len(idempotency_key) > 255:
            raise ValueError("idempotency_key must be 1-255 characters")
        account_id = await self.db.run(
            lambda tx: tx.execute(_PAYMENT_ACCOUNT, {"pid": payment_id}).scalar_one_or_none(),
            write=False)
        if account_id is None:
            return RefundRejected("no_payment", f"there is no payment {payment_id}")

        def work(tx: Tx) -> _NewRefund | RefundOutcome:
            return _validate_and_insert(tx, int(account_id), payment_id, amount_minor,
                                        idempotency_key, actor)

        try:
            created = await self.db.run(work, account_id=int(account_id))
        except IntegrityError:
            # Another process inserted the same key between our check and our insert.
            again = await self.by_key(idempotency_key)
            if again is None:
                raise
            return _replay(again, payment_id, amount_minor)
        if not isinstance(created, _NewRefund):
            return created
        return await self._call_gateway(created, actor)

    async def _call_gateway(self, r: _NewRefund, actor: str) -> RefundView:
        try:
            result = await self.gateway.refund(r.charge_reference, r.amount_minor,
                                               r.idempotency_key)
        except OutcomeUnknown as exc:
            log.warning("refund %s: outcome unknown (%s); left for the reconciler", r.id, exc)
            return await mark_unknown(self.db, r.id, exc.reference, actor)
        except ChargeFailed as exc:
            return await mark_failed(self.db, r.id, exc.code, str(exc), actor)
        except Exception as exc:  # we cannot know whether money moved
            log.exception("refund %s: gateway error; left for the reconciler", r.id)
            return await mark_unknown(self.db, r.id, None, actor, str(exc))
        return await apply_refund_result(self.db, r.id, result, actor, account_id=r.account_id)

    async def by_key(self, key: str) -> RefundView | None:
        row = await self.db.run(lambda tx: tx.execute(_BY_KEY, {"key": key}).first(),
                                write=False)
        return _view(row) if row else None

    async def of_payment(self, payment_id: int) -> list[RefundView]:
        rows = await self.db.run(
            lambda tx: tx.execute(_OF_PAYMENT, {"pid": payment_id}).all(), write=False)
        return [_view(r) for r in rows]


def _validate_and_insert(tx: Tx, account_id: int, payment_id: int, amount: int | None,
                         key: str, actor: str) -> _NewRefund | RefundOutcome:
    # The account's row lock, then the payment's: the order every writer takes them in.
    lock_account(tx, account_id)
    p = tx.execute(_PAYMENT_FOR_UPDATE, {"pid": payment_id}).first()
    if p is None or p.account_id != account_id:
        return RefundRejected("no_payment", f"there is no payment {payment_id}")
    again = tx.execute(_BY_KEY, {"key": key}).first()
    if again is not None:
        return _replay(_view(again), payment_id, amount)
    if p.state not in ("approved", "refunded") or not p.processor_reference:
        return RefundRejected("not_refundable",
                              f"payment {payment_id} is {p.state}: only an approved payment "
                              "can be refunded")
    held = int(tx.execute(_HELD, {"pid": payment_id}).scalar_one())
    left = p.amount_minor - held
    wanted = left if amount is None else amount
    if wanted <= 0 or wanted > left:
        audit.append(tx, actor, "refund.rejected", f"payment:{payment_id}",
                     amount=wanted, left=left, key=key)
        return RefundRejected("over_refund", _over_words(p.amount_minor, held, p.currency))
    rid = tx.execute(_INSERT, {
        "payment_id": payment_id, "amount_minor": wanted, "currency": p.currency,
        "state": "pending", "idempotency_key": key, "actor": actor[:64]}).scalar_one()
    audit.append(tx, actor, "refund.pending", f"refund:{rid}", payment=payment_id,
                 amount=wanted, currency=p.currency)
    return _NewRefund(rid, account_id, p.processor_reference, wanted, key)


def _over_words(amount: int, held: int, currency: str) -> str:
    from ivr.money import format_minor

    if held >= amount:
        return "this payment is already refunded in full (or a refund of the rest is open)"
    return (f"only {format_minor(amount - held, currency)} of {format_minor(amount, currency)}"
            f" is left to refund ({format_minor(held, currency)} refunded or in progress)")


def _replay(r: RefundView, payment_id: int, amount: int | None) -> RefundOutcome:
    if r.payment_id != payment_id or (amount is not None and amount != r.amount_minor):
        return RefundRejected("key_conflict",
                              "this request id was already used for a different refund")
    return RefundView(**{**r.__dict__, "replayed": True})


async def apply_refund_result(db: Database, refund_id: int, result: RefundResult, actor: str,
                              *, account_id: int | None = None) -> RefundView:
    """Record the gateway's answer; on success move the money back, in one transaction.
    A refund no longer pending/unknown is left alone (someone settled it first)."""
    if result.status == "failed":
        return await mark_failed(db, refund_id, "refund_failed",
                                 "the processor could not make the refund", actor)
    if result.status == "pending":  # accepted, not final: the reconciler asks again
        return await mark_unknown(db, refund_id, result.reference, actor,
                                  "the processor has not finished the refund")
    if account_id is None:
        account_id = await db.run(
            lambda tx: _account_of_refund(tx, refund_id), write=False)
    acct: int = account_id

    def work(tx: Tx) -> RefundView:
        balance = lock_account(tx, acct)
        r = tx.execute(_SUCCEED, {"rid": refund_id, "ref": result.reference}).first()
        if r is None:
            return _existing(tx, refund_id)
        if result.amount_minor != r.amount_minor:
            # Never seen; if it happens a person must look, so do not guess.
            log.error("refund %s: gateway amount %s != ours %s", r.id, result.amount_minor,
                      r.amount_minor)
        tx.execute(_PAYMENT_REFUNDED, {"pid": r.payment_id, "amount": r.amount_minor})
        balance = tx.execute(_CREDIT, {"acct": acct, "amount": r.amount_minor}).scalar_one()
        audit.append(tx, actor, "refund.succeeded", f"refund:{r.id}", payment=r.payment_id,
                     amount=r.amount_minor, reference=result.reference, balance=balance)
        return _existing(tx, refund_id)

    return await db.run(work, settle=True, account_id=acct)


async def mark_unknown(db: Database, refund_id: int, reference: str | None, actor: str,
                       note: str | None = None) -> RefundView:
    def work(tx: Tx) -> RefundView:
        if tx.execute(_MARK_UNKNOWN, {"rid": refund_id, "ref": reference}).rowcount:
            audit.append(tx, actor, "refund.unknown", f"refund:{refund_id}", note=note)
        return _existing(tx, refund_id)

    return await db.run(work, settle=True)


async def mark_failed(db: Database, refund_id: int, code: str, message: str,
                      actor: str) -> RefundView:
    """Definitely not refunded; the amount is free to refund again."""
    def work(tx: Tx) -> RefundView:
        if tx.execute(_MARK_FAILED, {"rid": refund_id, "code": code[:64],
                                     "reason": message[:255]}).rowcount:
            audit.append(tx, actor, "refund.failed", f"refund:{refund_id}", code=code)
        return _existing(tx, refund_id)

    return await db.run(work, settle=True)


async def reconcile_refunds(db: Database, gateway: Gateway, *,
                            min_age: timedelta = timedelta(minutes=5),
                            now: datetime | None = None, limit: int = 500,
                            actor: str = "reconciler") -> RefundReconcileReport:
    """Settle open refunds: look the key up at the gateway; if the processor never saw it,
    send the same refund again with the same key (the request stands, and the key keeps a
    resend from refunding twice). Pending refunds younger than ``min_age`` are left alone
    (their command may still be waiting for the gateway). Two reconcilers at once are
    harmless: both ask by the same key and settling changes only a refund still open."""
    now = now or datetime.now(UTC)
    report = RefundReconcileReport()
    open_refunds = _OPEN.limit(limit)
    rows = await db.run(lambda tx: tx.execute(open_refunds, {"gw": gateway.name}).all(),
                        write=False)
    for r in rows:
        created = r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=UTC)
        if r.state == "pending" and now - created < min_age:
            continue
        report.checked += 1
        try:
            result = await gateway.lookup_refund(r.charge_reference, r.idempotency_key)
            if result is None:
                result = await gateway.refund(r.charge_reference, r.amount_minor,
                                              r.idempotency_key)
        except ChargeFailed as exc:
            await mark_failed(db, r.id, exc.code, str(exc), actor)
            report.failed += 1
            continue
        except (OutcomeUnknown, GatewayError) as exc:
            log.warning("reconcile refund %s: the gateway did not answer (%s); will retry",
                        r.id, exc)
            report.still_open += 1
            continue
        view = await apply_refund_result(db, r.id, result, actor, account_id=r.account_id)
        if view.state == "succeeded":
            report.succeeded += 1
        elif view.state == "failed":
            report.failed += 1
        else:
            report.still_open += 1
    if report.checked:
        log.info("reconcile refunds: %s", report)
    return report


def _account_of_refund(tx: Tx, refund_id: int) -> int:
    acct = tx.execute(_REFUND_ACCOUNT, {"rid": refund_id}).scalar_one_or_none()
    if acct is None:
        raise LookupError(f"no refund with id {refund_id}")
    return int(acct)


def _existing(tx: Tx, refund_id: int) -> RefundView:
    row = tx.execute(_BY_ID, {"rid": refund_id}).first()
    if row is None:
        raise LookupError(f"no refund with id {refund_id}")
    return _view(row)


def _view(r: Any) -> RefundView:
    return RefundView(r.id, r.payment_id, confirmation_number(r.payment_id), r.amount_minor,
                      r.currency, r.state, r.idempotency_key, r.processor_reference,
                      r.failure_code, r.failure_reason, r.actor, r.created_at, r.updated_at)


_REFUND_COLS = (Refund.id, Refund.payment_id, Refund.amount_minor, Refund.currency,
                Refund.state, Refund.idempotency_key, Refund.processor_reference,
                Refund.failure_code, Refund.failure_reason, Refund.actor, Refund.created_at,
                Refund.updated_at)
_BY_KEY = select(*_REFUND_COLS).where(Refund.idempotency_key == bindparam("key"))
_BY_ID = select(*_REFUND_COLS).where(Refund.id == bindparam("rid"))
_OF_PAYMENT = (select(*_REFUND_COLS).where(Refund.payment_id == bindparam("pid"))
               .order_by(Refund.id))
_PAYMENT_ACCOUNT = select(Payment.account_id).where(Payment.id == bindparam("pid"))
_REFUND_ACCOUNT = (select(Payment.account_id).join(Refund, Refund.payment_id == Payment.id)
                   .where(Refund.id == bindparam("rid")))
_PAYMENT_FOR_UPDATE = (select(Payment.id, Payment.account_id, Payment.amount_minor,
                              Payment.currency, Payment.state, Payment.processor_reference)
                       .where(Payment.id == bindparam("pid")).with_for_update())
_HELD = (select(func.coalesce(func.sum(Refund.amount_minor), 0))
         .where(Refund.payment_id == bindparam("pid"),
                Refund.state.in_(REFUND_HOLDING_STATES)))
_INSERT = insert(Refund).returning(Refund.id)
_SUCCEED = (update(Refund)
            .where(Refund.id == bindparam("rid"), Refund.state.in_(OPEN_REFUND_STATES))
            .values(state="succeeded",
                    processor_reference=func.coalesce(bindparam("ref"),
                                                      Refund.processor_reference))
            .returning(Refund.id, Refund.payment_id, Refund.amount_minor))
_MARK_UNKNOWN = (update(Refund)
                 .where(Refund.id == bindparam("rid"), Refund.state.in_(OPEN_REFUND_STATES))
                 .values(state="unknown",
                         processor_reference=func.coalesce(bindparam("ref"),
                                                           Refund.processor_reference)))
_MARK_FAILED = (update(Refund)
                .where(Refund.id == bindparam("rid"), Refund.state.in_(OPEN_REFUND_STATES))
                .values(state="failed", failure_code=bindparam("code"),
                        failure_reason=bindparam("reason")))
_NEW_REFUNDED = Payment.refunded_minor + bindparam("amount")
_PAYMENT_REFUNDED = (update(Payment).where(Payment.id == bindparam("pid"))
                     .values(refunded_minor=_NEW_REFUNDED,
                             state=case((_NEW_REFUNDED >= Payment.amount_minor, "refunded"),
                                        else_=Payment.state)))
_CREDIT = (update(Account).where(Account.id == bindparam("acct"))
           .values(balance_minor=Account.balance_minor + bindparam("amount"))
           .returning(Account.balance_minor))
_OPEN = (select(Refund.id, Refund.amount_minor, Refund.state, Refund.idempotency_key,
                Refund.created_at, Payment.processor_reference.label("charge_reference"),
                Payment.account_id)
         .join(Payment, Payment.id == Refund.payment_id)
         .where(Refund.state.in_(OPEN_REFUND_STATES), Payment.gateway == bindparam("gw"))
         .order_by(Refund.id))
