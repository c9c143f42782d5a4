"""AGIStream fed by hand: bytes in any chunking give the same header block and lines; a
peer that sends too much, too slowly or goes away gets the documented error."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.agi.errors import AGIHangup, AGIProtocolError
from ivr.agi.stream import MAX_LINE, MAX_QUEUED_LINES, AGIStream

HEADERS = b"agi_network: yes\nagi_network_script: pay\nagi_callerid: +15551234567\n\n"


class Transport(asyncio.Transport):
    """Records what the stream does to its transport."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.paused = False
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def connected() -> tuple[AGIStream, Transport]:
    stream, transport = AGIStream(64 * 1024), Transport()
    stream.connection_made(transport)
    return stream, transport


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def drain(stream: AGIStream) -> list[bytes]:
    lines = []
    while (line := stream.pop_line()) is not None:
        lines.append(line)
    return lines


@settings(max_examples=200, deadline=None)
@given(replies=st.lists(st.from_regex(rb"\A[ -~]{0,30}\Z"), max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_gives_the_same_header_block_and_lines(replies: list[bytes],
                                                           cuts: list[int]) -> None:
    async def run() -> tuple[bytes, list[bytes]]:
        stream, _ = connected()
        wire = HEADERS + b"".join(r + b"\n" for r in replies)
        for chunk in chunked(wire, cuts):
            stream.data_received(chunk)
        return await stream.read_headers(), drain(stream)

    block, lines = asyncio.run(run())
    assert block == HEADERS
    assert lines == [r + b"\n" for r in replies]


async def test_a_waiting_reader_gets_the_line_when_it_completes() -> None:
    stream, transport = connected()
    stream.data_received(HEADERS)
    await stream.read_headers()
    stream.write(b"ANSWER\n")
    assert transport.sent == [b"ANSWER\n"]
    assert stream.pop_line() is None
    waiter = stream.wait_line()
    stream.data_received(b"200 res")
    assert not waiter.done()
    stream.data_received(b"ult=0\n200 result=1\n")
    assert await waiter == b"200 result=0\n"
    assert stream.pop_line() == b"200 result=1\n"


async def test_header_reader_waits_for_the_blank_line_split_over_reads() -> None:
    stream, _ = connected()
    reading = asyncio.ensure_future(stream.read_headers())
    stream.data_received(HEADERS[:-1])
    await asyncio.sleep(0)
    assert not reading.done()
    stream.data_received(HEADERS[-1:] + b"HANGUP\n")
    assert await reading == HEADERS
    assert stream.pop_line() == b"HANGUP\n"


async def test_peer_closing_mid_header_is_a_protocol_error() -> None:
    stream, _ = connected()
    reading = asyncio.ensure_future(stream.read_headers())
    stream.data_received(b"agi_network: yes\n")
    stream.connection_lost(None)
    with pytest.raises(AGIProtocolError, match="peer closed after 17 header bytes"):
        await reading


async def test_trickled_oversized_header_is_refused() -> None:
    stream, _ = connected()
    reading = asyncio.ensure_future(stream.read_headers())
    for _ in range(70):
        stream.data_received(b"a" * 1024)
    with pytest.raises(AGIProtocolError, match="header block over 65536 bytes"):
        await reading


@pytest.mark.parametrize("pieces", [1, 7, 300])
async def test_reply_line_over_the_limit_fails_the_reader(pieces: int) -> None:
    stream, _ = connected()
    stream.data_received(HEADERS + b"200 result=0\n")
    await stream.read_headers()
    assert stream.pop_line() == b"200 result=0\n"
    waiter = stream.wait_line()
    line = b"200 result=1 (" + b"x" * MAX_LINE + b")\n"
    size = len(line) // pieces + 1
    for i in range(0, len(line), size):
        stream.data_received(line[i:i + size])
    with pytest.raises(AGIProtocolError, match="reply line too long"):
        await waiter
    stream.data_received(b"200 result=0\n")  # nothing after the runaway line is trusted
    assert stream.pop_line() is None


async def test_lines_received_before_the_close_come_first() -> None:
    stream, _ = connected()
    stream.data_received(HEADERS + b"200 result=-1\n200 resu")
    await stream.read_headers()
    stream.connection_lost(None)
    assert stream.pop_line() == b"200 result=-1\n"
    assert stream.pop_line() is None
    with pytest.raises(AGIHangup, match="closed by Asterisk"):
        stream.wait_line()
    with pytest.raises(AGIHangup, match="connection lost while sending"):
        stream.write(b"ANSWER\n")


async def test_connection_error_wakes_the_reader_as_a_hangup() -> None:
    stream, _ = connected()
    stream.data_received(HEADERS)
    await stream.read_headers()
    waiter = stream.wait_line()
    stream.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(AGIHangup, match="connection lost: reset by peer"):
        await waiter


async def test_unread_lines_pause_reading_until_taken() -> None:
    stream, transport = connected()
    stream.data_received(HEADERS)
    await stream.read_headers()
    stream.data_received(b"junk\n" * (MAX_QUEUED_LINES - 1))
    assert not transport.paused
    stream.data_received(b"junk\n")
    assert transport.paused  # the peer's TCP window fills; memory stays bounded
    for _ in range(MAX_QUEUED_LINES // 2 + 1):
        stream.pop_line()
    assert not transport.paused


async def test_refusing_discards_input_and_closes_when_the_peer_does() -> None:
    stream, transport = connected()
    stream.write(b"FAILURE\n")
    draining = asyncio.ensure_future(stream.drain_until_closed(5))
    stream.data_received(HEADERS)
    await asyncio.sleep(0)
    assert not draining.done() and not transport.closed
    stream.connection_lost(None)
    await asyncio.wait_for(draining, 1)
    assert transport.closed
    assert transport.sent == [b"FAILURE\n"]
