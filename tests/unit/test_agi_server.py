"""AGIServer and AGISession over real TCP on port 0, driven by the FakeAsterisk client."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ivr import log as ivrlog
from ivr.agi import (
    AGICommandError,
    AGIDeadChannel,
    AGIHangup,
    AGIProtocolError,
    AGIServer,
    AGISession,
    Handler,
)
from ivr.agi.stream import AGIStream
from ivr.qa.fake_asterisk import Command, FakeAsterisk

USAGE_520 = ("520-Invalid command syntax.  Proper usage follows:\n"
             " Usage: GET DATA <file to be streamed> [timeout] [maxdigits]\n"
             "520 End of proper usage.")


@asynccontextmanager
async def serving(routes: Any, **kw: Any) -> AsyncIterator[AGIServer]:
    kw.setdefault("header_timeout", 2.0)
    kw.setdefault("command_timeout", 2.0)
    kw.setdefault("shutdown_grace", 2.0)
    async with AGIServer(routes, port=0, **kw) as server:
        yield server


async def wait_until(cond: Callable[[], bool], limit: float = 2.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (bounded, so a bug cannot hang)."""
    async with asyncio.timeout(3):
        return await reader.read()


# -- a normal call -------------------------------------------------------------------------

async def test_call_round_trip_with_keys_variables_and_headers() -> None:
    seen: dict[str, Any] = {}

    async def flow(s: AGISession) -> None:
        seen["call_id"] = ivrlog.call_id.get()
        seen["headers"] = (s.script, s.callerid, s.calleridname, s.args, s.language,
                           s.extension, s.context)
        await s.answer()
        seen["key"] = await s.stream_file("welcome", "12")
        seen["missing"] = (await s.stream_file("nosuch"), s.last_reply and s.last_reply.endpos)
        seen["data"] = await s.get_data("enter-account", 5000, 4)
        seen["short"] = await s.get_data("enter-zip", 3000, 5)
        seen["wait"] = await s.wait_for_digit(1000)
        await s.set_variable("NOTE", 'two "quoted" words')
        seen["var"] = await s.get_variable("NOTE")
        seen["unset"] = await s.get_variable("NOPE")
        seen["status"] = await s.channel_status()
        await s.hangup()

    async with serving({"pay": flow}) as server:
        fake = FakeAsterisk(server.port, script="pay", args=["A"], calleridname="unknown",
                            missing_files=["nosuch"])
        fake.press("2").press("1234").press("98").pause()
        await fake.run()

    assert seen["call_id"] == fake.uniqueid
    assert seen["headers"] == ("pay", "+15551234567", None, ["A"], "en", "*PAY", "ivr")
    assert seen["key"] == "2"
    assert seen["missing"] == (None, 0)
    assert seen["data"] == ("1234", False)
    assert seen["short"] == ("98", True)
    assert seen["wait"] is None
    assert seen["var"] == 'two "quoted" words'
    assert seen["unset"] is None
    assert seen["status"] == 6
    assert fake.streamed == ["welcome", "nosuch", "enter-account", "enter-zip"]
    assert fake.verbs()[-1] == "HANGUP"


@pytest.mark.parametrize("drop,expected", [(False, [None, "5", "1"]),
                                            (True, ["1", None, None])])
async def test_fake_caller_keeps_or_drops_keys_a_prompt_does_not_take(
        drop: bool, expected: list[str | None]) -> None:
    """Typed ahead, the 5 waits for the next command that reads keys; pressed as on a
    phone while the prompt plays, the 5 is lost and the 1 interrupts the prompt."""
    got: list[str | None] = []

    async def flow(s: AGISession) -> None:
        got.append(await s.stream_file("menu", "1"))
        got.append(await s.wait_for_digit(1000))
        got.append(await s.wait_for_digit(1000))

    async with serving({"pay": flow}) as server:
        await FakeAsterisk(server.port, keys="51", drop_untaken_keys=drop).run()
    assert got == expected


async def test_callable_routes() -> None:
    async def flow(s: AGISession) -> None:
        await s.verbose(f"arg {s.args[0]}")

    def route(script: str) -> Handler | None:
        return flow if script.startswith("acct/") else None

    async with serving(route) as server:
        fake = FakeAsterisk(server.port, script="acct/7", args=["x y"])
        await fake.run()
    assert fake.transcript[0].args == ("arg x y", "1")
    assert fake.agi_status == "SUCCESS"


# -- reply kinds and hangups ------------------------------------------------------------------

