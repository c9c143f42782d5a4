"""One FastAGI call: the headers Asterisk sent and typed methods for the AGI commands.

Hangup handling, chosen so a flow never acts on a caller who is gone:

- An out-of-band ``HANGUP`` line is never taken as a reply. The session notes it, keeps
  reading for the real reply of the command in flight and returns that reply (the command
  did run); the *next* command then raises :class:`AGIHangup` without touching the wire.
  ``hung_up`` tells a flow at any time.
- Key-reading and playback commands raise AGIHangup at once when Asterisk answers
  ``result=-1`` (its way of saying the channel went away during the command).
- 511 raises :class:`AGIDeadChannel` (an AGIHangup), the connection closing raises AGIHangup.
- ``hangup()`` on the caller's own channel is a no-op once the caller is gone, so flows can
  call it from ``finally`` blocks.

Every command and reply is logged at DEBUG with keypad-carrying values masked.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

from ivr import log as ivrlog
from ivr.agi import protocol
from ivr.agi.errors import AGICommandError, AGIHangup, AGIProtocolError
from ivr.agi.protocol import Reply
from ivr.agi.stream import AGIStream

logger = logging.getLogger(__name__)

# Replies of these commands never carry what the caller typed, so debug logs keep them
# readable; every other reply's result and data are digit-masked.
_PLAIN_REPLIES = frozenset({"ANSWER", "HANGUP", "VERBOSE", "SET MUSIC", "CHANNEL STATUS",
                            "SET VARIABLE", "NOOP"})


# The variable Read fills; one per channel is enough, one command runs at a time.
READ_VARIABLE = "STARPAY_KEYS"
# Read's arguments are split on "," and its file list on "&"; parentheses end options.
_NOT_IN_FILE_LIST = re.compile(r"[,&|()\s]")


class _ReplyTimeout(Exception):
    """Set on the stream's waiting read by the deadline timer."""


