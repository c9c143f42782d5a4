"""Money as integers of minor units (cents), never floats.

Rules, written down once:

* Storage and arithmetic use ``int`` minor units with an ISO 4217 currency beside them.
  Every currency we handle has 2 decimals.
* We never round. Input with more than 2 decimals ("84.175") is rejected, not rounded,
  because a rounded amount is an amount the customer did not say.
* Keypad rule: the digits are dollars and ``*`` is the decimal point, followed by at most two
  digits: "84*17" → 8417, "84" → 8400, "84*5" → 8450, "*5" → 50. ``#`` ends the entry and
  is ignored if present at the end. Anything else (two stars, three decimals, no digits) is
  rejected.
* Text rule: an optional "$", digits with optional thousands commas in groups of three, an
  optional "." and at most 2 decimals: "84.17", "$84", "84", "1,234.50".
"""

from __future__ import annotations

import re

MINOR_PER_MAJOR = 100
# Over this is certainly a typo in a phone bill payment; also keeps speech sane.
MAX_MINOR = 100_000_000  # $1,000,000.00

_KEYPAD = re.compile(r"^(\d*)(?:\*(\d{1,2}))?#?$")
_TEXT = re.compile(r"^\$?\s*(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d{1,2}))?$")


class AmountError(ValueError):
    """The input is not an amount we accept; the message says why in plain words."""


class AmountTooLarge(AmountError):
    """Well written, but over MAX_MINOR: the caller typed it right and must hear so."""


def _build(major: str, minor: str) -> int:
    if not major and not minor:
        raise AmountError("no digits")
    value = int(major or "0") * MINOR_PER_MAJOR + int((minor or "").ljust(2, "0") or "0")
    if value > MAX_MINOR:
        raise AmountTooLarge("amount too large")
    return value


def parse_keypad(entry: str) -> int:
    """Keypad entry → minor units, by the keypad rule in the module docstring."""
    m = _KEYPAD.match(entry.strip())
    if not m:
        raise AmountError("use digits for dollars and * for the decimal point, "
                          "with at most two digits after it")
    return _build(m.group(1), m.group(2) or "")


def parse_text(text: str) -> int:
    """Typed text ("$1,234.50") → minor units, by the text rule in the module docstring."""
    m = _TEXT.match(text.strip())
    if not m:
        raise AmountError("write the amount like 84.17 (at most two digits after the point)")
    return _build((m.group(1) or "").replace(",", ""), m.group(2) or "")


def format_minor(amount_minor: int, currency: str = "USD") -> str:
    """Display form: 8417 → "$84.17", 123450 → "$1,234.50"; other currencies get a code."""
    sign = "-" if amount_minor < 0 else ""
    major, minor = divmod(abs(amount_minor), MINOR_PER_MAJOR)
    body = f"{major:,}.{minor:02d}"
    if currency.upper() == "USD":
        return f"{sign}${body}"
    return f"{sign}{body} {currency.upper()}"


def speech_parts(amount_minor: int) -> tuple[int, int]:
    """(dollars, cents) for saying an amount aloud; negative amounts are refused."""
    if amount_minor < 0:
        raise AmountError("cannot speak a negative amount")
    return divmod(amount_minor, MINOR_PER_MAJOR)


def to_text(amount_minor: int) -> str:
    """Plain "84.17" (no symbol, no commas): the inverse of :func:`parse_text`."""
    if amount_minor < 0:
        raise AmountError("negative amount")
    major, minor = divmod(amount_minor, MINOR_PER_MAJOR)
    return f"{major}.{minor:02d}"
