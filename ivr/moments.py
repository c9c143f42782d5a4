"""Moments an operator types on the command line: ISO times and a few words.

    now, today, tomorrow, yesterday        (a day alone means its start, 00:00)
    tomorrow 09:00, today 18:30            (a day and a time of day)
    +2h, -30m, +1d, 2h ago                 (from now; units m, h, d, w)
    2026-12-24T18:30, 2026-12-24 18:30     (ISO; no offset: the given time zone)
"""

from __future__ import annotations

import datetime as dt
import re

_DAYS = {"yesterday": -1, "today": 0, "tomorrow": 1}
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RELATIVE = re.compile(r"([+-])?\s*(\d+)\s*([mhdw])(?:\s+(ago))?")
_DAY_TIME = re.compile(r"(yesterday|today|tomorrow)(?:\s+(\d{1,2}):(\d{2}))?")

WORDS = ("ISO (2026-12-24T18:30), now, today, tomorrow, yesterday, 'tomorrow 09:00', +2h, "
         "'3d ago'")


class MomentError(ValueError):
    pass


def parse_moment(text: str, tz: dt.tzinfo, now: dt.datetime | None = None) -> dt.datetime:
    """An aware datetime for ``text``; MomentError saying what is accepted otherwise."""
    now = (now or dt.datetime.now(tz)).astimezone(tz)
    word = " ".join(text.strip().lower().split())
    if word == "now":
        return now
    if m := _DAY_TIME.fullmatch(word):
        day = now.date() + dt.timedelta(days=_DAYS[m.group(1)])
        hour, minute = (int(m.group(2)), int(m.group(3))) if m.group(2) else (0, 0)
        if hour > 23 or minute > 59:
            raise MomentError(f"{text!r}: {hour:02d}:{minute:02d} is not a time of day")
        return _local(dt.datetime.combine(day, dt.time(hour, minute)), tz)
    if m := _RELATIVE.fullmatch(word):
        sign, count, unit, ago = m.groups()
        if sign and ago:
            raise MomentError(f"{text!r}: use either a sign or 'ago'")
        delta = dt.timedelta(**{_UNITS[unit]: int(count)})
        return now - delta if sign == "-" or ago else now + delta
    try:
        at = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise MomentError(f"{text!r} is not a moment we read; use {WORDS}") from None
    return at if at.tzinfo else _local(at, tz)


def _local(naive: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    # zoneinfo resolves a wall time in a DST gap or overlap by fold; that is fine here.
    return naive.replace(tzinfo=tz)
