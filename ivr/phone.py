"""Telephone numbers as E.164 strings ("+15551234567"), or None when there is none to use."""

from __future__ import annotations

import phonenumbers

# Caller-ID values Asterisk and carriers use for "no number".
_WITHHELD = {"", "anonymous", "unknown", "unavailable", "private", "restricted", "withheld",
             "asterisk", "none"}


def to_e164(raw: str | None, default_region: str = "US") -> str | None:
    """Normalise a dialled or presented number; None for withheld, unknown or invalid ones.

    North American numbers with 555 as area code or exchange (+1 555 123 4567) are accepted
    although ``phonenumbers`` calls them invalid: they are the fictional numbers the demo data
    and the tests use, and no real caller presents them.
    """
    if raw is None:
        return None
    text = raw.strip()
    if text.lower() in _WITHHELD:
        return None
    try:
        num = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num) and not _is_us_555(num):
        return None
    return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)


def _is_us_555(num: phonenumbers.PhoneNumber) -> bool:
    national = str(num.national_number)
    return (num.country_code == 1 and len(national) == 10
            and "555" in (national[0:3], national[3:6]) and phonenumbers.is_possible_number(num))


def is_e164(value: str) -> bool:
    """True if value is already in canonical E.164 form."""
    return to_e164(value) == value if value.startswith("+") else False
