"""`ivr hours [--at ISO]`: is the billing center open, and when does that change."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hours", help="is the billing center open now (or at --at)")
    p.add_argument("--at", metavar="ISO", help="a moment to ask about, e.g. 2026-12-24T18:30 "
                   "(the center's time zone unless it carries an offset)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.app_hours import business_hours  # late: it loads holidays
    from ivr.services.hours import HoursError

    try:
        hours = business_hours(cfg.hours)
        at = dt.datetime.now(hours.tz)
        if args.at:
            at = dt.datetime.fromisoformat(args.at)
            at = at if at.tzinfo else at.replace(tzinfo=hours.tz)
        is_open = hours.is_open(at)
        change = hours.next_change(at)
    except (HoursError, ValueError) as exc:
        print(f"ivr hours: {exc}", file=sys.stderr)
        return 1
    local = at.astimezone(hours.tz)
    print(f"{'open' if is_open else 'closed'} {'now' if not args.at else 'at ' + _fmt(local)}")
    print(f"{'closes' if is_open else 'opens'} at {_fmt(change)} ({hours.tz.key})")
    print(f"weekly: {hours.summary}")
    return 0


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%a %Y-%m-%d %H:%M %Z")
