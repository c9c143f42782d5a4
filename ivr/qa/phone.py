"""A phone in the terminal: a real call through the local Asterisk, heard as text.

The call is placed like any simulated call (ivr.qa.asterisk_call). Each prompt the service
plays is printed as its catalog text in the call's language (followed from the service's
``SET VARIABLE CHANNEL(language)``); number pieces (digits, money, dates) join the line
they belong to, so "Your balance is eighty four dollars ..." reads as one line. Keys are
read from stdin a line at a time: ``123#`` + Enter presses 1, 2, 3, #; ``h`` hangs up; end
of input hangs up too (the phone is put down).

Stdin may be a terminal, a pipe, a file or /dev/null: a thread reads it line by line (the
event loop's pipe transport takes neither files nor /dev/null). Input that is not a
terminal is a script: each line is pressed once the service, after the previous press,
sends a command that listens for its first key; at its end the phone waits for the service
to go quiet, then hangs up.

What Asterisk plays by itself (the fallback message when the service is down, Playback and
Background in the dialplan) is shown too, from the dialplan's Newexten events; sounds the
service plays that are no StarPay prompt (the demo's) are shown by file name.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any, TextIO

from ivr.agi.protocol import split_command
from ivr.ami.client import AMIClient
from ivr.prompts.catalog import Catalog
from ivr.qa.asterisk_call import QA_EVENTS, AsteriskCall
from ivr.qa.scenario import KEYS, prompts_of

# Pieces spoken inside a sentence (numbers, dates): printed on the line of the prompt
# before them rather than each on a line of its own.
_PIECE_PREFIXES = ("digit_", "num_", "month_", "day_", "weekday_", "brand_", "time_")
_PIECES = {"thousand", "million", "millions", "dollar", "dollars", "cent", "cents",
           "money_and", "date_of", "ending_in", "pay_with_the", "balance_due", "hours_from",
           "hours_to", "hours_and", "star", "pound", "press", "num_and", "num_of",
           "minute", "minutes", "callback_in_keys"}
# What `ivr qa call --exten` may dial: the [starpay] context's extensions.
EXTENSIONS = {"*PAY": "the pay call", "*729": "*PAY on a keypad",
              "7729": "the pay call", "3366": "the demo (DEMO)"}
# Dialplan applications that play sounds of their own, and how long a script's end waits
# for the service to say more before the phone is put down.
_PLAYING_APPS = {"Playback", "Background", "BackGround", "ControlPlayback"}
SCRIPT_END_QUIET_S = 8.0
SCRIPT_KEY_DELAY_S = 0.5


def is_piece(pid: str) -> bool:
    return pid in _PIECES or pid.startswith(_PIECE_PREFIXES)


class TerminalPhone:
    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 caller: str = "+15551234567", attest: str | None = None,
                 exten: str = "*PAY", out: TextIO | None = None,
                 catalog: Catalog | None = None) -> None:
        self.ami = AMIClient(host, port, username, secret, events=QA_EVENTS)
        self.caller, self.attest, self.exten = caller, attest, exten
        self.out = out or sys.stdout
        self.catalog = catalog or Catalog.load()
        self.lang = "en"
        self._line_open = False

    def say(self, text: str, *, piece: bool = False) -> None:
        if piece and self._line_open:
            self.out.write(" " + text)
        else:
            if self._line_open:
                self.out.write("\n")
            self.out.write("  " + text)
        self._line_open = True
        self.out.flush()

    def note(self, text: str) -> None:
        if self._line_open:
            self.out.write("\n")
            self._line_open = False
        self.out.write(text + "\n")
        self.out.flush()

    def show(self, command: str) -> None:
        """Print what one AGI command means to the caller."""
        words = split_command(command)
        upper = [w.upper() for w in words[:2]]
        if upper == ["SET", "VARIABLE"] and len(words) >= 4:
            if words[2] == "CHANNEL(language)":
                self.lang = words[3] if words[3] in self.catalog.languages else self.lang
            elif words[2] == "STARPAY_NEXT" and words[3]:
                self.note(f"[the call goes to: {words[3]}]")
            return
        pids = [p for p in prompts_of([command]) if p in self.catalog]  # a Read: its list
        if pids:
            for pid in pids:
                self.say(self.catalog.text(pid, self.lang), piece=is_piece(pid))
        elif upper[:1] == ["HANGUP"]:
            self.note("[the service hung up]")
        elif upper[:2] in (["STREAM", "FILE"], ["GET", "DATA"]) and len(words) > 2:
            self.note(f"[the service plays {words[2]}]")
        elif upper[:2] == ["SAY", "DIGITS"] and len(words) > 2:
            self.note(f"[the service says the digits {words[2]}]")

    def show_dialplan(self, app: str, data: str) -> None:
        """What a dialplan Playback/Background plays (no AGI involved)."""
        for sound in filter(None, (f.strip() for f in data.split(",")[0].split("&"))):
            pid = sound.removeprefix("starpay/") if sound.startswith("starpay/") else None
            if pid is not None and pid in self.catalog:
                self.say(self.catalog.text(pid, self.lang))
            else:
                self.note(f"[Asterisk plays {sound}]")

    async def run(self, timeout: float = 600.0, stdin: TextIO | None = None) -> int:
        await self.ami.connect()
        # The caller's side waits as long as we do (QA_WAIT in [qa-caller]).
        call = AsteriskCall(self.ami, caller_id=self.caller, exten=self.exten,
                            attest=self.attest, variables={"QA_WAIT": str(int(timeout) + 5)})
        source = stdin or sys.stdin
        interactive = source.isatty()

        def on_exten(event: Any) -> None:
            if event.get("Uniqueid") == call.service_uid \
                    and event.get("Application") in _PLAYING_APPS:
                self.show_dialplan(event.get("Application", ""), event.get("AppData", ""))

        self.ami.on("Newexten", on_exten)
        keys = asyncio.create_task(self._keys(call, read_lines(source), interactive))
        try:
            self.note(f"calling {self.exten} from {self.caller}"
                      f"{f' (attestation {self.attest})' if self.attest else ''}; type keys "
                      "+ Enter, h + Enter hangs up")
            try:
                await call.start()
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}. Extensions the phone can dial: "
                                   f"{describe_extensions()}") from None
            shown = 0
            async with asyncio.timeout(timeout):
                while not call.ended.is_set():
                    while shown < len(call.heard):
                        self.show(call.heard[shown].command)
                        shown += 1
                    await asyncio.sleep(0.05)
                for heard in call.heard[shown:]:
                    self.show(heard.command)
            self.note(f"[call ended: {call.hangup_cause or 'hung up'}]")
            return 0
        except TimeoutError:
            self.note("[time is up: hanging up]")
            return 1
        finally:
            keys.cancel()
            self.ami.off("Newexten", on_exten)
            try:
                await call.close()
            except Exception:  # the channel may be gone already; the call is over anyway
                call.ended.set()
                await call.close()
            await self.ami.close()

    async def _keys(self, call: AsteriskCall, lines: asyncio.Queue[str | None],
                    interactive: bool) -> None:
        pressed_at = 0  # len(call.heard) at the previous press (a script's pacing)
        while True:
            raw = await lines.get()
            if raw is None:
                if not interactive:
                    await _next_command(call, 0, timeout=20.0)
                    await _until_quiet(call, SCRIPT_END_QUIET_S)
                self.note("[end of input: hanging up]")
                await call.hangup()
                return
            text = raw.strip().upper()
            if text in ("H", "HANGUP"):
                self.note("[you hung up]")
                if not interactive:
                    await _next_command(call, pressed_at)
                await call.hangup()
                return
            bad = set(text) - KEYS
            if bad:
                self.note(f"[not keypad keys: {''.join(sorted(bad))}; use 0-9 * # or h]")
                continue
            if not text:
                continue
            if not interactive:
                # A script types ahead of nothing: each line answers the next thing said.
                # The command playing now or a later one, never one before the last press.
                start = max(pressed_at, len(call.heard) - 1)
                found = await _next_taker(call, start, text[0])
                if found is None:
                    return
                pressed_at = found + 1
                # As a person would: a key sent the instant the command is announced can
                # reach the channel before the command listens.
                await asyncio.sleep(SCRIPT_KEY_DELAY_S)
            elif call.caller_channel is None:
                self.note("[the call is not connected yet]")
                continue
            await call.press(text)


def describe_extensions() -> str:
    return ", ".join(f"{e} ({what})" for e, what in EXTENSIONS.items())


def read_lines(stream: TextIO) -> asyncio.Queue[str | None]:
    """Lines of ``stream`` as they come, then None at its end. A thread reads, so a
    terminal, a pipe, a regular file and /dev/null all work alike."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        try:
            for line in stream:
                loop.call_soon_threadsafe(lines.put_nowait, line)
        except (OSError, ValueError):  # closed or unreadable: the same as its end
            pass
        finally:
            try:
                loop.call_soon_threadsafe(lines.put_nowait, None)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                pass

    threading.Thread(target=reader, name="qa-phone-stdin", daemon=True).start()
    return lines


