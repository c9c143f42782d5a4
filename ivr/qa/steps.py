"""Driving a scenario's steps on a call: the Line protocol (a call as the steps see it),
find_run, and drive.

drive looks each step's ``kind`` up in ACTIONS, so a new kind of step (the caller texts
PAY, a text arrives) is one function and one entry there, plus what it needs on Line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ivr.qa.scenario import Step, prompts_of, sound_prompts

# A caller typing an entry: one key every 80 ms.
TYPE_GAP_S = 0.08


class Failed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step, self.message = step, message


class Line(Protocol):
    """One call as the steps see it: the AGI commands the service sent so far, and the
    caller's hands."""

    @property
    def commands(self) -> list[str]: ...

    async def more(self, seen: int, timeout: float) -> bool:
        """Wait until there are more than ``seen`` commands; False if the call ended first
        (or ``timeout`` passed)."""
        ...

    async def press(self, keys: str) -> None: ...
    async def type_keys(self, keys: str) -> None:
        """Type keys TYPE_GAP_S apart in real time, not waiting for the service: a key
        that lands while no command runs is lost, as on a phone."""
        ...

    async def wait(self, seconds: float) -> None: ...
    async def hangup(self) -> None: ...


def find_run(commands: Sequence[str], start: int, run: Sequence[str]) -> int | None:
    """Index of the command that plays the last prompt of ``run``, where ``run`` is played
    in a row (other commands, like WAIT FOR DIGIT, may come between; several prompts may
    be one command's, as in a Read), from ``start``."""
    hit = find_prompts(commands, (start, 0), run)
    return hit[0] if hit else None


def find_prompts(commands: Sequence[str], start: tuple[int, int], run: Sequence[str]
                 ) -> tuple[int, int] | None:
    """Where the last prompt of ``run`` plays, as (command index, its place among that
    command's prompts), searching from ``start`` (the same kind of place), so the next
    expect may find a later prompt of the same command (a Read's list)."""
    played = [((i, k), p) for i, c in enumerate(commands) if i >= start[0]
              for k, p in enumerate(sound_prompts(c)) if (i, k) >= start]
    n = len(run)
    for j in range(len(played) - n + 1):
        if [p for _, p in played[j:j + n]] == list(run):
            return played[j + n - 1][0]
    return None


@dataclass
class Drive:
    """Where the steps have got to on one call."""

    line: Line
    expect_timeout: float
    pos: tuple[int, int] = (0, 0)  # the next expect searches from here (command, prompt)


async def _expect(step: Step, d: Drive) -> None:
    line = d.line
    while (hit := find_prompts(line.commands, d.pos, step.prompts)) is None:
        if not await line.more(len(line.commands), d.expect_timeout):
            heard = prompts_of(line.commands[d.pos[0]:])[d.pos[1]:]
            ended = "the call ended" if not heard else "not heard"
            raise Failed(step.describe(), f"{ended}; heard since the previous step: "
                         f"{', '.join(heard) or 'nothing'}")
    d.pos = (hit[0], hit[1] + 1)


async def _press(step: Step, d: Drive) -> None:
    await d.line.press(step.keys)


async def _type(step: Step, d: Drive) -> None:
    await d.line.type_keys(step.keys)


async def _wait(step: Step, d: Drive) -> None:
    await d.line.wait(step.seconds)


async def _hangup(step: Step, d: Drive) -> None:
    await d.line.hangup()


Action = Callable[[Step, Drive], Awaitable[None]]
ACTIONS: dict[str, Action] = {"expect": _expect, "press": _press, "type": _type,
                              "wait": _wait, "hangup": _hangup}


async def drive(steps: Sequence[Step], line: Line, expect_timeout: float) -> None:
    """Take the steps in order; raise Failed at the first that cannot be done."""
    d = Drive(line, expect_timeout)
    for step in steps:
        await ACTIONS[step.kind](step, d)
