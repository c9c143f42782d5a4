"""A phone in the terminal: a real call through the local Asterisk, heard as text.

The call is placed like any simulated call (ivr.qa.asterisk_call). Each prompt the service
plays is printed as its catalog text in the call's language (followed from the service's
``SET VARIABLE CHANNEL(language)``); number pieces (digits, money, dates) join the line
they belong to, so "Your balance is eighty four dollars ..." reads as one line. Keys are
read from stdin a line at a time: ``123#`` + Enter presses 1, 2, 3, #; ``h`` hangs up; end
of input hangs up too (the phone is put down).
"""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from ivr.agi.protocol import split_command
from ivr.ami.client import AMIClient
from ivr.prompts.catalog import Catalog
from ivr.qa.asterisk_call import AsteriskCall
from ivr.qa.scenario import KEYS, sound_prompt

# Pieces spoken inside a sentence (numbers, dates): printed on the line of the prompt
# before them rather than each on a line of its own.
_PIECE_PREFIXES = ("digit_", "num_", "month_", "day_", "weekday_", "brand_", "time_")
_PIECES = {"thousand", "million", "millions", "dollar", "dollars", "cent", "cents",
           "money_and", "date_of", "ending_in", "pay_with_the", "balance_due", "hours_from",
           "hours_to", "hours_and", "star", "pound", "press", "num_and", "num_of"}


def is_piece(pid: str) -> bool:
    return pid in _PIECES or pid.startswith(_PIECE_PREFIXES)


class TerminalPhone:
    def __init__(self, host: str, port: int, username: str, secret: str, *,
                 caller: str = "+15551234567", attest: str | None = None,
                 exten: str = "*PAY", out: TextIO | None = None,
                 catalog: Catalog | None = None) -> None:
        self.ami = AMIClient(host, port, username, secret, events="call,agi,dtmf")
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
        pid = sound_prompt(command)
        if pid is not None and pid in self.catalog:
            self.say(self.catalog.text(pid, self.lang), piece=is_piece(pid))
        elif upper[:1] == ["HANGUP"]:
            self.note("[the service hung up]")

    async def run(self, timeout: float = 600.0, stdin: asyncio.StreamReader | None = None
                  ) -> int:
        await self.ami.connect()
        call = AsteriskCall(self.ami, caller_id=self.caller, exten=self.exten,
                            attest=self.attest)
        keys = asyncio.create_task(self._keys(call, stdin or await _stdin_reader()))
        try:
            self.note(f"calling {self.exten} from {self.caller}"
                      f"{f' (attestation {self.attest})' if self.attest else ''}; type keys "
                      "+ Enter, h + Enter hangs up")
            await call.start()
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
            try:
                await call.close()
            except Exception:  # the channel may be gone already; the call is over anyway
                call.ended.set()
                await call.close()
            await self.ami.close()

    async def _keys(self, call: AsteriskCall, reader: asyncio.StreamReader) -> None:
        while True:
            raw = await reader.readline()
            if not raw:
                self.note("[end of input: hanging up]")
                await call.hangup()
                return
            text = raw.decode(errors="replace").strip().upper()
            if text in ("H", "HANGUP"):
                self.note("[you hung up]")
                await call.hangup()
                return
            bad = set(text) - KEYS
            if bad:
                self.note(f"[not keypad keys: {''.join(sorted(bad))}; use 0-9 * # or h]")
                continue
            if text:
                if call.caller_channel is None:
                    self.note("[the call is not connected yet]")
                    continue
                await call.press(text)


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader
