"""Receipt texts for payments on every channel (calls now; texts and agents next), queued
through the outbox exactly once per payment (dedupe key ``receipt:<payment id>``).

The templates stay GSM-7 and one segment with realistic values (tests/unit/
test_sms_templates.py holds them to it): no curly quotes or accents outside the GSM-7
table, which is why the Spanish one writes "confirmacion" (o-acute is not in GSM-7 and
would make the text UCS-2, 70 characters a segment).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Protocol

from ivr.messaging.outbox import Outbox
from ivr.money import format_minor

RECEIPT_KIND = "receipt"

TEMPLATES = {
    "en": "{brand}: payment of {amount} received {when}. Confirmation {confirmation}. "
          "Thank you!",
    "es": "{brand}: recibimos su pago de {amount} el {when}. Confirmacion {confirmation}. "
          "Gracias!",
}
DATE_FORMATS = {"en": "%m/%d/%Y", "es": "%d/%m/%Y"}


class ReceiptFacts(Protocol):
    """ivr.flows.context.Receipt, as far as a receipt text needs it."""

    @property
    def to(self) -> str: ...
    @property
    def account_id(self) -> int: ...
    @property
    def payment_id(self) -> int: ...
    @property
    def amount_minor(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def confirmation(self) -> str: ...
    @property
    def language(self) -> str: ...
    @property
    def when(self) -> date: ...


def receipt_text(r: ReceiptFacts, brand: str) -> str:
    lang = r.language if r.language in TEMPLATES else "en"
    return TEMPLATES[lang].format(brand=brand, amount=format_minor(r.amount_minor, r.currency),
                                  when=r.when.strftime(DATE_FORMATS[lang]),
                                  confirmation=r.confirmation)


def receipt_key(payment_id: int) -> str:
    return f"receipt:{payment_id}"


def receipt_sender(outbox: Outbox, brand: str
                   ) -> Callable[[ReceiptFacts], Awaitable[str | None]]:
    """FlowContext.send_receipt: queue the receipt; the message id (the first one's when
    this payment already has its receipt), or None when the number opted out."""
    async def send(r: ReceiptFacts) -> str | None:
        mid = await outbox.queue(r.to, receipt_text(r, brand), kind=RECEIPT_KIND,
                                 dedupe_key=receipt_key(r.payment_id),
                                 account_id=r.account_id, payment_id=r.payment_id)
        if mid is None:
            first = await outbox.by_key(receipt_key(r.payment_id))
            if first is None or first.state == "refused":
                return None
            mid = first.id
        return str(mid)

    return send
