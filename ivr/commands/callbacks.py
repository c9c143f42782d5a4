"""`ivr callbacks list`: the calls we promised to place, and what became of them."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from ivr.commands.db import run_with_db

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.services.callbacks import CallbackInfo
    from ivr.storage.db import Database

# ivr.storage.calls.CALLBACK_STATES (tests/unit/test_operator_small_things.py keeps them
# equal): the models load SQLAlchemy, which `ivr --help` has no use for.
CALLBACK_STATES = ("pending", "placing", "placed", "failed", "cancelled")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("callbacks", help="callbacks promised to callers")
    csub = p.add_subparsers(dest="action", required=True)
    ls = csub.add_parser("list", help="callbacks by due time, soonest first (default: the "
                         "ones still to place)")
    ls.add_argument("--status", choices=(*CALLBACK_STATES, "all"), default="pending")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(func=list_cmd)


def callback_dict(c: CallbackInfo, account: str | None) -> dict[str, Any]:
    return {"id": c.id, "number": c.number, "account": account, "language": c.language,
            "due_at": c.due_at.isoformat(), "status": c.status, "attempts": c.attempts,
            "last_error": c.last_error}


def list_cmd(args: argparse.Namespace, cfg: Config) -> int:
    from zoneinfo import ZoneInfo

    from sqlalchemy import select

    from ivr.services.callbacks import CallbackStore
    from ivr.storage.models import Account

    async def body(db: Database) -> tuple[list[CallbackInfo], dict[int, str]]:
        rows = await CallbackStore(db).list(
            status=None if args.status == "all" else args.status, limit=args.limit)
        ids = {c.account_id for c in rows if c.account_id is not None}
        numbers: dict[int, str] = {}
        if ids:
            async with db.session() as s:
                rows_ = (await s.execute(select(Account.id, Account.account_number)
                                         .where(Account.id.in_(ids)))).all()
                numbers = {int(aid): str(num) for aid, num in rows_}
        return rows, numbers

    res = run_with_db(cfg, body)
    if res is None:
        return 1
    rows, numbers = res
    if args.json:
        for c in rows:
            print(json.dumps(callback_dict(c, numbers.get(c.account_id or 0))))
        return 0
    if not rows:
        print("no callbacks" + ("" if args.status == "all" else f" {args.status}"))
        return 0
    tz = ZoneInfo(cfg.hours.timezone)
    print(f"{'id':>6}  {'due (' + tz.key + ')':<26} {'number':<13} {'account':<10} {'lang':<4}"
          f" {'status':<9} {'tries':>5}  last error")
    for c in rows:
        print(f"{c.id:>6}  {c.due_at.astimezone(tz):%Y-%m-%d %H:%M %Z}".ljust(34)
              + f" {c.number:<13} {numbers.get(c.account_id or 0, ''):<10} {c.language:<4}"
              f" {c.status:<9} {c.attempts:>5}  {(c.last_error or '')[:50]}")
    return 0
