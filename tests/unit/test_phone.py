from __future__ import annotations

import pytest

from ivr.phone import is_e164, to_e164


@pytest.mark.parametrize("raw,region,e164", [
    ("+15551234567", "US", "+15551234567"),
    ("(555) 123-4567", "US", "+15551234567"),
    ("1 202 555 0143", "US", "+12025550143"),
    ("020 7183 8750", "GB", "+442071838750"),
    ("+44 20 7183 8750", "US", "+442071838750"),
])
def test_normalises(raw, region, e164):
    assert to_e164(raw, region) == e164


@pytest.mark.parametrize("raw", [None, "", "anonymous", "Unknown", "PRIVATE", "12", "0",
                                 "+1 123 456 7890", "not a number"])
def test_withheld_unknown_invalid_is_none(raw):
    assert to_e164(raw) is None


def test_is_e164():
    assert is_e164("+15551234567")
    assert not is_e164("5551234567")