async def test_error_replies_raise_and_the_stream_stays_in_step() -> None:
    caught: list[object] = []
    replies = {"EXEC": "510 Invalid or unknown command", "GET DATA": USAGE_520,
               "SAY ALPHA": "520 Invalid command syntax.  Proper usage not available."}

    def responder(cmd: Command, fake: FakeAsterisk) -> str | None:
        return replies.get(cmd.verb)

    async def flow(s: AGISession) -> None:
        for call in (lambda: s.exec("Nope"), lambda: s.get_data("x"),
                     lambda: s.say_alpha("abc")):
            try:
                await call()
            except AGICommandError as exc:
                caught.append(exc.code)
        # The reply after a 3-line 520 must be this command's own.
        caught.append(await s.say_number(7))
        caught.append(s.last_reply.raw if s.last_reply else None)

    async with serving({"pay": flow}) as server:
        await FakeAsterisk(server.port, responder=responder).run()
    assert caught == [510, 520, 520, None, "200 result=0"]


async def test_511_raises_dead_channel() -> None:
    outcome: list[str] = []

    async def flow(s: AGISession) -> None:
        try:
            await s.answer()
        except AGIDeadChannel:
            outcome.append("dead")

    async with serving({"pay": flow}) as server:
        fake = FakeAsterisk(server.port, responder=lambda c, f: (
            "511 Command Not Permitted on a dead channel or intercept routine"))
        await fake.run()
    assert outcome == ["dead"]


async def test_hangup_during_prompt_raises_and_stops_the_flow() -> None:
    steps: list[str] = []

    async def flow(s: AGISession) -> None:
        await s.answer()
        try:
            await s.stream_file("welcome", "1")
        except AGIHangup:
            steps.append("hangup")
            assert s.hung_up
            await s.hangup()  # a no-op once the caller is gone
            raise
        steps.append("not reached")

    async with serving({"pay": flow}) as server:
        fake = FakeAsterisk(server.port, hangup_at=lambda c: c.verb == "STREAM FILE")
        await fake.run()
    assert steps == ["hangup"]
    assert fake.verbs() == ["ANSWER", "STREAM FILE"]  # nothing sent after the hangup
    assert fake.replies[-1] == "200 result=-1"


async def test_out_of_band_hangup_is_not_taken_as_the_reply() -> None:
    got: list[Any] = []

    def responder(cmd: Command, fake: FakeAsterisk) -> str | None:
        # HANGUP arrives before the reply of the command in flight (as Asterisk does).
        return "HANGUP\n200 result=1 (the value)" if cmd.verb == "GET VARIABLE" else None

    async def flow(s: AGISession) -> None:
        got.append(await s.get_variable("X"))
        got.append(s.hung_up)
        try:
            await s.verbose("after")
        except AGIHangup:
            got.append("next command raised")

    async with serving({"pay": flow}) as server:
        fake = FakeAsterisk(server.port, responder=responder)
        await fake.run()
    assert got == ["the value", True, "next command raised"]
    assert fake.verbs() == ["GET VARIABLE"]


async def test_connection_closed_mid_command_is_a_hangup() -> None:
    got: list[str] = []

    async def flow(s: AGISession) -> None:
        try:
            await s.answer()
        except AGIHangup:
            got.append("hangup")

    async with serving({"pay": flow}) as server:
        fake = await FakeAsterisk(server.port).connect()
        assert await fake.read_command() is not None
        await fake.close()
        await wait_until(lambda: server.active_sessions == 0)
    assert got == ["hangup"]


async def test_reply_timeout_is_a_protocol_error() -> None:
    got: list[type[Exception]] = []

    async def flow(s: AGISession) -> None:
        try:
            await s.answer()
        except AGIProtocolError as exc:
            got.append(type(exc))
        with pytest.raises(AGIProtocolError):  # the stream is out of step now
            await s.answer()

    async with serving({"pay": flow}, command_timeout=0.1) as server:
        fake = await FakeAsterisk(server.port).connect()
        assert (await fake.read_command()) is not None  # and never answer it
        await wait_until(lambda: server.active_sessions == 0)
        await fake.close()
    assert got == [AGIProtocolError]


async def test_reply_deadline_counts_from_each_command() -> None:
    """The per-session timer is re-armed, not reset per call: a long call of prompt replies
    never times out, and a reply that does not come still fails after command_timeout."""
    outcome: list[Any] = []

    async def flow(s: AGISession) -> None:
        for _ in range(4):
            await s.verbose("quick")
        sent = time.monotonic()
        try:
            await s.answer()
        except AGIProtocolError as exc:
            outcome.extend([str(exc), time.monotonic() - sent])

    async with serving({"pay": flow}, command_timeout=0.3) as server:
        fake = await FakeAsterisk(server.port).connect()
        for _ in range(4):  # 4 x 0.15 s: twice the timeout in all, each reply in time
            assert (await fake.read_command()) is not None
            await asyncio.sleep(0.15)
            await fake.reply("200 result=1")
        assert (await fake.read_command()) is not None  # ANSWER, never answered
        await wait_until(lambda: server.active_sessions == 0)
        await fake.close()
    assert outcome[0] == "no reply within 0.3 s"
    assert 0.28 < outcome[1] < 0.6


