"""The billing center's weekly hours as prompt ids: "Monday to Friday from 8 a.m. to 8 p.m.".

The business (ivr.services.hours) answers with days and times; this is how a voice call
says them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.prompts import speech

if TYPE_CHECKING:
    from ivr.flows.context import Hours
    from ivr.services.hours import DayGroup

# Prompt ids (named *_PROMPT so ivr/prompts/usage.py sees them).
FROM_PROMPT = "hours_from"
TO_PROMPT = "hours_to"
AND_PROMPT = "hours_and"


def describe_hours(hours: Hours, lang: str) -> list[str]:
    """Prompt ids for every open group of days, Monday first."""
    return [pid for group in hours.weekly_groups() for pid in _group(group, lang)]


def _group(group: DayGroup, lang: str) -> list[str]:
    first, last = group.first, group.last
    days = [speech.weekday(first)]
    if last == first + 1:
        days += [AND_PROMPT, speech.weekday(last)]
    elif last > first:
        days += [TO_PROMPT, speech.weekday(last)]
    # Spanish says a span of three or more days "de lunes a miércoles".
    out = ([FROM_PROMPT] if lang == "es" and last > first + 1 else []) + days
    for n, (start, end) in enumerate(group.ranges):
        out += [AND_PROMPT] if n else []
        out += [FROM_PROMPT] + speech.clock(start, lang)
        out += [TO_PROMPT] + speech.clock(end, lang)
    return out
