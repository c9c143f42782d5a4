"""The Runner both targets share: a scratch folder with the database templates, a world per
scenario, ``jobs`` scenarios at a time, and a failed call turned into a failed Result."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ivr.config import Config
from ivr.qa.result import Result
from ivr.qa.scenario import Scenario, prompts_of
from ivr.qa.steps import Failed
from ivr.qa.world import Agents, Templates, World, make_world


class Runner:
    """Runs scenarios on one target; use ``async with Runner(...)`` then ``run(...)``.
    A target says how a call is placed (``call_once``) and its own timings."""

    target: str
    expect_timeout: float
    call_timeout: float
    first_key_ms: int
    next_key_ms: int

    def __init__(self, *, jobs: int = 8, config: Config | None = None) -> None:
        self.jobs = max(1, jobs)
        self.config = config or Config()  # the product's rules (payments, call, hours)
        self._tmp: Path | None = None
        self._templates: Templates | None = None

    async def __aenter__(self) -> Runner:
        self._tmp = Path(tempfile.mkdtemp(prefix="starpay-qa-"))
        self._templates = Templates(self._tmp)
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.stop()
        finally:
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def world(self, scenario: Scenario, n: int, agents: Agents
              ) -> contextlib.AbstractAsyncContextManager[World]:
        assert self._tmp is not None and self._templates is not None, "use async with"
        return make_world(scenario, self._templates, self._tmp / f"s{n:03d}", agents,
                          self.config, first_key_ms=self.first_key_ms,
                          next_key_ms=self.next_key_ms)

    async def run(self, scenarios: Sequence[Scenario],
                  on_result: Callable[[Result], None] | None = None) -> list[Result]:
        """Every scenario, ``jobs`` at a time; results in the scenarios' order."""
        gate = asyncio.Semaphore(self.jobs)
        results: list[Result | None] = [None] * len(scenarios)

        async def one(i: int) -> None:
            async with gate:
                results[i] = r = await self.run_one(scenarios[i], i)
            if on_result:
                on_result(r)

        await asyncio.gather(*(one(i) for i in range(len(scenarios))))
        return [r for r in results if r is not None]

    async def run_one(self, scenario: Scenario, n: int) -> Result:
        began = [time.monotonic()]  # reset when the call is placed (after any queueing)
        commands: list[str] = []
        try:
            commands = await self.call_once(scenario, n, commands, began)
        except Failed as f:
            return Result(scenario, self.target, False, time.monotonic() - began[0], f.step,
                          f.message, prompts_of(commands))
        except Exception as exc:  # a broken target is a failed scenario, not a crash
            return Result(scenario, self.target, False, time.monotonic() - began[0], "call",
                          f"{type(exc).__name__}: {exc}", prompts_of(commands))
        return Result(scenario, self.target, True, time.monotonic() - began[0],
                      heard=prompts_of(commands))

    async def call_once(self, scenario: Scenario, n: int, commands: list[str],
                        began: list[float]) -> list[str]:
        """Place the call, take the steps, check the outcome; ``commands`` fills as it
        goes (so a failure can say what was heard)."""
        raise NotImplementedError