class AGISession:
    """A call in progress, over the :class:`AGIStream` of its FastAGI connection.

    Not safe for concurrent commands: one flow drives one call, one command at a time.
    """

    # Thousands of these live at once: no per-instance __dict__ to allocate and for the
    # cycle collector to traverse.
    __slots__ = ("stream", "headers", "args", "command_timeout", "last_reply",
                 "hung_up", "_broken", "_busy", "_loop", "_deadline", "_timer", "_expired",
                 "__weakref__")

    def __init__(self, stream: AGIStream, headers: dict[str, str], *,
                 command_timeout: float | None = 300.0) -> None:
        self.stream = stream
        self.headers = headers
        self.args = protocol.header_args(headers)
        self.command_timeout = command_timeout  # None: wait for replies forever
        self.last_reply: Reply | None = None
        self.hung_up = False
        self._broken: str | None = None  # why the stream can no longer be trusted
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Reply deadline (loop time) while a reply is awaited, else None. One timer per
        # session that is only re-armed when it fires early replaces asyncio.timeout()
        # per command, whose timer-heap push, cancel and task bookkeeping cost about a
        # fifth of a command's CPU time.
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._expired = False

    # -- headers ---------------------------------------------------------------------------

    def _header(self, key: str) -> str | None:
        value = self.headers.get(key, "")
        return None if value in ("", "unknown") else value

    @property
    def script(self) -> str:
        return self.headers.get("agi_network_script", "")

    @property
    def uniqueid(self) -> str:
        return self.headers.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.headers.get("agi_channel", "")

    @property
    def callerid(self) -> str | None:
        """The calling number, None when Asterisk has none ('unknown'). Spoofable."""
        return self._header("agi_callerid")

    @property
    def calleridname(self) -> str | None:
        return self._header("agi_calleridname")

    @property
    def language(self) -> str:
        return self.headers.get("agi_language") or "en"

    @property
    def extension(self) -> str:
        return self.headers.get("agi_extension", "")

    @property
    def context(self) -> str:
        return self.headers.get("agi_context", "")

    # -- the wire --------------------------------------------------------------------------

    async def command(self, *parts: object) -> Reply:
        """Send one command, return its 200 reply; raise on 510/511/520 and on hangup."""
        if self.hung_up:
            raise AGIHangup("caller hung up")
        if self._broken:
            raise AGIProtocolError(f"session unusable: {self._broken}")
        if self._busy:
            raise RuntimeError("AGISession used by two tasks at once")
        verb = parts[0] if parts else ""
        data = protocol.build_command(*parts)
        self._busy = True
        try:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("-> %s %s", verb, ivrlog.mask_digits(
                    " ".join(protocol.quote(p) for p in parts[1:])))
            try:
                self.stream.write(data)
            except AGIHangup:
                self.hung_up = True
                raise
            reply = await self._read_reply()
        finally:
            self._busy = False
        self.last_reply = reply
        if logger.isEnabledFor(logging.DEBUG):
            self._log_reply(str(verb), reply)
        return reply.raise_for_status()

    async def _read_reply(self) -> Reply:
        timeout = self.command_timeout
        if timeout is not None:
            self._arm(timeout)
        stream = self.stream
        try:
            while True:
                # Awaited here, not in a helper coroutine: one frame less to resume for
                # every reply.
                raw = stream.pop_line() or await stream.wait_line()
                # The usual "200 result=N [endpos=M]" straight from bytes, else in full.
                reply = protocol.parse_common_reply(raw)
                if reply is None:
                    line = protocol.decode_line(raw, "reply")
                    if line == protocol.HANGUP_LINE:
                        # Out of band: the reply to our command is still coming.
                        if not self.hung_up:
                            logger.debug("<- HANGUP (out of band)")
                        self.hung_up = True
                        continue
                    if line.startswith("520-"):
                        lines = [line]
                        while protocol.reply_needs_more(lines):
                            raw = stream.pop_line() or await stream.wait_line()
                            lines.append(protocol.decode_line(raw, "reply"))
                        reply = protocol.parse_reply(lines)
                    else:
                        reply = protocol.parse_reply_line(line)
                if self._expired:
                    # The timer fired in the same loop pass as the reply arrived: too late
                    # by the clock, and a reply counted late is never half-taken.
                    raise _ReplyTimeout
                if reply.code == 100:  # "100 Trying...": the real reply follows
                    continue
                return reply
        except _ReplyTimeout:
            self._broken = "reply timeout"
            raise AGIProtocolError(f"no reply within {timeout} s") from None
        except AGIProtocolError as exc:
            self._broken = str(exc)
            raise
        except AGIHangup:
            self.hung_up = True
            raise
        finally:
            self._deadline = None  # the pending timer, if any, then lapses harmlessly

    def _arm(self, timeout: float) -> None:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._deadline = deadline = loop.time() + timeout
        if self._timer is None:
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:  # no reply awaited now: the next command arms a new timer
            return
        assert self._loop is not None
        if self._loop.time() < deadline:  # replies came since; this is a later command's
            self._timer = self._loop.call_at(deadline, self._on_timer)
            return
        self._expired = True
        self.stream.fail_waiter(_ReplyTimeout())

    def _release(self) -> None:
        """Drop the deadline timer so a finished call is not kept alive by the loop."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _log_reply(self, verb: str, reply: Reply) -> None:
        if verb in _PLAIN_REPLIES or reply.code != 200:
            shown = reply.raw
        else:
            extra = " ".join(f"{k}={v}" for k, v in reply.extra.items())
            data = f" ({ivrlog.mask_digits(reply.data)})" if reply.data is not None else ""
            shown = f"{reply.code} result={ivrlog.mask_digits(reply.result)}{data} {extra}"
        logger.debug("<- %s", shown.rstrip())

    def _check_hangup(self, reply: Reply) -> Reply:
        if reply.result == "-1":
            self.hung_up = True
            raise AGIHangup(f"result=-1 ({reply.data or 'hangup'})")
        return reply

    def _key(self, reply: Reply) -> str | None:
        """The key a playback or key-reading command returned (a sync helper rather than an
        awaited wrapper: one coroutine frame less per command)."""
        return protocol.digit_of(self._check_hangup(reply).result)

    # -- commands --------------------------------------------------------------------------

    async def answer(self) -> None:
        self._check_hangup(await self.command("ANSWER"))

    async def hangup(self, channel: str | None = None) -> None:
        """Hang up the caller (or another channel by name). Quiet if the caller is gone."""
        if channel is None:
            if self.hung_up:
                return
            try:
                await self.command("HANGUP")
            except AGIHangup:
                pass
            self.hung_up = True  # our own channel is gone: no further commands make sense
        else:
            await self.command("HANGUP", channel)

    async def stream_file(self, name: str, escape_digits: str = "",
                          offset: int | None = None) -> str | None:
        """Play a prompt; return the key that interrupted it, or None.

        A missing file also returns None: check ``last_reply.endpos == 0`` to tell.
        """
        parts: list[object] = ["STREAM FILE", name, escape_digits]
        if offset is not None:
            parts.append(offset)
        return self._key(await self.command(*parts))

    async def control_stream_file(self, name: str, escape_digits: str = "",
                                  skip_ms: int | None = None, ff: str | None = None,
                                  rew: str | None = None, pause: str | None = None,
                                  offset_ms: int | None = None) -> str | None:
        """Play with fast-forward/rewind/pause keys; return the escape key pressed or None."""
        parts: list[object] = ["CONTROL STREAM FILE", name, escape_digits]
        # Optional arguments are positional in Asterisk: stop at the first one not given.
        for value in (skip_ms, ff, rew, pause, offset_ms):
            if value is None:
                break
            parts.append(value)
        return self._key(await self.command(*parts))

    async def get_data(self, file: str, timeout_ms: int | None = None,
                       max_digits: int | None = None) -> tuple[str, bool]:
        """Play ``file`` and collect digits; return (digits, timed_out).

        Asterisk ends on ``#``, on max_digits, or on the inter-digit timeout; digits typed
        before a timeout are returned with timed_out True.
        """
        parts: list[object] = ["GET DATA", file]
        if timeout_ms is not None or max_digits is not None:
            parts.append(timeout_ms if timeout_ms is not None else 0)  # 0: Asterisk default
        if max_digits is not None:
            parts.append(max_digits)
        reply = self._check_hangup(await self.command(*parts))
        return reply.result, reply.timed_out

    async def read_entry(self, files: Sequence[str], max_digits: int, timeout_ms: int,
                         terminators: str = "#") -> tuple[str, str]:
        """Play ``files`` and collect keys in ONE command; return (keys, READSTATUS).

        ``EXEC Read`` then one ``GET FULL VARIABLE``: res_agi reads and frees every frame
        that arrives while no command runs, so keys typed between two commands are lost;
        inside Read, Asterisk itself plays the ``&`` list (any key interrupts it, and a key
        between two pieces still counts: app.c waits 50 ms for one after each piece but the
        last) and collects ``*`` like a digit. It stops on a key in ``terminators`` (not
        returned; "" makes every key count), on ``max_digits`` (1-255) or on the timeout,
        which applies to the first key after the last piece and between later keys (after
        a key that cut an earlier piece, the gap between keys is the channel's
        TIMEOUT(digit), 5 s by default). READSTATUS is OK (ended by max or terminator),
        TIMEOUT (keys so far, maybe none) or INTERRUPTED; HANGUP raises AGIHangup, ERROR
        (e.g. a missing last file) AGICommandError. GET DATA is no alternative: its handler
        streams its file argument as one name, so an ``&`` list is a missing file.
        """
        if not files:
            raise ValueError("read_entry needs at least one file to play")
        bad = [f for f in files if not f or _NOT_IN_FILE_LIST.search(f)]
        if bad:
            raise ValueError(f"sound names cannot hold , & | ( ) or spaces in Read: {bad}")
        if not 1 <= max_digits <= 255 or timeout_ms <= 0:
            raise ValueError("Read takes 1-255 digits and a timeout above 0")
        # Read's default terminator is "#"; t(...) names others and a bare t none at all.
        options = "" if terminators == "#" else f"t({terminators})" if terminators else "t"
        await self.exec("Read", READ_VARIABLE, "&".join(files), max_digits, options, 1,
                        f"{timeout_ms / 1000:g}")
        got = await self.get_full_variable(f"${{{READ_VARIABLE}}}:${{READSTATUS}}") or ":"
        keys, _, status = got.rpartition(":")
        if status == "HANGUP":
            self.hung_up = True
            raise AGIHangup("caller hung up during Read")
        if status not in ("OK", "TIMEOUT", "INTERRUPTED"):
            reply = self.last_reply
            raise AGICommandError(200, list(reply.lines) if reply else [],
                                  f"Read ended with READSTATUS={status or 'unset'}")
        return keys, status

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """Wait for one key; None on timeout. ``-1`` waits forever (Asterisk's meaning)."""
        return self._key(await self.command("WAIT FOR DIGIT", timeout_ms))

    async def say_digits(self, digits: str, escape: str = "") -> str | None:
        return self._key(await self.command("SAY DIGITS", digits, escape))

    async def say_number(self, n: int, escape: str = "") -> str | None:
        return self._key(await self.command("SAY NUMBER", n, escape))

    async def say_alpha(self, text: str, escape: str = "") -> str | None:
        return self._key(await self.command("SAY ALPHA", text, escape))

    async def get_variable(self, name: str) -> str | None:
        """A channel variable's value, None when it is not set."""
        reply = await self.command("GET VARIABLE", name)
        return reply.data if reply.result == "1" else None

    async def get_full_variable(self, expr: str) -> str | None:
        """Evaluate an expression such as ``${CALLERID(num)}``; None when unset."""
        reply = await self.command("GET FULL VARIABLE", expr)
        return reply.data if reply.result == "1" else None

    async def set_variable(self, name: str, value: object) -> None:
        await self.command("SET VARIABLE", name, value)

    async def exec(self, app: str, *args: object) -> Reply:
        """Run a dialplan application; its arguments are joined with ``,`` as in the
        dialplan. Raises AGIHangup on -1 (the app saw a hangup) and AGICommandError on -2
        (no such application)."""
        parts: list[object] = ["EXEC", app]
        if args:
            parts.append(",".join(str(a) for a in args))
        reply = self._check_hangup(await self.command(*parts))
        if reply.result == "-2":
            raise AGICommandError(reply.code, list(reply.lines),
                                  f"no dialplan application {app!r}")
        return reply

    async def verbose(self, msg: str, level: int = 1) -> None:
        await self.command("VERBOSE", msg, level)

    async def set_music(self, on: bool, music_class: str | None = None) -> None:
        parts: list[object] = ["SET MUSIC", "on" if on else "off"]
        if music_class:
            parts.append(music_class)
        await self.command(*parts)

    async def channel_status(self) -> int:
        """Asterisk's channel state number (6 = up); see AST_STATE_* in Asterisk."""
        return (await self.command("CHANNEL STATUS")).result_int

    async def close(self) -> None:
        """Close the connection (Asterisk then resumes the dialplan after AGI())."""
        self._release()
        self.stream.close()
