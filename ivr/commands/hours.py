"""`ivr hours [--at WHEN]`: is the billing center open, and when does that change."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.config import Config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hours", help="is the billing center open now (or at --at)")
    p.add_argument("--at", metavar="WHEN", help="a moment to ask about: ISO like "
                   "2026-12-24T18:30 (the center's time zone unless it carries an offset), "
                   "or now, today, tomorrow, 'tomorrow 09:00', +2h (a day alone is its "
                   "start, 00:00)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from ivr.app_hours import business_hours  # late: it loads holidays
    from ivr.moments import MomentError, parse_moment
    from ivr.services.hours import HoursError

    try:
        hours = business_hours(cfg.hours)
    except HoursError as exc:
        print(f"ivr hours: {exc}", file=sys.stderr)
        return 1
    at = dt.datetime.now(hours.tz)
    if args.at:
        try:
            at = parse_moment(args.at, hours.tz, now=at)
        except MomentError as exc:
            print(f"ivr hours: --at {exc}", file=sys.stderr)
            return 2
    is_open = hours.is_open(at)
    change = hours.next_change(at)
    local = at.astimezone(hours.tz)
    holiday = hours.holidays.get(local.date()) if hours.holidays is not None else None
    why = f": {holiday}" if holiday and not is_open else ""
    print(f"{'open' if is_open else 'closed'} {'now' if not args.at else 'at ' + _fmt(local)}"
          f"{why}")
    print(f"{'closes' if is_open else 'opens'} at {_fmt(change)} ({hours.tz.key})")
    print(f"weekly: {hours.summary}")
    return 0


def _fmt(t: dt.datetime) -> str:
    return t.strftime("%a %Y-%m-%d %H:%M %Z")
