"""`ivr payments list|show|refund|reconcile`."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ivr.commands.db import run_with_app

if TYPE_CHECKING:
    from ivr.app import App
    from ivr.config import Config
    from ivr.services.payments import PaymentView
    from ivr.services.reconcile import ReconcileReport
    from ivr.services.refunds import RefundOutcome, RefundView


# ivr.storage.models.PAYMENT_STATES (tests/unit/test_cli_startup.py keeps them equal): the
# models load SQLAlchemy, and argparse reads the choices as soon as --state is registered.
# A partly refunded payment stays "approved" (its refunds are listed beside it); it is
# "refunded" once all of it is given back.
PAYMENT_STATES = ("pending", "approved", "declined", "failed", "unknown", "refunded")
# Only money taken has a confirmation number: a caller is never told one for a decline.
CONFIRMED_STATES = ("approved", "refunded")
EXIT_UNKNOWN = 3  # the refund is recorded but the processor's answer is not known yet


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("payments", help="list, show and refund payments; settle ones whose "
                       "outcome is unknown")
    psub = p.add_subparsers(dest="action", required=True)
    ls = psub.add_parser("list", help="recent payments, newest first")
    ls.add_argument("--account", help="only this account number")
    ls.add_argument("--state", choices=PAYMENT_STATES)
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=list_cmd)
    sh = psub.add_parser("show", help="one payment with its refunds, by confirmation number "
                         "(or #ID, the id `payments list --json` gives)")
    sh.add_argument("confirmation", metavar="CONFIRMATION")
    sh.add_argument("--json", action="store_true", help="as one JSON object")
    sh.set_defaults(func=show_cmd)
    rf = psub.add_parser(
        "refund", help="give back all or part of an approved payment, exactly once",
        description="Refund an approved payment, all of what is left or --amount of it. "
        "The refund is recorded with a request id before the processor is asked; repeating "
        "the command with the same --key never refunds twice. Exit status: 0 refunded, "
        "1 refused or failed, 3 the processor's answer is not known yet (the reconciler "
        "settles it: do not refund again).")
    rf.add_argument("confirmation", metavar="CONFIRMATION")
    rf.add_argument("--amount", help="how much to give back, like 12.50 (default: all that "
                    "is left)")
    rf.add_argument("--key", help="request id; give the one printed by an earlier attempt to "
                    "repeat it safely (default: a new one)")
    rf.set_defaults(func=refund_cmd)
    rc = psub.add_parser("reconcile", help="ask the gateway about pending/unknown payments "
                         "and refunds and settle them (safe to run any time, any number of "
                         "times)")
    rc.add_argument("--min-age", type=float, default=None, metavar="SECONDS",
                    help="leave pending payments younger than this alone (a live call may "
                         "still be waiting for the gateway); default payments.reconcile_min_age")
    rc.set_defaults(func=reconcile_cmd)


def confirmation_of(p: PaymentView) -> str:
    return p.confirmation if p.state in CONFIRMED_STATES else ""


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def payment_dict(p: PaymentView) -> dict[str, Any]:
    return {"id": p.id, "confirmation": confirmation_of(p) or None,
            "account": p.account_number, "amount_minor": p.amount_minor,
            "currency": p.currency, "state": p.state, "channel": p.channel,
            "source_id": p.source_id, "processor_reference": p.processor_reference,
            "decline_code": p.decline_code, "created_at": _iso(p.created_at),
            "updated_at": _iso(p.updated_at)}


def refund_dict(r: RefundView) -> dict[str, Any]:
    return {"id": r.id, "payment_id": r.payment_id, "amount_minor": r.amount_minor,
            "currency": r.currency, "state": r.state, "key": r.idempotency_key,
            "processor_reference": r.processor_reference, "failure_code": r.failure_code,
            "failure_reason": r.failure_reason, "actor": r.actor,
            "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}


def list_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.money import format_minor
    from ivr.services.payments import PaymentService

    async def body(app: App) -> list[PaymentView]:
        svc = PaymentService(app.database(), app.gateway)
        return await svc.list(account_number=args.account, state=args.state,
                              limit=args.limit)

    rows = run_with_app(cfg, body)
    if rows is None:
        return 1
    if args.json:
        for r in rows:
            print(json.dumps(payment_dict(r)))
        return 0
    if not rows:
        print("no payments")
        return 0
    print(f"{'confirmation':>12}  {'account':<10} {'amount':>12}  {'state':<9} {'channel':<6}"
          f" {'when (UTC)':<19}  reason")
    for r in rows:
        print(f"{confirmation_of(r):>12}  {r.account_number:<10} "
              f"{format_minor(r.amount_minor, r.currency):>12}  {r.state:<9} {r.channel:<6} "
              f"{r.created_at:%Y-%m-%d %H:%M:%S}  {r.decline_code or ''}")
    return 0


def payment_id_of(text: str) -> int | None:
    """A confirmation number, or ``#ID`` for a payment that has none (a decline)."""
    from ivr.services.confirmation import payment_id_from_confirmation

    text = text.strip()
    if text.startswith("#") and text[1:].isdigit():
        return int(text[1:])
    return payment_id_from_confirmation(text.replace(" ", "").replace("-", ""))


