"""When the billing center is open: weekly hours, public holidays and one-off closures.

All rules are in the center's local wall-clock time (``HoursRules.timezone``); every answer
is an aware datetime. Internally, each day's ranges become UTC intervals; holidays drop whole
days, closures are cut out, touching intervals merge. ``is_open`` and ``next_change`` both
read that one interval list, so the state flips exactly at the instant ``next_change``
returns, DST days included (a range starting in the spring-forward gap starts when the clock
shows the next valid time; on the fall-back day the first of two equal wall times counts).

Answers are times and states, never words: each channel (voice in ivr/flows/hours_speech.py,
text, web) says them its own way, and the composition root turns the [hours] config into
``HoursRules`` (ivr/app_hours.py).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UTC = dt.UTC
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})-(\d{1,2}):(\d{2})$")
_SEARCH_DAYS = (8, 60, 800)  # widening look-ahead windows for the next change

Interval = tuple[dt.datetime, dt.datetime]  # [start, end) in UTC


class HoursError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class HoursRules:
    """The rules as written: weekly ranges as "HH:MM-HH:MM[,...]" text per day ("mon".."sun"),
    a holidays country/subdivision ("" for none) and closures as ISO days or "start/end"
    spans, all in ``timezone``'s wall-clock time. BusinessHours checks and parses them."""

    timezone: str
    weekly: Mapping[str, str]
    holidays_country: str = ""
    holidays_subdiv: str = ""
    closures: Sequence[str] = ()


@dataclass(frozen=True)
class DayGroup:
    """Consecutive weekdays (Monday 0) sharing the same open ranges, in local wall time;
    an end of 00:00 is the following midnight."""

    first: int
    last: int
    ranges: tuple[tuple[dt.time, dt.time], ...]


