"""Every shipped text template stays GSM-7 and one segment with realistic values: the
longest brand we expect, the largest amount the daily limit allows, a long confirmation
number, both languages. A curly apostrophe or an accent outside GSM-7 (the Spanish o-acute)
would make it UCS-2 and cost two or three segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import pytest

from ivr.config import Config
from ivr.messaging.segments import count, non_gsm7
from ivr.services.confirmation import confirmation_number
from ivr.texts.receipts import TEMPLATES, receipt_text

BRANDS = ["StarPay", "Springfield Power Co"]  # 20 characters: the longest we plan for
AMOUNTS = [1, 8417, Config().payments.daily_limit_minor]  # up to $5,000.00
CONFIRMATIONS = [confirmation_number(1), confirmation_number(2**40)]  # 8 to 15 digits


@dataclass(frozen=True)
class FakeReceipt:
    to: str = "+15551234567"
    account_id: int = 1
    payment_id: int = 1
    amount_minor: int = 8417
    currency: str = "USD"
    confirmation: str = "14494419"
    language: str = "en"
    when: date = date(2026, 12, 31)


@pytest.mark.parametrize("lang", sorted(TEMPLATES))
@pytest.mark.parametrize("brand", BRANDS)
@pytest.mark.parametrize("amount", AMOUNTS)
@pytest.mark.parametrize("currency", ["USD", "EUR"])
@pytest.mark.parametrize("confirmation", CONFIRMATIONS)
def test_receipts_are_one_gsm7_segment(lang: str, brand: str, amount: int, currency: str,
                                       confirmation: str) -> None:
    text = receipt_text(FakeReceipt(amount_minor=amount, currency=currency,
                                    confirmation=confirmation, language=lang), brand)
    seg = count(text)
    assert non_gsm7(text) == [], text
    assert seg.parts == 1, f"{seg.chars} septets: {text}"
    assert confirmation in text and brand in text


def test_receipt_says_amount_date_and_confirmation_in_the_customers_language() -> None:
    en = receipt_text(FakeReceipt(), "StarPay")
    es = receipt_text(FakeReceipt(language="es"), "StarPay")
    assert en == ("StarPay: payment of $84.17 received 12/31/2026. Confirmation 14494419. "
                  "Thank you!")
    assert "31/12/2026" in es and "$84.17" in es and "Gracias" in es
    assert receipt_text(FakeReceipt(language="fr"), "StarPay") == en  # no French template
