"""Compose sequences of prompt ids that say numbers, money, dates, times and key presses.

Every function returns catalog ids, never text: the flow plays them one after another.
English follows US usage ("one hundred twenty", no "and"); Spanish follows the RAE:
"uno" shortens to "un"/"veintiún" before a masculine noun and before "mil" ("veintiún
dólares", "veintiún mil"), 1000 is "mil" (never "un mil"), and exact millions take "de"
("un millón de dólares").
"""

from __future__ import annotations

import datetime as dt

MAX_NUMBER = 999_999_999
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
BRANDS = {"visa": "brand_visa", "mastercard": "brand_mastercard",
          "amex": "brand_amex", "american express": "brand_amex",
          "american_express": "brand_amex", "discover": "brand_discover"}
_KEYS = {"*": "star", "#": "pound", **{str(d): f"digit_{d}" for d in range(10)}}


def _check_lang(lang: str) -> None:
    if lang not in ("en", "es"):
        raise ValueError(f"no speech rules for language {lang!r}")


def number(n: int, lang: str, before_noun: bool = False) -> list[str]:
    """Say a whole number 0..999,999,999. ``before_noun``: Spanish "un"/"veintiún" forms."""
    _check_lang(lang)
    if not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"cannot say {n}: numbers go from 0 to {MAX_NUMBER}")
    if n == 0:
        return ["num_0"]
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    out: list[str] = []
    if lang == "en":
        if millions:
            out += _en_below_1000(millions) + ["million"]
        if thousands:
            out += _en_below_1000(thousands) + ["thousand"]
        if units:
            out += _en_below_1000(units)
        return out
    if millions == 1:
        out += ["num_1_apoc", "million"]
    elif millions:
        out += number(millions, "es", before_noun=True) + ["millions"]
    if thousands == 1:
        out += ["thousand"]
    elif thousands:
        out += _es_below_1000(thousands, apocope=True) + ["thousand"]
    if units:
        out += _es_below_1000(units, apocope=before_noun)
    return out


def _en_below_1000(n: int) -> list[str]:
    hundreds, rest = divmod(n, 100)
    out = [f"num_{hundreds * 100}"] if hundreds else []
    if rest >= 20:
        tens, unit = divmod(rest, 10)
        out.append(f"num_{tens * 10}")
        if unit:
            out.append(f"num_{unit}")
    elif rest:
        out.append(f"num_{rest}")
    return out


def _es_below_1000(n: int, apocope: bool) -> list[str]:
    hundreds, rest = divmod(n, 100)
    out: list[str] = []
    if hundreds == 1:
        out.append("num_100" if rest == 0 else "num_100_more")  # cien / ciento
    elif hundreds:
        out.append(f"num_{hundreds * 100}")
    if rest == 0:
        return out
    if rest < 30:  # Spanish has single words up to veintinueve
        if apocope and rest in (1, 21):
            out.append(f"num_{rest}_apoc")
        else:
            out.append(f"num_{rest}")
        return out
    tens, unit = divmod(rest, 10)
    out.append(f"num_{tens * 10}")
    if unit:
        out += ["num_and", "num_1_apoc" if apocope and unit == 1 else f"num_{unit}"]
    return out


def money(minor_units: int, lang: str) -> list[str]:
    """Say an amount of US dollars given in cents: 8417 -> eighty-four dollars and seventeen
    cents; 0 -> zero dollars; 17 -> seventeen cents."""
    _check_lang(lang)
    if minor_units < 0:
        raise ValueError("cannot say a negative amount")
    dollars, cents = divmod(minor_units, 100)
    es = lang == "es"
    out: list[str] = []
    if dollars or not cents:
        out += number(dollars, lang, before_noun=es)
        if es and dollars and dollars % 1_000_000 == 0:
            out.append("num_of")  # "un millón de dólares"
        out.append("dollar" if dollars == 1 else "dollars")
    if cents:
        if out:
            out.append("money_and")
        out += number(cents, lang, before_noun=es)
        out.append("cent" if cents == 1 else "cents")
    return out


def date(d: dt.date, lang: str) -> list[str]:
    """December fifth / cinco de diciembre (no year: callers hear dates within the year)."""
    _check_lang(lang)
    if lang == "en":
        return [f"month_{d.month}", f"day_{d.day}"]
    return [f"day_{d.day}", "date_of", f"month_{d.month}"]


def weekday(d: dt.date | int) -> str:
    """The weekday prompt for a date or a weekday number (Monday is 0)."""
    return f"weekday_{WEEKDAYS[d if isinstance(d, int) else d.weekday()]}"


def clock(t: dt.time, lang: str) -> list[str]:
    """A time of day: eight oh five a.m. / ocho y cinco de la mañana; noon; midnight."""
    _check_lang(lang)
    if t.minute == 0 and t.hour in (0, 12):
        return ["time_midnight" if t.hour == 0 else "time_noon"]
    h12 = t.hour % 12 or 12
    if lang == "en":
        out = number(h12, "en")
        if t.minute:
            out += (["time_oh"] if t.minute < 10 else []) + number(t.minute, "en")
        return out + ["time_am" if t.hour < 12 else "time_pm"]
    out = ["num_1_fem"] if h12 == 1 else number(h12, "es")  # "la una"
    if t.minute:
        out += ["num_and"] + number(t.minute, "es")
    period = "time_am" if t.hour < 12 else "time_pm" if t.hour < 20 else "time_night"
    return out + [period]


def minutes(n: int, lang: str) -> list[str]:
    """A duration: fifteen minutes / quince minutos; one minute / un minuto."""
    return number(n, lang, before_noun=lang == "es") + ["minute" if n == 1 else "minutes"]


def digits(s: str) -> list[str]:
    """Say keys one by one: "4242" -> four two four two; * and # are star and pound."""
    try:
        return [_KEYS[c] for c in s]
    except KeyError as exc:
        raise ValueError(f"cannot say key {exc.args[0]!r}") from None


def card(brand: str, last4: str) -> list[str]:
    """<brand> ending in <digits>; an unknown brand is just "card". Same order in Spanish."""
    return [brand_prompt(brand), "ending_in"] + digits(last4)


def brand_prompt(brand: str) -> str:
    return BRANDS.get(brand.strip().lower(), "brand_card")


def produced_ids() -> set[str]:
    """Every id the functions above can return (for the "every catalog entry is used" test)."""
    ids: set[str] = set(_KEYS.values()) | set(BRANDS.values()) | {"brand_card", "ending_in"}
    ids |= {weekday(i) for i in range(7)}
    for lang in ("en", "es"):
        for n in list(range(1000)) + [1000, 21_000, 1_000_000, 2_000_000]:
            ids.update(number(n, lang, before_noun=True))
            ids.update(number(n, lang))
        for amount in (0, 1, 2, 100, 101, 2_100_000_000):
            ids.update(money(amount, lang))
        for day in range(1, 32):
            ids.update(date(dt.date(2025, 1, day), lang))
        for month in range(1, 13):
            ids.update(date(dt.date(2025, month, 1), lang))
        for n in (1, 2):
            ids.update(minutes(n, lang))
        for hour in range(24):
            for minute in (0, 5, 30):
                ids.update(clock(dt.time(hour, minute), lang))
    return ids
