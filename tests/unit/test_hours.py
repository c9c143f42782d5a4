"""Business hours: weekly ranges, holidays, closures, DST, and the [hours] config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr import config
from ivr.app_hours import business_hours, config_errors, hours_problems
from ivr.cli import main
from ivr.config import HoursConfig
from ivr.flows.hours_speech import describe_hours
from ivr.prompts.catalog import Catalog
from ivr.services.hours import DAYS, BusinessHours, DayGroup, HoursError, HoursRules

NY = ZoneInfo("America/New_York")
UTC = dt.UTC


def hours(**kw: object) -> BusinessHours:
    return business_hours(HoursConfig(**kw))  # type: ignore[arg-type]


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NY)


def test_default_week() -> None:
    h = hours()
    assert h.is_open(ny(2026, 11, 23, 8, 0))  # Monday, opening minute
    assert not h.is_open(ny(2026, 11, 23, 7, 59, 59))
    assert not h.is_open(ny(2026, 11, 23, 20, 0))  # the end is exclusive
    assert h.is_open(ny(2026, 11, 28, 16, 59))  # Saturday
    assert not h.is_open(ny(2026, 11, 29, 12, 0))  # Sunday
    assert h.next_change(ny(2026, 11, 23, 12, 0)) == ny(2026, 11, 23, 20, 0)
    assert h.next_change(ny(2026, 11, 28, 18, 0)) == ny(2026, 11, 30, 8, 0)


def test_holidays_and_closures_are_skipped() -> None:
    h = hours(closures=["2026-12-24", "2026-12-31T14:00/2026-12-31T23:59"])
    # Thursday Dec 24 closed, Friday Dec 25 a US holiday: next opening is Saturday.
    assert not h.is_open(ny(2026, 12, 24, 10, 0))
    assert h.next_opening(ny(2026, 12, 23, 21, 0)) == ny(2026, 12, 26, 9, 0)
    assert h.is_open(ny(2026, 12, 31, 13, 59))
    assert h.next_change(ny(2026, 12, 31, 9, 0)) == ny(2026, 12, 31, 14, 0)
    # New Year's Day is a holiday too, then the weekend rules apply again.
    assert h.next_opening(ny(2026, 12, 31, 15, 0)) == ny(2027, 1, 2, 9, 0)
    assert hours(holidays_country="").is_open(ny(2026, 12, 25, 10, 0))
    # California has its own holidays (Cesar Chavez Day, March 31).
    assert not hours(holidays_subdiv="CA").is_open(ny(2027, 3, 31, 10, 0))
    assert hours().is_open(ny(2027, 3, 31, 10, 0))


def test_several_ranges_a_day() -> None:
    h = hours(weekly={"mon": "08:00-12:00,13:00-17:00"})
    assert h.is_open(ny(2026, 11, 23, 11, 0)) and not h.is_open(ny(2026, 11, 23, 12, 30))
    assert h.next_change(ny(2026, 11, 23, 12, 30)) == ny(2026, 11, 23, 13, 0)
    assert h.next_change(ny(2026, 11, 23, 17, 0)) == ny(2026, 11, 30, 8, 0)


def test_dst_days() -> None:
    h = hours(weekly={"sun": "01:00-05:00", "mon": "08:00-20:00"}, holidays_country="")
    # 2026-03-08: clocks jump 02:00 EST -> 03:00 EDT, so Sunday is open 3 real hours.
    opens = h.next_opening(ny(2026, 3, 7, 12, 0))
    closes = h.next_change(opens)
    assert (opens.utcoffset(), closes.utcoffset()) == (dt.timedelta(hours=-5),
                                                       dt.timedelta(hours=-4))
    # (Python subtracts datetimes sharing a tzinfo as wall times: compare in UTC.)
    assert closes.astimezone(UTC) - opens.astimezone(UTC) == dt.timedelta(hours=3)
    assert h.next_change(closes) == ny(2026, 3, 9, 8, 0)
    assert h.next_change(closes).astimezone(UTC).hour == 12  # 8 a.m. EDT
    # 2026-11-01: 02:00 EDT -> 01:00 EST, so Sunday is open 5 real hours.
    opens = h.next_opening(ny(2026, 10, 31, 12, 0))
    assert h.next_change(opens).astimezone(UTC) - opens.astimezone(UTC) == dt.timedelta(hours=5)
    assert h.is_open(dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC))  # 01:30 EST, second time


def test_open_round_the_clock_merges_days() -> None:
    h = hours(weekly={d: "00:00-24:00" for d in DAYS[:5]}, holidays_country="")
    assert h.next_change(ny(2026, 11, 23, 3, 0)) == ny(2026, 11, 28, 0, 0)


def test_weekly_groups_are_days_and_times() -> None:
    h = hours(weekly={"mon": "08:00-20:00", "tue": "08:00-20:00", "thu": "08:00-12:00,13:00-24:00",
                      "sat": "09:30-12:00", "sun": "09:30-12:00"})
    assert h.weekly_groups() == [
        DayGroup(0, 1, ((dt.time(8), dt.time(20)),)),
        DayGroup(3, 3, ((dt.time(8), dt.time(12)), (dt.time(13), dt.time(0)))),
        DayGroup(5, 6, ((dt.time(9, 30), dt.time(12)),)),
    ]
    assert hours(weekly={}).weekly_groups() == []


def test_describe_says_the_hours() -> None:
    catalog = Catalog.load()
    h = hours(weekly={"mon": "08:00-20:00", "tue": "08:00-20:00", "wed": "08:00-20:00",
                      "fri": "08:00-12:00,13:00-17:00", "sat": "09:30-12:00",
                      "sun": "09:30-12:00"})

    def said(lang: str) -> str:
        return " ".join(catalog.text(i, lang) for i in describe_hours(h, lang))

    assert said("en") == ("Monday to Wednesday from eight a.m. to eight p.m. "
                          "Friday from eight a.m. to noon and from one p.m. to five p.m. "
                          "Saturday and Sunday from nine thirty a.m. to noon")
    assert said("es") == ("de lunes a miércoles de ocho de la mañana a ocho de la noche "
                          "viernes de ocho de la mañana a mediodía y de una de la tarde a "
                          "cinco de la tarde "
                          "sábado y domingo de nueve y treinta de la mañana a mediodía")


@pytest.mark.parametrize("cfg, problem", [
    (HoursConfig(timezone="Mars/Olympus"), "not a time zone"),
    (HoursConfig(weekly={"monday": "08:00-17:00"}), "unknown day"),
    (HoursConfig(weekly={"mon": "8-17"}), "not HH:MM-HH:MM"),
    (HoursConfig(weekly={"mon": "17:00-08:00"}), "end must be after"),
    (HoursConfig(weekly={"mon": "08:00-12:00,11:00-13:00"}), "overlap"),
    (HoursConfig(weekly={"mon": "08:00-24:30"}), "00:00 to 24:00"),
    (HoursConfig(holidays_country="XX"), "not available"),
    (HoursConfig(closures=["2026-13-01"]), "closures"),
    (HoursConfig(closures=["2026-12-31T14:00/2026-12-31T13:00"]), "end must be after"),
])
def test_bad_hours_are_explained(cfg: HoursConfig, problem: str) -> None:
    problems = hours_problems(cfg)
    assert any(problem in p for p in problems), problems
    assert all(p.startswith("hours.") for p in problems), problems  # named as config keys
    with pytest.raises(HoursError):
        business_hours(cfg)


def test_rules_need_no_config() -> None:
    h = BusinessHours(HoursRules(timezone="Europe/London", weekly={"mon": "09:00-17:00"}))
    assert h.is_open(dt.datetime(2026, 12, 28, 9, 0, tzinfo=ZoneInfo("Europe/London")))
    with pytest.raises(HoursError, match="timezone 'Mars/Olympus'"):
        BusinessHours(HoursRules(timezone="Mars/Olympus", weekly={}))


def test_a_week_with_no_hours_is_a_note_not_an_error(tmp_path: Path) -> None:
    file = tmp_path / "starpay.toml"
    file.write_text('[hours]\nweekly = { mon = "" }\n')
    cfg = config.load(file, environ={})
    assert hours_problems(cfg.hours) == [
        "note: hours.weekly has no open hours; every caller hears the after-hours message"]
    assert config_errors(cfg) == []


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        hours().is_open(dt.datetime(2026, 1, 5, 9, 0))


def test_config_file_and_environment(tmp_path: Path) -> None:
    file = tmp_path / "starpay.toml"
    file.write_text('[hours]\ntimezone = "America/Chicago"\n'
                    'weekly = { mon = "08:00-12:00,13:00-17:00", sun = "" }\n'
                    'closures = ["2026-12-24"]\n')
    cfg = config.load(file, environ={})
    assert cfg.hours.weekly == {"mon": "08:00-12:00,13:00-17:00", "sun": ""}
    assert cfg.hours.timezone == "America/Chicago" and config_errors(cfg) == []
    cfg = config.load(file, environ={"STARPAY_HOURS_WEEKLY": "tue=09:00-10:00,11:00-12:00;wed=",
                                     "STARPAY_HOURS_HOLIDAYS_SUBDIV": "TX"})
    assert cfg.hours.weekly == {"tue": "09:00-10:00,11:00-12:00", "wed": ""}
    assert cfg.hours.holidays_subdiv == "TX"
    file.write_text('[hours]\nweekly = { mon = 8 }\n')
    with pytest.raises(config.ConfigError, match="hours.weekly.mon"):
        config.load(file, environ={})
    file.write_text('[hours]\nweekly = { mon = "8am" }\n')
    assert any("hours.weekly.mon" in e for e in config_errors(config.load(file, environ={})))
    assert config.load(file, environ={}).errors() == []  # Config alone leaves hours out
    file.write_text('[call]\nlanguages = ["en", 5]\n')
    with pytest.raises(config.ConfigError, match="call.languages"):
        config.load(file, environ={})


def test_hours_command(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no starpay.toml here: defaults
    monkeypatch.delenv("STARPAY_CONFIG", raising=False)
    assert main(["hours", "--at", "2026-11-28T18:00"]) == 0
    out = capsys.readouterr().out
    assert "closed at Sat 2026-11-28 18:00" in out
    assert "opens at Mon 2026-11-30 08:00 EST (America/New_York)" in out
    assert main(["hours", "--at", "2026-11-30T13:30Z"]) == 0
    assert "open at Mon 2026-11-30 08:30" in capsys.readouterr().out
    assert main(["hours", "--at", "someday"]) == 2  # a usage error, named as such


# --- properties ---------------------------------------------------------------------------

ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Sao_Paulo",
         "Pacific/Chatham", "UTC"]


@st.composite
def day_ranges(draw: st.DrawFn) -> str:
    points = sorted(draw(st.sets(st.integers(0, 96).map(lambda q: q * 15), max_size=4)))
    pairs = [(a, b) for a, b in zip(points[::2], points[1::2], strict=False)]
    return ",".join(f"{a // 60:02d}:{a % 60:02d}-{b // 60:02d}:{b % 60:02d}" for a, b in pairs)


@st.composite
def configs(draw: st.DrawFn) -> HoursConfig:
    weekly = {day: draw(day_ranges()) for day in DAYS}
    if not any(weekly.values()):
        weekly["wed"] = "10:00-11:00"
    closures = draw(st.lists(st.dates(dt.date(2025, 1, 1), dt.date(2027, 12, 31)).map(
        dt.date.isoformat), max_size=3))
    return HoursConfig(timezone=draw(st.sampled_from(ZONES)), weekly=weekly,
                       holidays_country=draw(st.sampled_from(["", "US", "GB"])),
                       closures=closures)


INSTANTS = st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2027, 12, 31),
                        timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(cfg=configs(), at=INSTANTS)
def test_next_change_flips_exactly_there(cfg: HoursConfig, at: dt.datetime) -> None:
    h = business_hours(cfg)
    change = h.next_change(at)
    state = h.is_open(at)
    assert change > at
    assert h.is_open(change) != state
    assert h.is_open(change - dt.timedelta(microseconds=1)) == state
    assert h.is_open(at + (change - at) / 2) == state
    opening = h.next_opening(at)
    assert opening > at and h.is_open(opening)
    assert not h.is_open(opening - dt.timedelta(microseconds=1))
