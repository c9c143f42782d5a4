"""Logging: digits masked, and a replaced stderr never breaks logging."""

from __future__ import annotations

import io
import logging
import sys

from ivr import log


def test_mask_digits_hides_keypad_symbols_but_keeps_length() -> None:
    assert log.mask_digits("acct 1234#") == "acct •••••"
    assert log.mask_digits("") == ""
    assert log.mask_digits(None) == ""


def test_setup_follows_the_current_stderr(monkeypatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        log.setup("INFO")
        first.close()  # e.g. a test harness closed the stream it had installed
        monkeypatch.setattr(sys, "stderr", second)
        token = log.call_id.set("1700000000.1")
        logging.getLogger("ivr.test").info("hello")
        log.call_id.reset(token)
    finally:
        logging.getLogger().handlers[:], level = saved
        logging.getLogger().setLevel(level)
    assert "[1700000000.1] hello" in second.getvalue()
