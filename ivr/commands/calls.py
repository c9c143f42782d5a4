"""`ivr calls list|show`: the call records, one per call (who, how verified, the path)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ivr.commands.db import run_with_db

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.services.call_history import CallView
    from ivr.storage.db import Database


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calls", help="the call records: who called, how they were verified, "
                       "where they went, how it ended")
    csub = p.add_subparsers(dest="action", required=True)
    ls = csub.add_parser("list", help="calls, newest first")
    ls.add_argument("--account", help="only calls about this account number")
    ls.add_argument("--number", help="only calls from this phone number")
    ls.add_argument("--since", metavar="WHEN", help="only calls started since then: ISO, "
                    "today, yesterday, '2h ago', '3d ago' (the center's time zone)")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=list_cmd)
    sh = csub.add_parser("show", help="one call's record and path")
    sh.add_argument("call", metavar="ID|UNIQUEID",
                    help="the record id from `calls list`, or the Asterisk uniqueid")
    sh.add_argument("--json", action="store_true", help="one JSON object per record")
    sh.set_defaults(func=show_cmd)


def call_dict(c: CallView) -> dict[str, Any]:
    from ivr.commands.payments import CONFIRMED_STATES
    from ivr.services.confirmation import confirmation_number

    confirmation = None
    if c.payment_id is not None and c.payment_state in CONFIRMED_STATES:
        confirmation = confirmation_number(c.payment_id)
    return {"id": c.id, "uniqueid": c.uniqueid, "ani": c.ani, "attestation": c.attestation,
            "language": c.language, "verified_how": c.verified_how,
            "account": c.account_number, "path": c.path, "outcome": c.outcome,
            "payment_id": c.payment_id, "payment_state": c.payment_state,
            "confirmation": confirmation,
            "details": c.details, "started_at": c.started_at.isoformat(),
            "ended_at": c.ended_at.isoformat() if c.ended_at else None,
            "duration_s": c.duration_s}


def list_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from zoneinfo import ZoneInfo

    from ivr.moments import MomentError, parse_moment
    from ivr.phone import to_e164
    from ivr.services.call_history import list_calls

    since = None
    if args.since:
        try:
            since = parse_moment(args.since, ZoneInfo(cfg.hours.timezone))
        except MomentError as exc:
            print(f"ivr calls list: --since {exc}", file=sys.stderr)
            return 2
    number = None
    if args.number:
        number = to_e164(args.number)
        if number is None:
            print(f"ivr calls list: --number {args.number!r} is not a phone number",
                  file=sys.stderr)
            return 2

    async def body(db: Database) -> list[CallView]:
        return await list_calls(db, account_number=args.account, number=number,
                                since=since, limit=args.limit)

    rows = run_with_db(cfg, body)
    if rows is None:
        return 1
    if args.json:
        for c in rows:
            print(json.dumps(call_dict(c)))
        return 0
    if not rows:
        print("no calls")
        return 0
    print(f"{'id':>7}  {'started (UTC)':<19} {'secs':>5}  {'from':<13} {'account':<10} "
          f"{'verified':<8} {'outcome':<14} path")
    for c in rows:
        secs = "" if c.duration_s is None else str(c.duration_s)
        print(f"{c.id:>7}  {c.started_at:%Y-%m-%d %H:%M:%S} {secs:>5}  {c.ani or 'withheld':<13}"
              f" {c.account_number or '':<10} {c.verified_how:<8} "
              f"{c.outcome or 'unfinished':<14} {_path(c.path, 60)}")
    return 0


def _path(path: list[str], width: int) -> str:
    text = " > ".join(path)
    return text if len(text) <= width else text[:width - 1] + "…"


def show_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.services.call_history import get_calls

    rows = run_with_db(cfg, lambda db: get_calls(db, args.call))
    if rows is None:
        return 1
    if not rows:
        print(f"ivr calls show: there is no call {args.call} (see `ivr calls list`)",
              file=sys.stderr)
        return 1
    for n, c in enumerate(rows):
        d = call_dict(c)
        if args.json:
            print(json.dumps(d))
            continue
        if n:
            print()
        path = d.pop("path")
        details = d.pop("details")
        for key, value in d.items():
            print(f"{key:>13}: {'' if value is None else value}")
        print(f"{'path':>13}:")
        for i, step in enumerate(path, 1):
            print(f"{i:>15}. {step}")
        for key, value in details.items():
            print(f"{'detail':>13}: {key} = {json.dumps(value)}")
    return 0