async def test_finished_call_is_not_kept_alive_by_its_reply_timer() -> None:
    refs: list[weakref.ref[AGISession]] = []

    async def flow(s: AGISession) -> None:
        refs.append(weakref.ref(s))
        await s.answer()

    async with serving({"pay": flow}, command_timeout=300) as server:
        await FakeAsterisk(server.port).run()
        await wait_until(lambda: server.active_sessions == 0)
        gc.collect()
        assert refs[0]() is None


async def test_oversized_reply_line_is_a_protocol_error_and_breaks_the_session() -> None:
    got: list[str] = []

    async def flow(s: AGISession) -> None:
        try:
            await s.get_variable("HUGE")
        except AGIProtocolError as exc:
            got.append(str(exc))
        try:
            await s.answer()
        except AGIProtocolError as exc:
            got.append(str(exc))

    def responder(cmd: Command, fake: FakeAsterisk) -> str | None:
        return "200 result=1 (" + "x" * 70_000 + ")"

    async with serving({"pay": flow}) as server:
        fake = FakeAsterisk(server.port, responder=responder)
        await fake.run()
    assert got == ["reply line too long", "session unusable: reply line too long"]
    assert fake.verbs() == ["GET VARIABLE"]


class _Transport(asyncio.Transport):
    """Just enough transport for an AGIStream fed by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return False


async def test_reply_arriving_as_the_deadline_fires_counts_as_late() -> None:
    """Timer and reply in the same loop pass: a reply that came as late as the deadline is
    not returned (the command counts as timed out, and the session as out of step)."""
    stream = AGIStream(1024)
    stream.connection_made(_Transport())
    stream.data_received(b"agi_network: yes\n\n")
    assert await stream.read_headers() == b"agi_network: yes\n\n"
    session = AGISession(stream, {}, command_timeout=60)
    task = asyncio.create_task(session.answer())
    await asyncio.sleep(0)  # the command is sent, its reply awaited
    stream.data_received(b"200 result=0\n")  # the reply wakes the reading task...
    session._deadline = asyncio.get_running_loop().time() - 1
    session._on_timer()  # ...and the deadline timer runs before it
    with pytest.raises(AGIProtocolError, match="no reply within"):
        await task
    with pytest.raises(AGIProtocolError, match="unusable"):
        await session.answer()


# -- bad peers ---------------------------------------------------------------------------------

async def _assert_dropped(server: AGIServer, payload: bytes, caplog: pytest.LogCaptureFixture,
                          reason: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(payload)
    await writer.drain()
    assert await read_all(reader) == b""  # no command, just closed
    writer.close()
    await wait_until(lambda: server.active_sessions == 0)
    assert reason in caplog.text


async def test_peer_closing_mid_header_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    called: list[str] = []

    async def flow(s: AGISession) -> None:
        called.append(s.uniqueid)

    async with serving({"pay": flow}) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\nagi_network_scr")
        writer.write_eof()
        assert await read_all(reader) == b""
        writer.close()
        await wait_until(lambda: server.active_sessions == 0)
        assert "peer closed after" in caplog.text
        # The server is still fine for the next call.
        await FakeAsterisk(server.port).run()
    assert len(called) == 1


async def test_oversized_header_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with serving({}) as server:
        await _assert_dropped(server, b"agi_x: " + b"a" * 70_000, caplog, "over 65536 bytes")


async def test_oversized_header_line_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with serving({}) as server:
        await _assert_dropped(server, b"agi_x: " + b"a" * 9000 + b"\n\n", caplog,
                              "header line over")


async def test_binary_header_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    async with serving({}) as server:
        await _assert_dropped(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
                              caplog, "binary data in header")


async def test_silent_peer_times_out_while_other_calls_complete(
        caplog: pytest.LogCaptureFixture) -> None:
    async def flow(s: AGISession) -> None:
        await s.answer()

    async with serving({"pay": flow}, header_timeout=0.5) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"agi_network: yes\n")  # ...and never the blank line
        await writer.drain()
        started = time.monotonic()
        fake = FakeAsterisk(server.port)
        await fake.run()
        other_done = time.monotonic() - started
        assert fake.verbs() == ["ANSWER"]
        assert await read_all(reader) == b""
        waited = time.monotonic() - started
        writer.close()
    assert other_done < 0.25  # served while the silent peer was still pending
    assert 0.4 < waited < 1.5
    assert "no complete header block within 0.5 s" in caplog.text


async def test_over_max_sessions_is_refused_with_failure() -> None:
    release = asyncio.Event()

    async def flow(s: AGISession) -> None:
        await s.answer()
        await release.wait()

    async with serving({"pay": flow}, max_sessions=1) as server:
        first = await FakeAsterisk(server.port).connect()
        assert (await first.read_command()) is not None
        await first.reply("200 result=0")
        assert server.active_sessions == 1
        started = time.monotonic()
        second = FakeAsterisk(server.port)
        await second.run()
        assert second.agi_status == "FAILURE"
        assert second.transcript == []
        assert time.monotonic() - started < 0.5
        assert server.refused == 1
        release.set()
        await first.run()
    assert first.agi_status == "SUCCESS"


async def test_unknown_script_gets_failure() -> None:
    async with serving({"pay": lambda s: s.answer()}) as server:
        fake = FakeAsterisk(server.port, script="nosuch")
        await fake.run()
    assert fake.agi_status == "FAILURE"
    assert fake.verbs() == ["VERBOSE"]


# -- lifecycle and isolation -------------------------------------------------------------------

async def test_close_lets_a_live_call_finish_and_refuses_new_ones() -> None:
    in_call = asyncio.Event()
    finished: list[str] = []

    async def flow(s: AGISession) -> None:
        await s.answer()
        in_call.set()
        await asyncio.sleep(0.2)  # still talking when shutdown starts
        await s.stream_file("goodbye")
        finished.append("done")

    server = AGIServer({"pay": flow}, port=0, shutdown_grace=5)
    await server.start()
    port = server.port
    fake = FakeAsterisk(port)
    call = asyncio.create_task(fake.run())
    await in_call.wait()
    await server.close()
    await call
    assert finished == ["done"]
    assert fake.streamed == ["goodbye"]
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_close_cancels_calls_past_the_grace_period() -> None:
    cancelled: list[str] = []

    async def flow(s: AGISession) -> None:
        await s.answer()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(s.uniqueid)
            raise

    server = AGIServer({"pay": flow}, port=0, shutdown_grace=0.2)
    await server.start()
    fake = FakeAsterisk(server.port)
    call = asyncio.create_task(fake.run())
    await wait_until(lambda: len(fake.replies) == 1)
    started = time.monotonic()
    await server.close()
    assert time.monotonic() - started < 1.0
    await call
    assert cancelled == [fake.uniqueid]
    assert server.active_sessions == 0


async def test_handler_exception_is_isolated_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    async def broken(s: AGISession) -> None:
        await s.answer()
        raise RuntimeError("bug in a flow")

    async def fine(s: AGISession) -> None:
        await s.answer()
        await s.stream_file("ok")

    async with serving({"broken": broken, "fine": fine}) as server:
        bad = FakeAsterisk(server.port, script="broken", uniqueid="1700000000.99")
        good = FakeAsterisk(server.port, script="fine")
        await asyncio.gather(bad.run(), good.run())
        assert server.active_sessions == 0
    assert bad.agi_status == "FAILURE"
    assert good.streamed == ["ok"] and good.agi_status == "SUCCESS"
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failed) == 1
    assert "1700000000.99" in failed[0].getMessage()
    assert failed[0].exc_info and "bug in a flow" in str(failed[0].exc_info[1])


async def test_digits_are_masked_in_debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    async def flow(s: AGISession) -> None:
        key = await s.stream_file("menu", "0123456789")
        digits, _ = await s.get_data("enter-account", 5000, 6)
        pin = await s.wait_for_digit(2000)
        await s.say_digits(digits)
        await s.set_variable("STARPAY_ACCOUNT", f"{key}{digits}{pin}")

    caplog.set_level(logging.DEBUG, logger="ivr.agi")
    async with serving({"pay": flow}) as server:
        fake = FakeAsterisk(server.port, keys="7" + "583920" + "4")
        await fake.run()
    assert fake.variables["STARPAY_ACCOUNT"] == "75839204"  # the keys did flow through
    # The command/reply exchange only: other lines carry a random port that may hold "52".
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "ivr.agi.session")
    assert "GET DATA" in text and "•" in text  # the exchange was logged...
    for secret in ("583920", "55", "52", "result=7", "result=4"):
        assert secret not in text  # ...but no key, ASCII code or digit string


async def test_concurrent_commands_on_one_session_are_refused() -> None:
    errors: list[str] = []

    async def flow(s: AGISession) -> None:
        first = asyncio.create_task(s.answer())
        await asyncio.sleep(0)
        try:
            await s.verbose("x")
        except RuntimeError as exc:
            errors.append(str(exc))
        await first

    async with serving({"pay": flow}) as server:
        await FakeAsterisk(server.port).run()
    assert errors and "two tasks" in errors[0]
