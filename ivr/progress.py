"""Progress of a long command on stderr: rows done, rows/s and an ETA. On a terminal one
line redrawn in place (\\r); otherwise (a log file, a pipe) plain lines, now and then, so
no carriage returns end up in files."""

from __future__ import annotations

import sys
import time
from typing import TextIO

# Non-terminals: a line at the first thousand rows, then at most one per this many seconds.
LINE_EVERY_S = 5.0
REDRAW_EVERY_S = 0.2


class Progress:
    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.monotonic()
        self._last = 0.0
        self._drawn = False
        self._lines = 0

    def update(self, rows: int, fraction: float | None = None) -> None:
        """``rows`` done so far; ``fraction`` of the whole work done, for the ETA."""
        now = time.monotonic()
        if self.tty:
            if now - self._last < REDRAW_EVERY_S:
                return
            print(f"\r{self._text(rows, fraction, now)}\033[K", end="", file=self.stream,
                  flush=True)
            self._drawn = True
        else:
            if self._lines and now - self._last < LINE_EVERY_S:
                return
            print(self._text(rows, fraction, now), file=self.stream, flush=True)
            self._lines += 1
        self._last = now

    def _text(self, rows: int, fraction: float | None, now: float) -> str:
        elapsed = max(now - self._t0, 1e-6)
        text = f"{self.label}: {rows} rows, {rows / elapsed:,.0f} rows/s"
        if fraction and 0 < fraction < 1:
            left = elapsed * (1 - fraction) / fraction
            text += f", ETA {int(left // 60)}:{int(left % 60):02d}"
        return text

    def finish(self, rows: int) -> None:
        """Close the redrawn line (terminal) with the final count."""
        if self.tty and self._drawn:
            print(f"\r{self._text(rows, None, time.monotonic())}\033[K", file=self.stream,
                  flush=True)
