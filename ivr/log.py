"""Logging set-up: per-call context (the Asterisk uniqueid) and masking of pressed digits.

Callers press account numbers, ZIP codes and PINs. None of that may reach a log, so every
record passes through a filter that masks digit runs in fields known to carry keypad input,
and code that logs keypad input calls :func:`mask_digits` itself.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys

call_id: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="-")

_DIGITS = re.compile(r"[0-9*#]")


def mask_digits(text: str | None) -> str:
    """Replace every keypad symbol with '•' so the length stays visible but not the value."""
    if not text:
        return text or ""
    return _DIGITS.sub("•", text)


class CallContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = call_id.get()
        return True


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each record, so a redirected or
    replaced stderr (a test harness, a daemon wrapper) never leaves us on a closed file."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup(level: str = "INFO", stream=None) -> None:
    handler = logging.StreamHandler(stream) if stream else _StderrHandler()
    handler.addFilter(CallContextFilter())
    handler.setFormatter(logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s [%(call_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # panoramisk logs every AMI event at DEBUG, including DTMF ones: keep it at INFO at most.
    logging.getLogger("panoramisk").setLevel(max(logging.INFO, root.level))
    # Alembic announces every plugin it sets up at INFO: noise for `ivr db upgrade`.
    logging.getLogger("alembic.runtime.plugins").setLevel(max(logging.WARNING, root.level))
