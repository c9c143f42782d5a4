"""The small things an operator meets: time words for --at/--since, holiday names in
`ivr hours`, panoramisk's greeting left readable and quiet, list copies of model states."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

import pytest

from ivr.cli import main
from ivr.moments import MomentError, parse_moment

NY = ZoneInfo("America/New_York")
NOW = dt.datetime(2026, 3, 10, 14, 30, tzinfo=NY)


@pytest.mark.parametrize("text,expected", [
    ("now", NOW),
    ("today", dt.datetime(2026, 3, 10, 0, 0, tzinfo=NY)),
    ("Tomorrow", dt.datetime(2026, 3, 11, 0, 0, tzinfo=NY)),
    ("tomorrow 09:00", dt.datetime(2026, 3, 11, 9, 0, tzinfo=NY)),
    ("yesterday  18:05", dt.datetime(2026, 3, 9, 18, 5, tzinfo=NY)),
    ("+2h", NOW + dt.timedelta(hours=2)),
    ("-30m", NOW - dt.timedelta(minutes=30)),
    ("3d ago", NOW - dt.timedelta(days=3)),
    ("+1w", NOW + dt.timedelta(weeks=1)),
    ("2026-12-24T18:30", dt.datetime(2026, 12, 24, 18, 30, tzinfo=NY)),
    ("2026-12-24 18:30+00:00", dt.datetime(2026, 12, 24, 18, 30, tzinfo=dt.UTC)),
])
def test_moments(text, expected):
    assert parse_moment(text, NY, now=NOW) == expected


@pytest.mark.parametrize("text", ["next week", "tomorrow 25:00", "+2x", "-2h ago", ""])
def test_bad_moments_say_what_is_accepted(text):
    with pytest.raises(MomentError):
        parse_moment(text, NY, now=NOW)


def _hours(monkeypatch, tmp_path, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STARPAY_CONFIG", raising=False)
    code = main(["hours", *argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_hours_at_words_and_clear_errors(monkeypatch, tmp_path, capsys):
    code, out, _ = _hours(monkeypatch, tmp_path, capsys, "--at", "tomorrow 10:00")
    assert code == 0 and out.startswith(("open at", "closed at"))
    code, out, err = _hours(monkeypatch, tmp_path, capsys, "--at", "tomorrow")
    assert code == 0 and "00:00" in out
    code, out, err = _hours(monkeypatch, tmp_path, capsys, "--at", "someday")
    assert code == 2 and "not a moment we read" in err and "tomorrow 09:00" in err
    assert "isoformat" not in err


def test_hours_names_the_holiday(monkeypatch, tmp_path, capsys):
    code, out, _ = _hours(monkeypatch, tmp_path, capsys, "--at", "2026-12-25T11:00")
    assert code == 0
    assert out.splitlines()[0] == "closed at Fri 2026-12-25 11:00 EST: Christmas Day"


def test_panoramisk_greeting_is_not_masked():
    from ivr.ami.client import _PANORAMISK_LOG

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    logger = logging.getLogger("panoramisk")
    handler, old = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        _PANORAMISK_LOG.info("protocol version: '%s'", "10.0.0")
        _PANORAMISK_LOG.debug("event %s", "Digit: 1234")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert seen == ["protocol version: '10.0.0'", "event Digit: ••••"]


def test_one_shot_commands_keep_panoramisk_quiet(monkeypatch, tmp_path, capsys):
    _hours(monkeypatch, tmp_path, capsys)
    assert logging.getLogger("panoramisk").level == logging.WARNING


def test_callback_states_copy_matches_the_model():
    from ivr.commands import callbacks
    from ivr.storage import calls

    assert callbacks.CALLBACK_STATES == calls.CALLBACK_STATES
