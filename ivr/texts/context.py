"""What a text reply needs from the outside world, handed in as one small object (the SMS
twin of ivr/flows/context.py). Built by the composition root, ``App.text_context()``.

The reply engineer adds what PAY needs (accounts, payments, statements) here and in
``App.text_context``; texts never reach past it to SQL or a transport.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from ivr.messaging.optouts import OptOuts
from ivr.messaging.outbox import Outbox


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class TextContext:
    outbox: Outbox
    optouts: OptOuts
    brand: str = "StarPay"
    help_contact: str = ""
    confirm: bool = False  # [sms] confirm: YES before any charge
    notice_window_days: int = 14
    clock: Callable[[], datetime] = _utcnow