def _unknown_payment(what: str, text: str) -> int:
    print(f"ivr payments {what}: {text!r} is not a confirmation number we gave (8 digits; "
          "a mistyped digit is caught) nor #ID; see `ivr payments list`", file=sys.stderr)
    return 1


def show_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.money import format_minor
    from ivr.services.payments import PaymentService
    from ivr.services.refunds import RefundService

    pid = payment_id_of(args.confirmation)
    if pid is None:
        return _unknown_payment("show", args.confirmation)

    async def body(app: App) -> tuple[list[PaymentView], list[RefundView]]:
        found = await PaymentService(app.database(), app.gateway).list(payment_id=pid)
        refunds = await RefundService(app.database(), app.gateway).of_payment(pid)
        return found, refunds

    res = run_with_app(cfg, body)
    if res is None:
        return 1
    found, refunds = res
    if not found:
        print(f"ivr payments show: there is no payment {args.confirmation}", file=sys.stderr)
        return 1
    p = found[0]
    refunded = sum(r.amount_minor for r in refunds if r.state == "succeeded")
    if args.json:
        print(json.dumps(payment_dict(p) | {"refunded_minor": refunded,
                                            "refunds": [refund_dict(r) for r in refunds]}))
        return 0

    def money(minor: int) -> str:
        return format_minor(minor, p.currency)

    lines = [("confirmation", confirmation_of(p) or f"none ({p.state})"),
             ("payment id", p.id), ("account", p.account_number),
             ("amount", money(p.amount_minor)), ("state", p.state),
             ("refunded", money(refunded)), ("channel", p.channel),
             ("source", p.source_id or ""), ("request id", p.idempotency_key),
             ("processor ref", p.processor_reference or ""),
             ("decline", p.decline_code or ""),
             ("created (UTC)", f"{p.created_at:%Y-%m-%d %H:%M:%S}"),
             ("updated (UTC)", f"{p.updated_at:%Y-%m-%d %H:%M:%S}")]
    for key, value in lines:
        print(f"{key:>14}: {value}")
    for r in refunds:
        print(f"{'refund':>14}: {money(r.amount_minor)} {r.state} by {r.actor} at "
              f"{r.created_at:%Y-%m-%d %H:%M:%S} (request id {r.idempotency_key}"
              + (f"; {r.failure_reason}" if r.failure_reason else "") + ")")
    return 0


def refund_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.money import AmountError, format_minor, parse_text
    from ivr.services.refunds import RefundRejected, RefundService

    pid = payment_id_of(args.confirmation)
    if pid is None:
        return _unknown_payment("refund", args.confirmation)
    amount: int | None = None
    if args.amount is not None:
        try:
            amount = parse_text(args.amount)
        except AmountError as exc:
            print(f"ivr payments refund: --amount {args.amount!r}: {exc}", file=sys.stderr)
            return 2
    key = args.key or f"cli-refund-{secrets.token_hex(8)}"

    async def body(app: App) -> RefundOutcome:
        return await RefundService(app.database(), app.gateway).refund(
            pid, amount, key, actor="cli")

    out = run_with_app(cfg, body)
    if out is None:
        return 1
    if isinstance(out, RefundRejected):
        print(f"ivr payments refund: refused: {out.message}", file=sys.stderr)
        return 1
    money = format_minor(out.amount_minor, out.currency)
    again = " (this request id was used before: nothing new was sent)" if out.replayed else ""
    if out.state == "succeeded":
        print(f"refunded {money} of payment {args.confirmation}{again}; request id {key}")
        return 0
    if out.state == "failed":
        print(f"ivr payments refund: the processor did not refund {money}: "
              f"{out.failure_reason or out.failure_code}{again}", file=sys.stderr)
        return 1
    print(f"the refund of {money} is recorded ({out.state}) but the processor's answer is "
          f"not known yet{again}. Do not refund again: `ivr payments reconcile` (or a "
          f"running `ivr serve`) settles it; to repeat this request safely use --key {key}",
          file=sys.stderr)
    return EXIT_UNKNOWN


def reconcile_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.services.reconcile import reconcile_once

    min_age = cfg.payments.reconcile_min_age if args.min_age is None else args.min_age

    async def body(app: App) -> ReconcileReport:
        return await reconcile_once(app.database(), app.gateway,
                                    min_age=timedelta(seconds=min_age), actor="cli")

    report = run_with_app(cfg, body)
    if report is None:
        return 1
    print(f"checked {report.checked}: {report.approved} approved, {report.declined} declined,"
          f" {report.failed} failed (never reached the processor), {report.still_open} still "
          "open")
    r = report.refunds
    if r.checked:
        print(f"refunds checked {r.checked}: {r.succeeded} succeeded, {r.failed} failed, "
              f"{r.still_open} still open")
    return 0
