"""The demo handler: proves the whole path (dialplan → FastAGI → session → keypad) works.

It answers, greets, reads up to four digits (# ends early) and says them back. It uses only
Asterisk's own core sounds, so it works before StarPay's prompts are built.
"""

from __future__ import annotations

import logging

from ivr.agi.errors import AGIHangup
from ivr.agi.session import AGISession
from ivr.log import mask_digits

log = logging.getLogger(__name__)

KEYS = "0123456789*#"


async def demo(session: AGISession) -> None:
    log.info("demo call from %s on %s", session.callerid or "unknown", session.channel)
    try:
        await session.answer()
        await session.stream_file("hello-world", KEYS)
        digits, timed_out = await session.get_data("beep", timeout_ms=5000, max_digits=4)
        log.info("demo read %s%s", mask_digits(digits), " (timed out)" if timed_out else "")
        if digits:
            await session.stream_file("you-entered")
            await session.say_digits(digits)
        await session.stream_file("goodbye")
        await session.hangup()
    except AGIHangup:
        log.info("demo caller hung up")
