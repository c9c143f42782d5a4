"""The emulator target: FakeAsterisk calls an in-process AGIServer running the real pay
flow. Fast (well under a second a call), no PBX needed."""

from __future__ import annotations

import asyncio
import contextlib

from ivr.agi.server import AGIServer
from ivr.flows.pay import pay
from ivr.qa.checks import check_outcome
from ivr.qa.fake_asterisk import Command, FakeAsterisk
from ivr.qa.scenario import Scenario
from ivr.qa.slow_session import slowed
from ivr.qa.steps import TYPE_GAP_S, drive
from ivr.qa.targets.base import Runner


def is_question(raw: str) -> bool:
    """A command that waits for keys after its prompts (Asterisk's Read)."""
    cmd = Command.parse(raw)
    return cmd.verb == "EXEC" and cmd.arg(0).lower() == "read"


class EmulatorLine:
    """FakeAsterisk, answering each command only once the steps have acted on it (so keys
    pressed on "expect: X" reach the command that plays X, as they would on a phone)."""

    def __init__(self, fake: FakeAsterisk) -> None:
        self.fake = fake
        self._commands: list[str] = []
        self._cond = asyncio.Condition()
        self._blocked_at: int | None = None  # the steps wait for more than this many
        self._steps_done = False
        self._typing = False  # the caller types at their own pace: nothing is held
        self._hangup = False
        self.ended = False

    @property
    def commands(self) -> list[str]:
        return self._commands

    async def more(self, seen: int, timeout: float) -> bool:
        async with self._cond:
            self._blocked_at = seen
            self._cond.notify_all()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cond.wait_for(
                    lambda: len(self._commands) > seen or self.ended), timeout)
            self._blocked_at = None
            return len(self._commands) > seen

    async def press(self, keys: str) -> None:
        self.fake.press(keys)

    async def type_keys(self, keys: str) -> None:
        async with self._cond:
            self._typing = True
            self._cond.notify_all()
        try:
            for key in keys:
                await self.press(key)  # lost if the service is between commands now
                await asyncio.sleep(TYPE_GAP_S)
        finally:
            async with self._cond:
                self._typing = False

    async def wait(self, seconds: float) -> None:
        # No clock to wait on: let the command in hand (the prompt playing) finish instead.
        # A question (Read) goes on waiting for its keys once its prompts have played, so
        # keys pressed next still answer it: nothing to release.
        if self._commands and is_question(self._commands[-1]):
            return
        await self.more(len(self._commands), 10)

    async def hangup(self) -> None:
        self._hangup = True

    async def steps_done(self) -> None:
        async with self._cond:
            self._steps_done = True
            self._cond.notify_all()

    def _settled(self) -> bool:
        return self._steps_done or self._typing or (
            self._blocked_at is not None and self._blocked_at >= len(self._commands))

    async def serve(self, max_seconds: float) -> None:
        fake = self.fake
        try:
            await fake.connect()
            async with asyncio.timeout(max_seconds):
                while (cmd := await fake.read_command()) is not None:
                    async with self._cond:
                        self._commands.append(cmd.raw)
                        self._cond.notify_all()
                        await self._cond.wait_for(self._settled)
                    if self._hangup and not fake.dead:
                        self._hangup = False
                        await fake.hangup_now()
                        await fake.reply("200 result=-1")
                    else:
                        await fake.reply(await fake.answer(cmd))
        finally:
            await fake.close()
            async with self._cond:
                self.ended = True
                self._cond.notify_all()


class EmulatorRunner(Runner):
    """Scenarios on FakeAsterisk, one in-process AGIServer per call."""

    target = "emulator"
    expect_timeout = 10.0
    call_timeout = 30.0
    first_key_ms = 500
    next_key_ms = 300

    async def call_once(self, scenario: Scenario, n: int, commands: list[str],
                        began: list[float]) -> list[str]:
        async def agents() -> bool:
            return scenario.agents > 0

        async with self.world(scenario, n, agents) as world:
            server = AGIServer({"pay": lambda session: pay(
                slowed(session, scenario.slow_ms), world.ctx)}, port=0)
            async with server:
                # A live caller: keys are pressed as a prompt plays, so a key it does not
                # take is lost, and a key that lands while no command runs is lost too,
                # as on the asterisk target: both targets pass or fail a scenario alike.
                fake = FakeAsterisk(server.port, script="pay", callerid=scenario.callerid,
                                    args=[scenario.attest] if scenario.attest else [],
                                    drop_untaken_keys=True, live=True)
                line = EmulatorLine(fake)
                serving = asyncio.create_task(line.serve(self.call_timeout))
                try:
                    await drive(scenario.steps, line, self.expect_timeout)
                    await line.steps_done()
                    await serving
                finally:
                    commands[:] = line.commands
                    await line.steps_done()
                    if not serving.done():
                        serving.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await serving
            await check_outcome(world, commands)
        return commands
