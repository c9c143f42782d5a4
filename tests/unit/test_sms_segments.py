"""Segment counting: GSM-7 160/153 with the extension table counting double, UCS-2 70/67
with surrogate pairs counting double; a part never splits an escape or a surrogate pair."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from ivr.messaging.segments import (
    GSM7_BASIC,
    GSM7_EXTENDED,
    Segments,
    count,
    is_gsm7,
    non_gsm7,
)

BASIC = sorted(GSM7_BASIC)
EXTENDED = sorted(GSM7_EXTENDED)


def test_known_examples() -> None:
    assert count("Your bill is $84.17") == Segments("GSM-7", 1, 19)
    assert count("").parts == 1
    assert (count("a" * 160).encoding, count("a" * 160).parts) == ("GSM-7", 1)
    assert count("a" * 161).parts == 2
    assert count("a" * 306).parts == 2 and count("a" * 307).parts == 3
    assert count("€" * 80).chars == 160 and count("€" * 80).parts == 1
    assert count("€" * 81).parts == 2
    assert count("é ñ ü à Ç ß £ ¥ §").encoding == "GSM-7"


def test_one_curly_apostrophe_switches_the_whole_text_to_ucs2() -> None:
    plain = "StarPay: it's paid. Confirmation 4KX9P2. " + "x" * 80
    curly = plain.replace("'", "\u2019")
    assert count(plain).encoding == "GSM-7" and count(plain).parts == 1
    assert count(curly).encoding == "UCS-2" and count(curly).parts == 2
    assert non_gsm7(curly) == ["\u2019"]


def test_ucs2_limits_and_surrogate_pairs() -> None:
    assert count("ó" * 70).parts == 1 and count("ó" * 71).parts == 2
    assert count("ó" * 134).parts == 2 and count("ó" * 135).parts == 3
    emoji = "\U0001F600"  # outside the BMP: two UTF-16 units
    assert count(emoji * 35).chars == 70 and count(emoji * 35).parts == 1
    assert count(emoji * 36).parts == 2
    # 66 units then a pair: the pair does not fit the first part's 67th unit, so it starts
    # the second part rather than being cut.
    assert count("ó" * 66 + emoji + "ó" * 5).parts == 2
    assert count("ó" * 66 + emoji + "ó" * 67).parts == 3


def test_an_escape_is_never_split_across_parts() -> None:
    # 152 septets then a two-septet character: it goes whole into the second part.
    text = "a" * 152 + "€" + "a" * 152
    assert count(text).chars == 306
    assert count(text).parts == 3


gsm_text = st.lists(st.sampled_from(BASIC + EXTENDED)).map("".join)


@given(gsm_text)
def test_gsm_text_counts_septets(text: str) -> None:
    seg = count(text)
    assert seg.encoding == "GSM-7"
    assert seg.chars == len(text) + sum(c in GSM7_EXTENDED for c in text)
    if seg.chars <= 160:
        assert seg.parts == 1
    else:
        assert math.ceil(seg.chars / 153) <= seg.parts <= math.ceil(seg.chars / 152)


@given(st.text(), st.characters())
def test_appending_never_costs_fewer_parts(text: str, extra: str) -> None:
    before, after = count(text), count(text + extra)
    if before.encoding == after.encoding:
        assert after.parts >= before.parts
    assert is_gsm7(text + extra) == (after.encoding == "GSM-7")


@given(gsm_text, st.characters().filter(lambda c: not is_gsm7(c)))
def test_any_non_gsm_character_makes_it_ucs2(text: str, odd: str) -> None:
    seg = count(text + odd)
    assert seg.encoding == "UCS-2"
    assert seg.chars == len((text + odd).encode("utf-16-le")) // 2
    if seg.chars <= 70:
        assert seg.parts == 1
    else:
        assert math.ceil(seg.chars / 67) <= seg.parts <= math.ceil(seg.chars / 66)
