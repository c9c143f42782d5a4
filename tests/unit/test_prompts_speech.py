"""Speech composition: the ids said for numbers, money, dates, times and keys.

The whole range 0..999,999 is compared, in both languages, against small reference spellings
written independently of ivr/prompts/speech.py (plain strings, no prompt ids), and against
hand-checked table values.
"""

from __future__ import annotations

import datetime as dt
import functools

import pytest

from ivr.prompts import speech
from ivr.prompts.catalog import Catalog

CATALOG = Catalog.load()

EN_SMALL = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen").split()
EN_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


@functools.lru_cache(maxsize=4096)  # keeps the parts below 1000
def en_reference(n: int) -> str:
    """US English spelling, e.g. 'one hundred twenty-one thousand five'."""
    if n < 20:
        return EN_SMALL[n]
    if n < 100:
        return EN_TENS[n // 10] + ("-" + EN_SMALL[n % 10] if n % 10 else "")
    if n < 1000:
        return EN_SMALL[n // 100] + " hundred" + (" " + en_reference(n % 100) if n % 100 else "")
    return en_reference(n // 1000) + " thousand" + (
        " " + en_reference(n % 1000) if n % 1000 else "")


ES_SMALL = ("cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce "
            "quince dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós "
            "veintitrés veinticuatro veinticinco veintiséis veintisiete veintiocho "
            "veintinueve").split()
ES_TENS = "_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
ES_HUNDREDS = ("_ ciento doscientos trescientos cuatrocientos quinientos seiscientos "
               "setecientos ochocientos novecientos").split()


@functools.lru_cache(maxsize=4096)
def es_reference(n: int) -> str:
    """Spanish spelling of a number said on its own (no apocope), e.g. 'veintiún mil uno'."""
    if n < 30:
        return ES_SMALL[n]
    if n < 100:
        return ES_TENS[n // 10] + (" y " + ES_SMALL[n % 10] if n % 10 else "")
    if n == 100:
        return "cien"
    if n < 1000:
        return ES_HUNDREDS[n // 100] + (" " + es_reference(n % 100) if n % 100 else "")
    head = "" if n // 1000 == 1 else es_apocope(es_reference(n // 1000)) + " "
    return head + "mil" + (" " + es_reference(n % 1000) if n % 1000 else "")


def es_apocope(words: str) -> str:
    """Before a masculine noun or 'mil': a final 'uno' becomes 'un', 'veintiuno' 'veintiún'."""
    if words.endswith("veintiuno"):
        return words[: -len("veintiuno")] + "veintiún"
    if words == "uno" or words.endswith(" uno"):
        return words[:-1]
    return words


TEXTS = {lang: {i: CATALOG.text(i, lang) for i in CATALOG.ids} for lang in ("en", "es")}


def said(ids: list[str], lang: str) -> str:
    return " ".join(map(TEXTS[lang].__getitem__, ids))


def test_every_number_below_a_million_in_english() -> None:
    wrong = [n for n in range(1_000_000)
             if said(speech.number(n, "en"), "en") != en_reference(n).replace("-", " ")]
    assert not wrong, f"{len(wrong)} wrong, first {wrong[:5]}"


def test_every_number_below_a_million_in_spanish() -> None:
    wrong = [n for n in range(1_000_000) if said(speech.number(n, "es"), "es") != es_reference(n)]
    assert not wrong, f"{len(wrong)} wrong, first {wrong[:5]}"


@pytest.mark.parametrize("n, en, es", [
    (0, "zero", "cero"),
    (15, "fifteen", "quince"),
    (21, "twenty one", "veintiuno"),
    (31, "thirty one", "treinta y uno"),
    (100, "one hundred", "cien"),
    (101, "one hundred one", "ciento uno"),
    (555, "five hundred fifty five", "quinientos cincuenta y cinco"),
    (1000, "one thousand", "mil"),
    (21_000, "twenty one thousand", "veintiún mil"),
    (31_031, "thirty one thousand thirty one", "treinta y un mil treinta y uno"),
    (101_000, "one hundred one thousand", "ciento un mil"),
    (999_999, "nine hundred ninety nine thousand nine hundred ninety nine",
     "novecientos noventa y nueve mil novecientos noventa y nueve"),
    (1_000_000, "one million", "un millón"),
    (2_500_000, "two million five hundred thousand", "dos millones quinientos mil"),
])
def test_number_table(n: int, en: str, es: str) -> None:
    assert said(speech.number(n, "en"), "en") == en
    assert said(speech.number(n, "es"), "es") == es


@pytest.mark.parametrize("cents, en, es", [
    (8417, "eighty four dollars and seventeen cents",
     "ochenta y cuatro dólares con diecisiete centavos"),
    (100, "one dollar", "un dólar"),
    (0, "zero dollars", "cero dólares"),
    (1, "one cent", "un centavo"),
    (17, "seventeen cents", "diecisiete centavos"),
    (2100, "twenty one dollars", "veintiún dólares"),
    (3121, "thirty one dollars and twenty one cents",
     "treinta y un dólares con veintiún centavos"),
    (100_001, "one thousand dollars and one cent", "mil dólares con un centavo"),
    (2_100_000, "twenty one thousand dollars", "veintiún mil dólares"),
    (99_999_999, "nine hundred ninety nine thousand nine hundred ninety nine dollars and "
     "ninety nine cents", "novecientos noventa y nueve mil novecientos noventa y nueve "
     "dólares con noventa y nueve centavos"),
    (100_000_000, "one million dollars", "un millón de dólares"),
])
def test_money_table(cents: int, en: str, es: str) -> None:
    assert said(speech.money(cents, "en"), "en") == en
    assert said(speech.money(cents, "es"), "es") == es


def test_money_matches_reference_for_many_amounts() -> None:
    for cents in range(0, 100_000_000, 9_973):  # a prime stride crosses every pattern
        dollars, c = divmod(cents, 100)
        en = [] if dollars == 0 and c else [
            en_reference(dollars).replace("-", " "), "dollar" if dollars == 1 else "dollars"]
        if c:
            en += (["and"] if en else []) + [en_reference(c).replace("-", " "),
                                              "cent" if c == 1 else "cents"]
        assert said(speech.money(cents, "en"), "en") == " ".join(en)


def test_negative_and_huge_are_refused() -> None:
    with pytest.raises(ValueError):
        speech.money(-1, "en")
    with pytest.raises(ValueError):
        speech.number(1_000_000_000, "en")
    with pytest.raises(ValueError):
        speech.number(5, "fr")


@pytest.mark.parametrize("day, en, es", [
    (dt.date(2026, 12, 5), "December fifth", "cinco de diciembre"),
    (dt.date(2026, 1, 1), "January first", "primero de enero"),
    (dt.date(2026, 3, 21), "March twenty-first", "veintiuno de marzo"),
    (dt.date(2026, 8, 31), "August thirty-first", "treinta y uno de agosto"),
])
def test_dates(day: dt.date, en: str, es: str) -> None:
    assert said(speech.date(day, "en"), "en") == en
    assert said(speech.date(day, "es"), "es") == es


@pytest.mark.parametrize("t, en, es", [
    (dt.time(8, 0), "eight a.m.", "ocho de la mañana"),
    (dt.time(8, 5), "eight oh five a.m.", "ocho y cinco de la mañana"),
    (dt.time(13, 30), "one thirty p.m.", "una y treinta de la tarde"),
    (dt.time(20, 0), "eight p.m.", "ocho de la noche"),
    (dt.time(12, 0), "noon", "mediodía"),
    (dt.time(0, 0), "midnight", "medianoche"),
])
def test_clock(t: dt.time, en: str, es: str) -> None:
    assert said(speech.clock(t, "en"), "en") == en
    assert said(speech.clock(t, "es"), "es") == es


def test_digits_and_cards() -> None:
    assert said(speech.digits("40*#"), "en") == "four zero star pound"
    assert said(speech.card("VISA", "4242"), "es") == "Visa terminada en cuatro dos cuatro dos"
    assert speech.card("unknown-brand", "1")[0] == "brand_card"
    with pytest.raises(ValueError):
        speech.digits("12a")


def test_every_produced_id_is_in_the_catalog() -> None:
    assert speech.produced_ids() - set(CATALOG.ids) == set()
