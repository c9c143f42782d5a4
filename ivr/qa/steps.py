"""Driving a scenario's steps on a call: the Line protocol (a call as the steps see it),
find_run, and drive.

drive looks each step's ``kind`` up in ACTIONS, so a new kind of step (the caller texts
PAY, a text arrives) is one function and one entry there, plus what it needs on Line.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ivr.qa.scenario import Step, prompts_of, sound_prompt


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
    async def wait(self, seconds: float) -> None: ...
    async def hangup(self) -> None: ...


def find_run(commands: Sequence[str], start: int, run: Sequence[str]) -> int | None:
    """Index of the command that plays the last prompt of ``run``, where ``run`` is played
    in a row (other commands, like WAIT FOR DIGIT, may come between), from ``start``."""
    played = [(i, p) for i, c in enumerate(commands) if i >= start
              and (p := sound_prompt(c)) is not None]
    n = len(run)
    for k in range(len(played) - n + 1):
        if [p for _, p in played[k:k + n]] == list(run):
            return played[k + n - 1][0]
    return None


@dataclass
class Drive:
    """Where the steps have got to on one call."""

    line: Line
    expect_timeout: float
    pos: int = 0  # the next expect searches the commands from here


async def _expect(step: Step, d: Drive) -> None:
    line = d.line
    while (hit := find_run(line.commands, d.pos, step.prompts)) is None:
        if not await line.more(len(line.commands), d.expect_timeout):
            heard = prompts_of(line.commands[d.pos:])
            ended = "the call ended" if not heard else "not heard"
            raise Failed(step.describe(), f"{ended}; heard since the previous step: "
                         f"{', '.join(heard) or 'nothing'}")
    d.pos = hit + 1


async def _press(step: Step, d: Drive) -> None:
    await d.line.press(step.keys)


async def _wait(step: Step, d: Drive) -> None:
    await d.line.wait(step.seconds)


async def _hangup(step: Step, d: Drive) -> None:
    await d.line.hangup()


Action = Callable[[Step, Drive], Awaitable[None]]
ACTIONS: dict[str, Action] = {"expect": _expect, "press": _press, "wait": _wait,
                              "hangup": _hangup}


async def drive(steps: Sequence[Step], line: Line, expect_timeout: float) -> None:
    """Take the steps in order; raise Failed at the first that cannot be done."""
    d = Drive(line, expect_timeout)
    for step in steps:
        await ACTIONS[step.kind](step, d)
