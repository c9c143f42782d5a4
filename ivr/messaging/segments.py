"""How many SMS segments a text costs: ``count(text) -> Segments(encoding, parts, chars)``.

A text that fits the GSM-7 alphabet (3GPP TS 23.038: the basic table, plus the extension
table whose characters take two septets, an escape and the character) is sent as GSM-7:
160 septets in one segment, 153 per part when it is split (the rest of each part is the
concatenation header). Anything else (a curly apostrophe, an emoji, most accented capitals)
switches the *whole* text to UCS-2: 70 UTF-16 units in one segment, 67 per part, and a
character outside the Basic Multilingual Plane (most emoji) is a surrogate pair, two units.

Parts are filled the way phones and providers split: an escape and its character, or the
two halves of a surrogate pair, are never cut apart, so a part may hold one unit less.

    >>> count("Your bill is $84.17")
    Segments(encoding='GSM-7', parts=1, chars=19)
    >>> count("It’s paid").encoding        # U+2019, the curly apostrophe
    'UCS-2'
"""

from __future__ import annotations

from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# The basic table, in code order (0x1B, the escape, is left out: it is never text).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
# The extension table: each costs two septets.
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")

SINGLE = {GSM7: 160, UCS2: 70}
PART = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    parts: int  # segments billed; an empty text still costs one
    chars: int  # septets (GSM-7) or UTF-16 units (UCS-2)

    @property
    def single(self) -> bool:
        return self.parts == 1


def is_gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def non_gsm7(text: str) -> list[str]:
    """The characters that force UCS-2, in order of first appearance (for error messages)."""
    seen: dict[str, None] = {}
    for c in text:
        if c not in GSM7_BASIC and c not in GSM7_EXTENDED:
            seen.setdefault(c)
    return list(seen)


def _costs(text: str, encoding: str) -> list[int]:
    if encoding == GSM7:
        return [2 if c in GSM7_EXTENDED else 1 for c in text]
    return [2 if ord(c) > 0xFFFF else 1 for c in text]


def count(text: str) -> Segments:
    encoding = GSM7 if is_gsm7(text) else UCS2
    costs = _costs(text, encoding)
    chars = sum(costs)
    if chars <= SINGLE[encoding]:
        return Segments(encoding, 1, chars)
    room, parts, used = PART[encoding], 1, 0
    for cost in costs:
        if used + cost > room:  # this character starts the next part, whole
            parts, used = parts + 1, 0
        used += cost
    return Segments(encoding, parts, chars)
