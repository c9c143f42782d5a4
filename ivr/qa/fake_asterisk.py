"""A fake Asterisk: a FastAGI *client* that calls our server the way Asterisk does.

It connects over TCP, sends the ``agi_*`` header block, then answers every command the
server sends, so call flows can be tested in milliseconds without a PBX::

    fake = FakeAsterisk(port, script="pay", callerid="+15551234567")
    fake.press("1234#")           # keys the caller will press, in order
    await fake.run()              # until the server closes the connection
    assert fake.streamed == ["welcome", "enter-account"]
    assert fake.transcript[0].verb == "ANSWER"

The scripted caller:

- Keys queued with :meth:`press` are consumed by commands that read keys. ``STREAM FILE``
  (and ``CONTROL STREAM FILE``, ``SAY *``) is interrupted by the next queued key when that
  key is one of its escape digits (the reply is the key's ASCII code); otherwise it plays
  to the end and the key stays queued (typed ahead). With ``drop_untaken_keys`` the queued
  keys up to a pause count as pressed while it plays, so those before the first escape
  digit are dropped, as Asterisk ignores DTMF outside the escape digits while it streams.
  ``GET DATA`` takes queued keys up to its max digits or a ``#`` (consumed, not returned);
  if the queue runs dry or reaches a pause (:meth:`pause`) first, the reply says
  ``(timeout)``. ``WAIT FOR DIGIT`` takes one key or times out (result=0).
- ``EXEC Read VAR,a&b&c,max,options,attempts,timeout`` plays the ``&`` list as Asterisk's
  Read does (app_read.c, ast_app_getdata_terminator in main/app.c): any key interrupts a
  piece; after each piece but the last a short wait lets a key in, after the last one
  the timeout; keys are collected (``*`` included) up to ``max`` or a terminator (``#``
  unless ``t(...)`` names others; a bare ``t`` none), which is not kept; ``#`` alone
  gives an empty value with OK. VAR and READSTATUS (OK, TIMEOUT; HANGUP when the caller
  hangs up during it; ERROR when the last file is missing) are then channel variables,
  so ``GET VARIABLE`` and ``GET FULL VARIABLE`` (any ``${NAME}`` in the text) read them.
- ``on_sound(file, fake)`` is called as each sound starts (every piece of a Read list
  too), so a scripted caller may press keys at that moment; ``streamed`` lists the sounds
  started, a Read's up to the piece a key cut.
- ``live=True`` is a caller in real time, as Asterisk sees one: a key arrives when
  :meth:`press` is called. If no command is in flight then (between the reply to one
  command and the arrival of the next), it is lost, as res_agi reads and frees the
  frames that arrive then (``lost`` keeps them); keys a command leaves unread are lost
  when it ends. Key-reading commands wait for keys in real time: ``WAIT FOR DIGIT`` and
  Read's timeouts in full, each sound ``play_s`` seconds (an escape digit or, for Read,
  any key cuts it; other keys are dropped, as ``drop_untaken_keys``).
- Files named in ``missing_files`` play with ``endpos=0``, like a missing sound in Asterisk.
- Channel variables live in ``variables``; SET VARIABLE writes there, GET VARIABLE and
  GET FULL VARIABLE (``${NAME}`` only) read from it.
- ``hangup_at=N`` (the Nth command, 1-based) or ``hangup_at=predicate(cmd)`` makes the
  caller hang up while that command runs: ``HANGUP`` is sent out of band, then the command
  is answered ``200 result=-1``. Afterwards the channel is dead: commands Asterisk refuses
  on a dead channel get ``511``. :meth:`hangup_now` does it between commands.
- ``responder(cmd, fake)`` may return the reply text for any command (one line or several
  joined by ``\\n``) to script 510/520/odd replies; returning None falls back to the
  defaults above. :meth:`send_raw` writes arbitrary bytes for protocol tests.
- ``transcript`` lists every command received (:class:`Command`: verb, args, raw line) and
  ``replies`` the text sent back, in order. ``agi_status`` ends as Asterisk's AGISTATUS
  would: SUCCESS (server closed), FAILURE (server sent a ``FAILURE`` line) or HANGUP.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

from ivr.agi.protocol import split_command

# Longest first so "CONTROL STREAM FILE" wins over a shorter prefix.
VERBS = sorted([
    "ANSWER", "ASYNCAGI BREAK", "CHANNEL STATUS", "CONTROL STREAM FILE", "DATABASE DEL",
    "DATABASE DELTREE", "DATABASE GET", "DATABASE PUT", "EXEC", "GET DATA",
    "GET FULL VARIABLE", "GET OPTION", "GET VARIABLE", "GOSUB", "HANGUP", "NOOP",
    "RECEIVE CHAR", "RECEIVE TEXT", "RECORD FILE", "SAY ALPHA", "SAY DATE", "SAY DATETIME",
    "SAY DIGITS", "SAY NUMBER", "SAY PHONETIC", "SAY TIME", "SEND IMAGE", "SEND TEXT",
    "SET AUTOHANGUP", "SET CALLERID", "SET CONTEXT", "SET EXTENSION", "SET MUSIC",
    "SET PRIORITY", "SET VARIABLE", "STREAM FILE", "TDD MODE", "VERBOSE", "WAIT FOR DIGIT",
], key=len, reverse=True)

# Commands Asterisk still accepts once the channel is gone (its "dead" flag).
DEAD_OK = frozenset({"GET VARIABLE", "GET FULL VARIABLE", "SET VARIABLE", "VERBOSE", "NOOP",
                     "HANGUP", "EXEC", "DATABASE GET", "DATABASE PUT", "DATABASE DEL",
                     "DATABASE DELTREE", "CHANNEL STATUS", "ASYNCAGI BREAK", "GOSUB"})

DEAD_REPLY = "511 Command Not Permitted on a dead channel or intercept routine"
UNKNOWN_REPLY = "510 Invalid or unknown command"
PAUSE = ""  # a queue entry meaning "the caller stays silent": ends GET DATA with a timeout

_ids = itertools.count(1)


@dataclass(frozen=True)
class Command:
    """One command as received: ``verb`` ("STREAM FILE"), ``args`` (unquoted), ``raw``."""

    verb: str
    args: tuple[str, ...]
    raw: str

    @classmethod
    def parse(cls, line: str) -> Command:
        words = split_command(line)
        upper = " ".join(w.upper() for w in words)
        for verb in VERBS:
            if upper == verb or upper.startswith(verb + " "):
                n = verb.count(" ") + 1
                return cls(verb, tuple(words[n:]), line)
        return cls(words[0].upper() if words else "", tuple(words[1:]), line)

    def arg(self, i: int, default: str = "") -> str:
        return self.args[i] if i < len(self.args) else default


Responder = Callable[[Command, "FakeAsterisk"], str | None]

_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _is_read(cmd: Command) -> bool:
    return cmd.verb == "EXEC" and cmd.arg(0).lower() == "read"


def _read_args(cmd: Command) -> tuple[str, str, int, str, float]:
    """Read's (variable, files, max digits, terminators, timeout s) as app_read.c takes
    them: max 1-255 (else 255), terminator # unless t(...) or a bare t, a timeout of 0 or
    none is the dialplan's 10 s."""
    fields = (cmd.arg(1).split(",") + [""] * 6)[:6]
    var, files, maxd, options, _attempts, timeout = fields
    n = int(maxd) if maxd.strip().lstrip("-").isdigit() else 0
    max_digits = n if 1 <= n <= 255 else 255
    terminators = "#"
    if "t" in options:
        m = re.search(r"t\(([^)]*)\)", options)
        terminators = m.group(1) if m else ""
    try:
        seconds = float(timeout) if timeout.strip() else 0.0
    except ValueError:
        seconds = 0.0
    return var, files, max_digits, terminators, seconds if seconds > 0 else 10.0


def sounds_of(cmd: Command) -> list[str]:
    """The sounds one command names, in order (a Read's whole list)."""
    if cmd.verb in ("STREAM FILE", "CONTROL STREAM FILE", "GET DATA", "GET OPTION"):
        return [cmd.arg(0)]
    if _is_read(cmd):
        files = _read_args(cmd)[1]
        return [f for f in files.split("&") if f.strip()]
    return []


class FakeAsterisk:
    """A scripted FastAGI caller; see the module docstring."""

    def __init__(self, port: int, *, host: str = "127.0.0.1", script: str = "pay",
                 callerid: str = "+15551234567", calleridname: str = "Test",
                 uniqueid: str | None = None, channel: str | None = None,
                 args: Sequence[str] = (), headers: Mapping[str, str] | None = None,
                 keys: str = "", responder: Responder | None = None,
                 hangup_at: int | Callable[[Command], bool] | None = None,
                 missing_files: Sequence[str] = (), variables: Mapping[str, str] | None = None,
                 file_samples: int = 16000, drop_untaken_keys: bool = False,
                 on_sound: Callable[[str, FakeAsterisk], None] | None = None,
                 live: bool = False, play_s: float = 0.05,
                 digit_timeout_s: float = 5.0) -> None:
        self.host, self.port = host, port
        n = next(_ids)
        self.uniqueid = uniqueid or f"1700000000.{n}"
        self.headers: dict[str, str] = {
            "agi_network": "yes",
            "agi_network_script": script,
            "agi_request": f"agi://{host}:{port}/{script}",
            "agi_channel": channel or f"Local/*PAY@ivr-{n:08x};2",
            "agi_language": "en",
            "agi_type": "Local",
            "agi_uniqueid": self.uniqueid,
            "agi_version": "22.0.0",
            "agi_callerid": callerid,
            "agi_calleridname": calleridname,
            "agi_callingpres": "0",
            "agi_callingani2": "0",
            "agi_callington": "0",
            "agi_callingtns": "0",
            "agi_dnid": "*PAY",
            "agi_rdnis": "unknown",
            "agi_context": "ivr",
            "agi_extension": "*PAY",
            "agi_priority": "2",
            "agi_enhanced": "0.0",
            "agi_accountcode": "",
            "agi_threadid": "140000000000000",
        }
        for i, arg in enumerate(args, 1):
            self.headers[f"agi_arg_{i}"] = arg
        self.headers.update(headers or {})
        self.keys: deque[str] = deque()
        self.live = live
        self.play_s = play_s
        # TIMEOUT(digit): between keys after a key cut a Read piece other than the last.
        self.digit_timeout_s = digit_timeout_s
        self.lost: list[str] = []  # live: keys that arrived while no command ran
        self._in_flight = False
        self._arrived: asyncio.Event | None = None
        self.press(keys)
        self.on_sound = on_sound
        self.sounds: list[str] = []
        self.responder = responder
        self.hangup_at = hangup_at
        self.missing_files = set(missing_files)
        self.variables: dict[str, str] = dict(variables or {})
        self.file_samples = file_samples
        self.drop_untaken_keys = drop_untaken_keys
        self.transcript: list[Command] = []
        self.replies: list[str] = []
        self.dead = False
        self.agi_status: str | None = None  # set when the call ends, like AGISTATUS
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    # -- scripting -------------------------------------------------------------------------

    def press(self, keys: str) -> FakeAsterisk:
        """Queue keys (``0-9 * # A-D``) for the caller to press, in order."""
        bad = set(keys) - set("0123456789*#ABCD")
        if bad:
            raise ValueError(f"not keypad keys: {sorted(bad)}")
        if self.live and not self._in_flight:
            self.lost.extend(keys)
            return self
        self.keys.extend(keys)
        if self._arrived is not None:
            self._arrived.set()
        return self

    def pause(self) -> FakeAsterisk:
        """Queue a silence: the key-reading command that meets it times out."""
        self.keys.append(PAUSE)
        return self

    @property
    def streamed(self) -> list[str]:
        """Every sound file started, in order (prompts of GET DATA and Read too)."""
        return list(self.sounds)

    @property
    def in_flight(self) -> bool:
        """A command has been received and not answered yet."""
        return self._in_flight

    def verbs(self) -> list[str]:
        return [c.verb for c in self.transcript]

    # -- the wire --------------------------------------------------------------------------

    async def connect(self, send_headers: bool = True) -> FakeAsterisk:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        if send_headers:
            block = "".join(f"{k}: {v}\n" for k, v in self.headers.items()) + "\n"
            await self.send_raw(block.encode())
        return self

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None, "connect() first"
        self.writer.write(data)
        await self.writer.drain()

    async def hangup_now(self) -> None:
        """The caller hangs up between commands: an out-of-band HANGUP line."""
        self.dead = True
        await self.send_raw(b"HANGUP\n")

    async def read_command(self) -> Command | None:
        """The next command from the server, or None when it closed the connection."""
        assert self.reader is not None, "connect() first"
        try:
            line = await self.reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.agi_status = self.agi_status or ("HANGUP" if self.dead else "SUCCESS")
            return None
        if line[:7].lower() == b"failure":  # res_agi: the script failed, stop
            self.agi_status = "FAILURE"
            return None
        cmd = Command.parse(line.decode("utf-8").rstrip("\n"))
        self.transcript.append(cmd)
        self._in_flight = True
        return cmd

    async def reply(self, text: str) -> None:
        self._in_flight = False
        if self.live:
            self.keys.clear()  # the command is over: what it left unread is gone
        self.replies.append(text)
        await self.send_raw(text.encode("utf-8") + b"\n")

    async def run(self, max_seconds: float = 10.0) -> list[Command]:
        """Connect if needed, answer commands until the server closes; return the
        transcript. Raises TimeoutError if the call lasts longer than ``max_seconds``."""
        if self.writer is None:
            await self.connect()
        async with asyncio.timeout(max_seconds):
            while (cmd := await self.read_command()) is not None:
                await self.reply(await self.answer(cmd))
        await self.close()
        return self.transcript

    async def answer_all(self, cmd: Command | None, *, rtts: list[float],
                         pause: Callable[[], float] | None = None) -> None:
        """Answer ``cmd`` and every command after it until the server closes, sleeping
        ``pause()`` seconds before each reply (a caller's think time) and appending to
        ``rtts`` each round trip from our reply to the server's next command (what a load
        test measures as server overhead)."""
        while cmd is not None:
            if pause is not None:
                await asyncio.sleep(pause())
            await self.reply(await self.answer(cmd))
            sent = time.perf_counter()
            cmd = await self.read_command()
            if cmd is not None:
                rtts.append(time.perf_counter() - sent)

    async def answer(self, cmd: Command) -> str:
        """The reply text for ``cmd`` (may also send the out-of-band HANGUP first)."""
        if self.responder is not None:
            custom = self.responder(cmd, self)
            if custom is not None:
                self.sounds += sounds_of(cmd)
                return custom
        if not self.dead and self._hangs_up_now(cmd):
            self.sounds += sounds_of(cmd)
            await self.hangup_now()
            if _is_read(cmd):  # Read itself returns 0; READSTATUS says what happened
                self.variables.update({_read_args(cmd)[0]: "", "READSTATUS": "HANGUP"})
                return "200 result=0"
            return "200 result=-1"
        if self.dead and cmd.verb not in DEAD_OK:
            return DEAD_REPLY
        if _is_read(cmd):
            return await self._read(cmd)
        if cmd.verb in ("STREAM FILE", "CONTROL STREAM FILE"):
            return await self._stream(cmd)
        if self.live and cmd.verb == "WAIT FOR DIGIT":
            timeout = int(cmd.arg(0, "0") or 0)
            key = await self._next_key(timeout / 1000 if timeout >= 0 else 86400.0)
            return f"200 result={ord(key) if key else 0}"
        return self.default_reply(cmd)

    # -- keys as time passes ----------------------------------------------------------------

    def _started(self, sound: str) -> None:
        self.sounds.append(sound)
        if self.on_sound is not None:
            self.on_sound(sound, self)

    async def _arrival(self, seconds: float) -> bool:
        """Live: wait up to ``seconds`` for a key to arrive; True if one is queued."""
        if self.keys:
            return True
        if seconds <= 0:
            return False
        if self._arrived is None:
            self._arrived = asyncio.Event()
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), seconds)
        except TimeoutError:
            pass
        return bool(self.keys)

    async def _cutting_key(self, escape: str | None) -> str | None:
        """The key that cuts the sound now playing (``escape`` None: any key), or None when
        it plays to its end. Keys it does not take are dropped when they arrive while it
        plays (live, ``drop_untaken_keys``), else they stay queued (typed ahead)."""
        deadline = time.monotonic() + (self.play_s if self.live else 0.0)
        while True:
            if escape is not None and (self.live or self.drop_untaken_keys):
                while self.keys and self.keys[0] and self.keys[0] not in escape:
                    self.keys.popleft()
            if self.keys and self.keys[0] and (escape is None or self.keys[0] in escape):
                return self.keys.popleft()
            if self.live and self.keys and self.keys[0] == PAUSE:
                self.keys.popleft()
                continue
            left = deadline - time.monotonic()
            if not self.live or left <= 0 or not await self._arrival(left):
                return None

    async def _next_key(self, seconds: float, *, pause_ends: bool = True) -> str | None:
        """The next key within ``seconds``, None on a timeout. Scripted (not live): a
        queued key at once; an empty queue or a pause is a timeout, and the pause is
        used up unless ``pause_ends`` is False (a wait too short to be the silence)."""
        if not self.live:
            if not self.keys:
                return None
            if self.keys[0] == PAUSE:
                if pause_ends:
                    self.keys.popleft()
                return None
            return self.keys.popleft()
        deadline = time.monotonic() + seconds
        while True:
            while self.keys and self.keys[0] == PAUSE:
                self.keys.popleft()
            if self.keys:
                return self.keys.popleft()
            left = deadline - time.monotonic()
            if left <= 0 or not await self._arrival(left):
                return None

    async def _stream(self, cmd: Command) -> str:
        self._started(cmd.arg(0))
        endpos = 0 if cmd.arg(0) in self.missing_files else self.file_samples
        key = await self._cutting_key(cmd.arg(1))
        if key:
            return f"200 result={ord(key)} endpos={endpos // 2}"
        return f"200 result=0 endpos={endpos}"

    async def _read(self, cmd: Command) -> str:
        """Asterisk's Read (see the module docstring); always result=0, as app_read."""
        var, files, max_digits, terminators, timeout_s = _read_args(cmd)
        digits, status = "", "TIMEOUT"
        pieces = [f for f in files.split("&") if f.strip()] if files else []
        for i, sound in enumerate(pieces):
            last = i == len(pieces) - 1
            self._started(sound)
            if sound in self.missing_files:
                status = "ERROR" if last else status  # app.c skips it; the last ends Read
                continue
            key = await self._cutting_key(None)
            if key is None:
                key = await self._next_key(timeout_s if last else 0.05, pause_ends=last)
            if key is None:
                continue
            between = timeout_s if last else self.digit_timeout_s
            status = "TIMEOUT"
            while key is not None:
                if key in terminators:
                    status = "OK"
                    break
                digits += key
                if len(digits) >= max_digits:
                    status = "OK"
                    break
                key = await self._next_key(between)
            break
        self.variables[var] = digits
        self.variables["READSTATUS"] = status
        return "200 result=0"

    def _hangs_up_now(self, cmd: Command) -> bool:
        if self.hangup_at is None:
            return False
        if callable(self.hangup_at):
            return bool(self.hangup_at(cmd))
        return len(self.transcript) == self.hangup_at

    def default_reply(self, cmd: Command) -> str:
        """What a well-behaved Asterisk with a patient scripted caller would answer."""
        v = cmd.verb
        if v == "ANSWER" or v == "NOOP" or v == "EXEC" or v == "SET MUSIC":
            return "200 result=0"
        if v == "HANGUP":
            if not cmd.args:
                self.dead = True
            return "200 result=1"
        if v in ("VERBOSE", "SET VARIABLE"):
            if v == "SET VARIABLE":
                self.variables[cmd.arg(0)] = cmd.arg(1)
            return "200 result=1"
        if v == "CHANNEL STATUS":
            return "200 result=6"
        if v == "GET VARIABLE":
            return self._variable(cmd.arg(0))
        if v == "GET FULL VARIABLE":
            expr = cmd.arg(0)
            whole = _VARIABLE.fullmatch(expr)
            if whole or "${" not in expr:
                return self._variable(whole.group(1) if whole else expr)
            value = _VARIABLE.sub(lambda m: self.variables.get(m.group(1), ""), expr)
            return f"200 result=1 ({value})"
        if v.startswith("SAY "):
            key = self._take_escape(cmd.arg(1))
            return f"200 result={ord(key) if key else 0}"
        if v == "WAIT FOR DIGIT":
            key = self.keys.popleft() if self.keys else PAUSE
            return f"200 result={ord(key) if key else 0}"
        if v in ("GET DATA", "GET OPTION"):
            self._started(cmd.arg(0))
        if v == "GET DATA":
            return self._get_data(int(cmd.arg(2, "1024") or 1024))
        return UNKNOWN_REPLY

    def _variable(self, name: str) -> str:
        if name in self.variables:
            return f"200 result=1 ({self.variables[name]})"
        return "200 result=0"

    def _take_escape(self, escape: str) -> str | None:  # SAY *: no time passes there
        if self.drop_untaken_keys:
            while self.keys and self.keys[0] and self.keys[0] not in escape:
                self.keys.popleft()
        if self.keys and self.keys[0] and self.keys[0] in escape:
            return self.keys.popleft()
        return None

    def _get_data(self, max_digits: int) -> str:
        digits = ""
        while len(digits) < max_digits:
            if not self.keys or self.keys[0] == PAUSE:
                if self.keys:
                    self.keys.popleft()
                return f"200 result={digits} (timeout)"
            key = self.keys.popleft()
            if key == "#":
                break
            digits += key
        return f"200 result={digits}"

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except ConnectionError:
                pass

    async def __aenter__(self) -> FakeAsterisk:
        return await self.connect()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