async def _next_command(call: AsteriskCall, start: int, timeout: float = 60.0) -> bool:
    """Wait for an AGI command at ``heard[start:]``; False if the call ended first or none
    came (the service is down: only the dialplan speaks)."""
    try:
        await call.wait_for(r".", timeout=timeout, start=max(start, 0))
    except AssertionError:
        return False
    return True


def takes(command: str, key: str) -> bool:
    """Whether an AGI command listens for ``key``: a STREAM FILE / CONTROL STREAM FILE with
    it among the escape digits, or a command that reads an entry (GET DATA, WAIT FOR DIGIT,
    EXEC Read, GET OPTION with it)."""
    words = split_command(command)
    upper = " ".join(w.upper() for w in words[:2])
    if upper in ("GET DATA", "WAIT FOR") or (upper.startswith("EXEC") and len(words) > 1
                                              and words[1].lower() == "read"):
        return True
    if upper in ("STREAM FILE", "GET OPTION") or command.upper().startswith("CONTROL STREAM"):
        at = 4 if command.upper().startswith("CONTROL STREAM") else 3
        return len(words) > at and key in words[at]
    return False


async def _next_taker(call: AsteriskCall, start: int, key: str,
                      timeout: float = 120.0) -> int | None:
    """Index of the first command at ``heard[start:]`` that takes ``key``; None when the
    call ended or none came in time."""
    deadline = time.monotonic() + timeout
    i = start
    while time.monotonic() < deadline:
        if not await _next_command(call, i, timeout=deadline - time.monotonic()):
            return None
        while i < len(call.heard):
            if takes(call.heard[i].command, key):
                return i
            i += 1
    return None


async def _until_quiet(call: AsteriskCall, quiet_s: float) -> None:
    """Until the call ends or the service has sent no command for ``quiet_s``."""
    seen, since = len(call.heard), time.monotonic()
    while not call.ended.is_set() and time.monotonic() - since < quiet_s:
        if len(call.heard) != seen:
            seen, since = len(call.heard), time.monotonic()
        await asyncio.sleep(0.1)
