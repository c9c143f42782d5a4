"""A FastAGI connection's bytes as an asyncio Protocol: the header block, then lines.

Why not asyncio's streams: through them a command's round trip is StreamWriter.write and
drain(), then StreamReader.readuntil() and its _wait_for_data(): three coroutines to create
and resume, a waiter future and the reader's buffer bookkeeping, for every reply. A call
exchanges about 50 commands, each after the CPU went idle for a prompt's length (so none of
it is in a warm cache), and on 200 paced calls that machinery made StarPay's FastAGI layer
alone cost 1.7x a bare streams server doing the same exchange; on this Protocol, 1.2x
(benchmarks/calls.py --agi-layer). Here ``data_received`` splits lines and hands
each to the one reader waiting for it; the session awaits nothing but that future.

Knows bytes and lines only; what a line means is :mod:`ivr.agi.protocol`'s business.
Errors are the FastAGI layer's own: :class:`AGIHangup` when the peer is gone,
:class:`AGIProtocolError` when it sent too much.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from ivr.agi.errors import AGIHangup, AGIProtocolError

MAX_LINE = 64 * 1024  # a reply line longer than this is a runaway peer
MAX_QUEUED_LINES = 64  # lines nobody asked for yet; past this, reading pauses


class AGIStream(asyncio.Protocol):
    """One FastAGI TCP connection. The server reads the header block with
    :meth:`read_headers`, then the session sends commands with :meth:`write` and takes
    reply lines with :meth:`pop_line` / :meth:`wait_line`."""

    # A few thousand live at once: no per-instance __dict__.
    __slots__ = ("transport", "_on_connect", "_loop", "_buf", "_lines", "_waiter", "_error",
                 "_in_headers", "_header_limit", "_paused", "_lost", "_closed", "_discard")

    def __init__(self, header_limit: int,
                 on_connect: Callable[[AGIStream], None] | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self._on_connect = on_connect  # the server's: starts the call's task
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()  # an unfinished line (or the header block so far)
        self._lines: deque[bytes] = deque()
        self._waiter: asyncio.Future[bytes] | None = None
        # Why no more lines will come (raised once the queued lines are used up).
        self._error: Exception | None = None
        self._in_headers = True
        self._header_limit = header_limit
        self._paused = False
        self._lost = False
        self._closed: asyncio.Future[None] | None = None  # set while waiting for the peer
        self._discard = False  # refusing: swallow whatever the peer sends

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._loop = asyncio.get_running_loop()
        if self._on_connect is not None:
            self._on_connect(self)

    def data_received(self, data: bytes) -> None:
        if self._discard or self._error is not None:
            return
        buf = self._buf  # what came before, without a line end (bytearray: a trickling peer
        # costs appends, not a copy of everything so far per byte)
        if self._in_headers:
            searched = max(0, len(buf) - 1)  # the blank line may straddle two reads
            buf += data
            end = buf.find(b"\n\n", searched)
            if end < 0:
                if len(buf) > self._header_limit:
                    self._fail(AGIProtocolError(
                        f"header block over {self._header_limit} bytes"))
                return
            self._in_headers = False
            self._push(bytes(buf[:end + 2]))
            data = bytes(buf[end + 2:])
            buf.clear()
        elif buf:
            end = data.find(b"\n")
            if end < 0:
                buf += data
                if len(buf) > MAX_LINE:
                    self._too_long()
                return
            buf += data[:end + 1]
            line = bytes(buf)
            buf.clear()
            if len(line) > MAX_LINE:
                self._too_long()
                return
            self._push(line)
            data = data[end + 1:]
        # data now starts at a line boundary; usually it is exactly one reply line.
        start = 0
        long = len(data) > MAX_LINE
        while (end := data.find(b"\n", start)) >= 0:
            if long and end - start >= MAX_LINE:
                self._too_long()
                return
            self._push(data[start:end + 1])  # usually all of data, which is then not copied
            start = end + 1
        if start < len(data):
            if len(data) - start > MAX_LINE:
                self._too_long()
            else:
                buf += data[start:]

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._error is None:
            if exc is None:
                self._error = _Closed(len(self._buf))
            else:
                self._error = ConnectionError(str(exc) or type(exc).__name__)
        self._buf.clear()
        self.fail_waiter(self._reading_error())
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    # -- reading ---------------------------------------------------------------------------

    async def read_headers(self) -> bytes:
        """The header block through its blank line; AGIProtocolError if the peer closes
        first or sends more than the limit. Call once, before any line is read."""
        try:
            return self.pop_line() or await self.wait_line()
        except AGIHangup:  # closed or reset: say so in header terms
            raise self._header_error() from None

    def pop_line(self) -> bytes | None:
        """The next received line (newline included), or None when none is queued yet."""
        lines = self._lines
        if not lines:
            return None
        line = lines.popleft()
        if self._paused and len(lines) < MAX_QUEUED_LINES // 2 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return line

    def wait_line(self) -> asyncio.Future[bytes]:
        """A future for the next line. Only after :meth:`pop_line` returned None; one
        waiter at a time. It fails with AGIHangup when the peer is gone and with
        AGIProtocolError for a line over MAX_LINE."""
        if self._error is not None:
            raise self._reading_error()
        assert self._loop is not None
        self._waiter = waiter = self._loop.create_future()
        return waiter

    def fail_waiter(self, exc: BaseException) -> None:
        """Wake the pending :meth:`wait_line` future with ``exc`` (a reply deadline, the
        connection's end)."""
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _push(self, line: bytes) -> None:
        waiter = self._waiter
        if waiter is not None and not self._lines:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(line)
                return
        self._lines.append(line)
        if len(self._lines) >= MAX_QUEUED_LINES and not self._paused and self.transport:
            self._paused = True  # nobody reads them: let TCP push back on the peer
            self.transport.pause_reading()

    def _fail(self, exc: Exception) -> None:
        self._error = exc
        self._buf.clear()
        self.fail_waiter(exc)

    def _too_long(self) -> None:
        self._fail(AGIProtocolError("reply line too long"))

    def _reading_error(self) -> Exception:
        err = self._error
        if isinstance(err, AGIProtocolError):
            return err
        if isinstance(err, _Closed):
            return AGIHangup("connection closed by Asterisk")
        return AGIHangup(f"connection lost: {err}")

    def _header_error(self) -> Exception:
        err = self._error
        if isinstance(err, AGIProtocolError):
            return err
        if isinstance(err, _Closed):
            return AGIProtocolError(f"peer closed after {err.pending} header bytes")
        return AGIProtocolError(f"connection error while reading headers: {err}")

    # -- writing and closing ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send bytes; AGIHangup when the connection is gone. No drain: one command is in
        flight at a time and Asterisk reads it before it replies, so nothing piles up."""
        transport = self.transport
        if transport is None or self._lost or transport.is_closing():
            raise AGIHangup("connection lost while sending")
        transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def drain_until_closed(self, timeout: float) -> None:
        """Discard what the peer sends until it closes or ``timeout`` passes, then close.
        Closing with unread data would send a reset that may destroy our last line."""
        self._discard = True
        self._buf.clear()
        self._lines.clear()
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if not self._lost:
            self._closed = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._closed
            except TimeoutError:
                pass
        self.close()

    def peer(self) -> str:
        try:
            host, port = self.transport.get_extra_info("peername")[:2]  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - only for a log line
            return "?"
        return f"{host}:{port}"


class _Closed(Exception):
    """The peer closed the connection (``pending`` bytes of an unfinished line left)."""

    def __init__(self, pending: int) -> None:
        super().__init__("closed")
        self.pending = pending
