"""When a pre-recorded caller (a SIP phone replaying a pcap) must type each entry.

A real phone's keys are fixed before the call, so their times come from what the call will
play: the flow runs once on the emulator (FakeAsterisk, the same world and keys), which
lists every sound it plays in order, and each sound lasts as long as its built WAV file.
Every entry ends on a key (``#``, the last digit of a fixed-length entry, a menu choice),
and the flow answers it at once, so the clock re-starts at the end of each entry and errors
do not add up over the call.

Each entry starts late in the prompt that takes it: ``LATE_S`` before that prompt's end, or
half way through a short one. Keys typed then are taken by the prompt today (and by a
collect command playing it, should the flow use one), and the margin absorbs a slow
answer from the service: typing may start up to half the prompt later (or earlier) than
planned, and still lands in the prompt or in the wait for keys after it.
"""

from __future__ import annotations

import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ivr.prompts.build import DEFAULT_BUILD_DIR
from ivr.qa.fake_asterisk import Command, FakeAsterisk
from ivr.qa.sip_phone import GAP_MS, TONE_MS, Entry

SOUND_PREFIX = "starpay/"
LATE_S = 1.0
# Dialplan applications whose first argument after the variable is a `&` list of sounds.
_PLAYING_APPS = {"read": 1, "background": 0, "playback": 0, "controlplayback": 0}


@dataclass(frozen=True)
class Step:
    """``keys`` typed while the prompt ``prompt`` (a prompt id) plays: late in it, or
    ``after_s`` seconds after it starts. No keys: a moment to time (the phone hangs up)."""

    prompt: str
    keys: str
    after_s: float | None = None


class CannotTime(ValueError):
    """The dry run did not reach a step's prompt, or plays a sound of unknown length."""


@cache
def sound_seconds(name: str, lang: str = "en",
                  build_dir: Path = DEFAULT_BUILD_DIR) -> float:
    """Length of a StarPay sound (``starpay/<id>``) from its built WAV file."""
    if not name.startswith(SOUND_PREFIX):
        raise CannotTime(f"{name}: not a StarPay prompt, its length is unknown")
    path = build_dir / lang / f"{name.removeprefix(SOUND_PREFIX)}.wav"
    try:
        with wave.open(str(path)) as w:
            return w.getnframes() / w.getframerate()
    except FileNotFoundError:
        raise CannotTime(f"{path} is missing: run `ivr prompts build`") from None


def sounds_of(cmd: Command) -> list[str]:
    """The sounds one AGI command plays, in order."""
    if cmd.verb in ("STREAM FILE", "CONTROL STREAM FILE", "GET DATA"):
        return [cmd.arg(0)]
    if cmd.verb == "EXEC":
        pos = _PLAYING_APPS.get(cmd.arg(0).lower())
        if pos is not None:
            fields = cmd.arg(1).replace("|", ",").split(",")
            if pos < len(fields) and fields[pos]:
                return fields[pos].split("&")
    return []


def _language(cmd: Command) -> str | None:
    if cmd.verb == "SET VARIABLE" and cmd.arg(0).upper() == "CHANNEL(LANGUAGE)":
        return cmd.arg(1)
    return None


def typing_seconds(keys: str) -> float:
    return max(0, len(keys) * TONE_MS + (len(keys) - 1) * GAP_MS) / 1000


def plan(transcript: Sequence[Command], pressed_at: Sequence[tuple[int, int]],
         steps: Sequence[Step], *, length: Callable[[str, str], float] = sound_seconds,
         lang: str = "en", per_command_s: float = 0.0) -> list[Entry]:
    """Entries timed from a dry run: ``pressed_at[i]`` is (command index, sound index) where
    step i's prompt played. Times are seconds from the start of the call's media.
    ``per_command_s``: the service pauses that long before each command (a slowed one)."""
    entries: list[Entry] = []
    t = 0.0
    done = 0  # commands already accounted for
    for step, (at_cmd, at_sound) in zip(steps, pressed_at, strict=True):
        for cmd in transcript[done:at_cmd]:
            lang = _language(cmd) or lang
            t += sum(length(s, lang) for s in sounds_of(cmd)) + per_command_s
        t += per_command_s  # before the command that plays the prompt
        before = sounds_of(transcript[at_cmd])[:at_sound]
        start = t + sum(length(s, lang) for s in before)
        prompt_s = length(SOUND_PREFIX + step.prompt, lang)
        at = start + (max(prompt_s / 2, prompt_s - LATE_S) if step.after_s is None
                      else step.after_s)
        entries.append(Entry(round(at, 3), step.keys))
        t = at + typing_seconds(step.keys)
        done = at_cmd + 1
    return entries


async def dry_run(port: int, steps: Sequence[Step], *, callerid: str,
                  attest: str | None = None, max_seconds: float = 30.0
                  ) -> tuple[list[Command], list[tuple[int, int]]]:
    """The call on the emulator against the AGI server on ``port``: its commands, and where
    each step's prompt played (its keys are pressed there)."""
    pending = list(steps)
    pressed_at: list[tuple[int, int]] = []

    def respond(cmd: Command, fake: FakeAsterisk) -> str | None:
        if pending:
            sounds = sounds_of(cmd)
            want = SOUND_PREFIX + pending[0].prompt
            if want in sounds:
                pressed_at.append((len(fake.transcript) - 1, sounds.index(want)))
                fake.press(pending.pop(0).keys)
        return None

    fake = FakeAsterisk(port, script="pay", callerid=callerid,
                        args=[attest] if attest else [], responder=respond)
    await fake.run(max_seconds=max_seconds)
    if pending:
        raise CannotTime(f"the dry run never played {pending[0].prompt!r}; it played "
                         f"{[s for c in fake.transcript for s in sounds_of(c)]}")
    return list(fake.transcript), pressed_at


async def timeline(port: int, steps: Sequence[Step], *, callerid: str,
                   attest: str | None = None, per_command_s: float = 0.0) -> list[Entry]:
    transcript, pressed_at = await dry_run(port, steps, callerid=callerid, attest=attest)
    return plan(transcript, pressed_at, steps, per_command_s=per_command_s)
