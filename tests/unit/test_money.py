from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.money import (
    MAX_MINOR,
    AmountError,
    format_minor,
    parse_keypad,
    parse_text,
    speech_parts,
    to_text,
)

amounts = st.integers(min_value=0, max_value=MAX_MINOR)


@pytest.mark.parametrize("entry,minor", [
    ("84*17", 8417), ("84", 8400), ("84*5", 8450), ("*5", 50), ("0*01", 1), ("84*17#", 8417),
])
def test_keypad_rule(entry, minor):
    assert parse_keypad(entry) == minor


@pytest.mark.parametrize("entry", ["", "#", "84*175", "8*4*1", "84**", "84*", "12a", "*"])
def test_keypad_rejects(entry):
    with pytest.raises(AmountError):
        parse_keypad(entry)


@pytest.mark.parametrize("text,minor", [
    ("84.17", 8417), ("$84", 8400), ("84", 8400), ("1,234.50", 123450), ("$ 0.5", 50),
    ("  84.1 ", 8410),
])
def test_text_rule(text, minor):
    assert parse_text(text) == minor


@pytest.mark.parametrize("text", ["84.175", "1,23.00", "abc", "", "$", "-5", "84.", "1.2.3",
                                  "10000000.01"])
def test_text_rejects_never_rounds(text):
    with pytest.raises(AmountError):
        parse_text(text)


def test_format():
    assert format_minor(8417) == "$84.17"
    assert format_minor(123450) == "$1,234.50"
    assert format_minor(-5) == "-$0.05"
    assert format_minor(100, "EUR") == "1.00 EUR"
    assert speech_parts(8417) == (84, 17)


@given(amounts)
def test_text_round_trip(minor):
    assert parse_text(to_text(minor)) == minor
    assert parse_text(format_minor(minor)) == minor


@given(amounts)
def test_keypad_round_trip(minor):
    dollars, cents = speech_parts(minor)
    assert parse_keypad(f"{dollars}*{cents:02d}") == minor
    assert dollars * 100 + cents == minor


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=999))
def test_three_decimals_always_rejected(major, thousandths):
    with pytest.raises(AmountError):
        parse_text(f"{major}.{thousandths:03d}")