class BusinessHours:
    def __init__(self, rules: HoursRules):
        # Problems name the HoursRules fields; the composition root says where they came from.
        problems: list[str] = []
        try:
            self.tz = ZoneInfo(rules.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(f"timezone {rules.timezone!r} is not a time zone name like "
                            "America/New_York")
            self.tz = ZoneInfo("UTC")
        # weekly[i]: sorted (start, end) minutes after local midnight for weekday i (Monday 0).
        self.weekly: list[list[tuple[int, int]]] = [[] for _ in DAYS]
        for day, text in rules.weekly.items():
            if day not in DAYS:
                problems.append(f"weekly: unknown day {day!r}; use {', '.join(DAYS)}")
                continue
            try:
                self.weekly[DAYS.index(day)] = parse_ranges(text)
            except ValueError as exc:
                problems.append(f"weekly.{day}: {exc}")
        self.holidays: holidays.HolidayBase | None = None
        if rules.holidays_country:
            try:
                self.holidays = holidays.country_holidays(
                    rules.holidays_country, subdiv=rules.holidays_subdiv or None)
            except NotImplementedError as exc:
                problems.append(f"holidays_country/holidays_subdiv: {exc}")
        elif rules.holidays_subdiv:
            problems.append("holidays_subdiv is set but holidays_country is empty")
        self.closures: list[Interval] = []
        for text in rules.closures:
            try:
                self.closures.append(self._parse_closure(text))
            except ValueError as exc:
                problems.append(f"closures: {text!r}: {exc}")
        if problems:
            raise HoursError(problems)
        self.closures.sort()

    # --- questions ----------------------------------------------------------------------------

    def is_open(self, at: dt.datetime) -> bool:
        at = _aware(at)
        day = at.astimezone(self.tz).date()
        return any(s <= at < e for s, e in self.open_intervals(day - _DAY, day + _DAY))

    def next_change(self, at: dt.datetime) -> dt.datetime:
        """The next instant after ``at`` when the center opens or closes (local time)."""
        return self._next(at, openings_only=False)

    def next_opening(self, at: dt.datetime) -> dt.datetime:
        """The start of the next open period after ``at`` (for scheduling callbacks).

        Results are in the center's zone; Python subtracts two datetimes that share a
        tzinfo as wall times, so convert to UTC before measuring durations across DST.
        """
        return self._next(at, openings_only=True)

    def weekly_groups(self) -> list[DayGroup]:
        """The open days of the week, runs of days with equal hours grouped: Monday to Friday
        8:00-20:00, Saturday 9:00-17:00. Closed days are left out."""
        out: list[DayGroup] = []
        i = 0
        while i < 7:
            j = i
            while j + 1 < 7 and self.weekly[j + 1] == self.weekly[i]:
                j += 1
            if self.weekly[i]:
                ranges = tuple((_time(s), _time(e)) for s, e in self.weekly[i])
                out.append(DayGroup(i, j, ranges))
            i = j + 1
        return out

    # --- internals ----------------------------------------------------------------------------

    def _next(self, at: dt.datetime, openings_only: bool) -> dt.datetime:
        at = _aware(at)
        day = at.astimezone(self.tz).date()
        for span in _SEARCH_DAYS:
            last = day + dt.timedelta(days=span)
            # An interval running into `last` may continue past it: trust only earlier ones.
            horizon = self._at(last, 0)
            for start, end in self.open_intervals(day - _DAY, last):
                if start > at and start < horizon:
                    return start.astimezone(self.tz)
                if not openings_only and start <= at < end and end < horizon:
                    return end.astimezone(self.tz)
        raise HoursError([f"the center does not open or close within {_SEARCH_DAYS[-1]} days "
                          "of that time; check the weekly hours and closures"])

    def open_intervals(self, first: dt.date, last: dt.date) -> list[Interval]:
        """Merged open intervals (UTC) of the local days first..last inclusive."""
        raw: list[Interval] = []
        day = first
        while day <= last:
            if not (self.holidays is not None and day in self.holidays):
                for start, end in self.weekly[day.weekday()]:
                    s, e = self._at(day, start), self._at(day, end)
                    if s < e:  # a range wholly inside a DST gap has no instants
                        raw.append((s, e))
            day += _DAY
        return _merge(_subtract(sorted(raw), self.closures))

    def _at(self, day: dt.date, minutes: int) -> dt.datetime:
        """Local wall time on `day` (minutes after midnight; 1440 is the next midnight)."""
        if minutes == 1440:
            day, minutes = day + _DAY, 0
        local = dt.datetime.combine(day, _time(minutes), tzinfo=self.tz)
        return local.astimezone(UTC)

    def _parse_closure(self, text: str) -> Interval:
        if "/" in text:
            a, _, b = text.partition("/")
            start, end = (self._local(x.strip()) for x in (a, b))
        else:
            day = dt.date.fromisoformat(text.strip())
            start, end = self._at(day, 0), self._at(day, 1440)
        if not start < end:
            raise ValueError("the end must be after the start")
        return start, end

    def _local(self, text: str) -> dt.datetime:
        value = dt.datetime.fromisoformat(text)
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.tz)
        return value.astimezone(UTC)

    @cached_property
    def summary(self) -> str:
        """The weekly hours as text, for logs and `ivr hours`."""
        parts = []
        for name, ranges in zip(DAYS, self.weekly, strict=True):
            text = ",".join(f"{_hhmm(s)}-{_hhmm(e)}" for s, e in ranges)
            parts.append(f"{name} {text or 'closed'}")
        return "; ".join(parts)


_DAY = dt.timedelta(days=1)


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """ "08:00-12:00,13:00-17:00" -> [(480, 720), (780, 1020)]; "" -> [] (closed)."""
    out: list[tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _RANGE.match(part)
        if not m:
            raise ValueError(f"{part!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise ValueError(f"{part!r}: hours go 00:00 to 24:00")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start >= end:
            raise ValueError(f"{part!r}: the end must be after the start (ranges can't cross "
                             "midnight; split them over two days)")
        out.append((start, end))
    out.sort()
    for (_, e1), (s2, _) in zip(out, out[1:], strict=False):
        if s2 < e1:
            raise ValueError(f"{text!r}: ranges overlap")
    return out


def _subtract(intervals: list[Interval], holes: list[Interval]) -> list[Interval]:
    out = []
    for start, end in intervals:
        pieces = [(start, end)]
        for h_start, h_end in holes:
            pieces = [p for s, e in pieces for p in
                      ((s, min(e, h_start)), (max(s, h_end), e)) if p[0] < p[1]]
        out += pieces
    return out


def _merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("give an aware datetime (with a time zone), not a naive one")
    return at.astimezone(UTC)


def _time(minutes: int) -> dt.time:
    return dt.time(0, 0) if minutes == 1440 else dt.time(minutes // 60, minutes % 60)


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
