"""`ivr payments list` and `ivr payments reconcile`."""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TYPE_CHECKING

from ivr.commands.db import run_with_app

if TYPE_CHECKING:
    from ivr.app import App
    from ivr.config import Config
    from ivr.services.payments import PaymentView
    from ivr.services.reconcile import ReconcileReport


# ivr.storage.models.PAYMENT_STATES (tests/unit/test_cli_startup.py keeps them equal): the
# models load SQLAlchemy, and argparse reads the choices as soon as --state is registered.
PAYMENT_STATES = ("pending", "approved", "declined", "failed", "unknown", "refunded")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("payments", help="list payments, settle ones whose outcome is unknown")
    psub = p.add_subparsers(dest="action", required=True)
    ls = psub.add_parser("list", help="recent payments, newest first")
    ls.add_argument("--account", help="only this account number")
    ls.add_argument("--state", choices=PAYMENT_STATES)
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=list_cmd)
    rc = psub.add_parser("reconcile", help="ask the gateway about pending/unknown payments "
                         "and settle them (safe to run any time, any number of times)")
    rc.add_argument("--min-age", type=float, default=None, metavar="SECONDS",
                    help="leave pending payments younger than this alone (a live call may "
                         "still be waiting for the gateway); default payments.reconcile_min_age")
    rc.set_defaults(func=reconcile_cmd)


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
    if not rows:
        print("no payments")
        return 0
    print(f"{'confirmation':>12}  {'account':<10} {'amount':>12}  {'state':<9} {'channel':<6}"
          f" {'when (UTC)':<19}  reason")
    for r in rows:
        print(f"{r.confirmation:>12}  {r.account_number:<10} "
              f"{format_minor(r.amount_minor, r.currency):>12}  {r.state:<9} {r.channel:<6} "
              f"{r.created_at:%Y-%m-%d %H:%M:%S}  {r.decline_code or ''}")
    return 0


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
    return 0
