"""The emulator target: FakeAsterisk calls an in-process AGIServer running the real pay
flow. Fast (well under a second a call), no PBX needed."""

from __future__ import annotations

import asyncio
import contextlib

from ivr.agi.server import AGIServer
from ivr.flows.pay import pay
from ivr.qa.checks import check_outcome
from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.qa.scenario import Scenario
from ivr.qa.steps import drive
from ivr.qa.targets.base import Runner


class EmulatorLine:
    """FakeAsterisk, answering each command only once the steps have acted on it (so keys
    pressed on "expect: X" reach the command that plays X, as they would on a phone)."""

    def __init__(self, fake: FakeAsterisk) -> None:
        self.fake = fake
        self._commands: list[str] = []
        self._cond = asyncio.Condition()
        self._blocked_at: int | None = None  # the steps wait for more than this many
        self._steps_done = False
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

    async def wait(self, seconds: float) -> None:
        # No clock to wait on: let the command in hand (the prompt playing) finish instead.
        await self.more(len(self._commands), 10)

    async def hangup(self) -> None:
        self._hangup = True

    async def steps_done(self) -> None:
        async with self._cond:
            self._steps_done = True
            self._cond.notify_all()

    def _settled(self) -> bool:
        return self._steps_done or (self._blocked_at is not None
                                    and self._blocked_at >= len(self._commands))

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
            server = AGIServer({"pay": lambda session: pay(session, world.ctx)}, port=0)
            async with server:
                # Keys are pressed as a prompt plays, so a key it does not take is lost,
                # as on the asterisk target: both targets pass or fail a scenario alike.
                fake = FakeAsterisk(server.port, script="pay", callerid=scenario.callerid,
                                    args=[scenario.attest] if scenario.attest else [],
                                    drop_untaken_keys=True)
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
