"""A test hook: the flow slowed down between AGI commands.

:class:`SlowSession` wraps the call's session and sleeps before every command but the
first, as a GC pause, a blocked event loop or a burst of calls would hold the service
between two commands. Only QA scenarios (``slow_ms``) and tests use it; production calls
get the session itself. Asterisk drops the keys a caller types while no command runs, so a
flow that leaves a gap inside an entry loses keys under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ivr.flows.prompter import CallSession


class SlowSession:
    """A :class:`CallSession` that pauses ``pause_s`` before each command after the first."""

    def __init__(self, session: CallSession, pause_s: float) -> None:
        self.session = session
        self.pause_s = pause_s
        self.args = session.args
        self._first = True

    @property
    def callerid(self) -> str | None:
        return self.session.callerid

    @property
    def uniqueid(self) -> str:
        return self.session.uniqueid

    @property
    def channel(self) -> str:
        return self.session.channel

    async def _pause(self) -> None:
        if self._first:
            self._first = False
            return
        await asyncio.sleep(self.pause_s)

    async def answer(self) -> None:
        await self._pause()
        await self.session.answer()

    async def hangup(self, channel: str | None = None) -> None:
        await self._pause()
        await self.session.hangup(channel)

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        await self._pause()
        return await self.session.stream_file(name, escape_digits)

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        await self._pause()
        return await self.session.wait_for_digit(timeout_ms)

    async def set_variable(self, name: str, value: object) -> None:
        await self._pause()
        await self.session.set_variable(name, value)

    async def read_entry(self, files: Sequence[str], max_digits: int, timeout_ms: int,
                         terminators: str = "#") -> tuple[str, str]:
        await self._pause()
        return await self.session.read_entry(files, max_digits, timeout_ms, terminators)


def slowed(session: CallSession, slow_ms: int) -> CallSession:
    """``session`` itself when ``slow_ms`` is 0, else it slowed down by that much."""
    return SlowSession(session, slow_ms / 1000) if slow_ms > 0 else session
