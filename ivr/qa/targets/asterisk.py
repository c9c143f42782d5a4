"""The asterisk target: a real Asterisk (a private LocalAsterisk unless one is handed in)
places the call with AMI Originate on a Local channel (ivr.qa.asterisk_call); its dialplan
runs the AGI against our AGIServer on the instance's agi_port, real prompts play, keys are
pressed with PlayDTMF when the expected prompt shows up in AGIExecStart, and after the AGI
the dialplan really sends the caller to the queue or voicemail. Free agents are real queue
members (QueueAdd of a Local channel), so the flow's AMI QueueSummary check is the
production one. Scenarios with ``agents`` run alone, one after another, since queue members
are shared by every call on that Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence

from ivr.agi.server import AGIServer
from ivr.agi.session import AGISession
from ivr.ami.client import AMIClient
from ivr.asterisk.local import LocalAsterisk
from ivr.config import Config
from ivr.flows.pay import pay
from ivr.qa.asterisk_call import QA_EVENTS, AsteriskCall, qa_ami
from ivr.qa.checks import check_outcome
from ivr.qa.result import Result
from ivr.qa.scenario import Scenario
from ivr.qa.slow_session import slowed
from ivr.qa.steps import TYPE_GAP_S, Failed, drive
from ivr.qa.targets.base import Runner
from ivr.qa.world import World

QUEUE = "billing"
AGENT_INTERFACE = "Local/echo@starpay-test"  # answers and stays on the line: a free agent


class AsteriskRunner(Runner):
    """The same scenarios through a real Asterisk; see the module docstring."""

    target = "asterisk"
    expect_timeout = 45.0  # the main menu alone plays 12 s, then up to 3 x 5 s of silence
    call_timeout = 180.0
    first_key_ms = 5000  # the production pauses: real callers, real timing
    next_key_ms = 3000

    def __init__(self, instance: LocalAsterisk | None = None, *, jobs: int = 16,
                 config: Config | None = None) -> None:
        super().__init__(jobs=jobs, config=config)
        self.instance = instance  # a running LocalAsterisk; None: start a private one
        self._own = instance is None
        self._server: AGIServer | None = None
        self._ami: AMIClient | None = None
        self._calls: dict[str, tuple[World, asyncio.Event]] = {}
        self._exclusive = asyncio.Lock()  # held by scenarios with queue members
        self._shared = 0
        self._shared_idle = asyncio.Event()
        self._shared_idle.set()

    async def start(self) -> None:
        if self.instance is None:
            self.instance = LocalAsterisk(f"qa-{os.getpid()}")
            await asyncio.to_thread(self.instance.start)
        a = self.instance
        self._server = AGIServer({"pay": self._dispatch}, port=a.agi_port)
        await self._server.start()
        self._ami = await qa_ami(a, events=QA_EVENTS + ",agent")

    async def stop(self) -> None:
        if self._ami is not None:
            await self._ami.close()
        if self._server is not None:
            await self._server.close()
        if self._own and self.instance is not None:
            await asyncio.to_thread(self.instance.remove)

    async def _dispatch(self, session: AGISession) -> None:
        # Each simulated call chose its own uniqueids: the AGI finds its scenario's world.
        entry = self._calls.get(session.uniqueid)
        if entry is None:
            raise RuntimeError(f"no scenario waits for call {session.uniqueid}")
        world, done = entry
        try:
            await pay(slowed(session, world.scenario.slow_ms), world.ctx)
        finally:
            done.set()

    async def run(self, scenarios: Sequence[Scenario],
                  on_result: Callable[[Result], None] | None = None) -> list[Result]:
        # Queue members are seen by every call: scenarios that need agents run alone, after
        # the others.
        order = sorted(range(len(scenarios)), key=lambda i: scenarios[i].agents > 0)
        results = await super().run([scenarios[i] for i in order], on_result)
        back: list[Result | None] = [None] * len(scenarios)
        for i, r in zip(order, results, strict=True):
            back[i] = r
        return [r for r in back if r is not None]

    async def _queue_summary(self) -> bool:
        assert self._ami is not None
        summary = await self._ami.queue_summary(QUEUE)
        return any(q.available > 0 for q in summary)

    async def call_once(self, scenario: Scenario, n: int, commands: list[str],
                        began: list[float]) -> list[str]:
        if scenario.agents > 0:
            async with self._exclusive:
                await self._shared_idle.wait()
                async with self._agents(scenario.agents):
                    began[0] = time.monotonic()
                    return await self._call(scenario, n, commands)
        async with self._exclusive:  # only to wait out an agents scenario in progress
            self._shared += 1
            self._shared_idle.clear()
        began[0] = time.monotonic()
        try:
            return await self._call(scenario, n, commands)
        finally:
            self._shared -= 1
            if self._shared == 0:
                self._shared_idle.set()

    @contextlib.asynccontextmanager
    async def _agents(self, count: int) -> AsyncIterator[None]:
        assert self._ami is not None
        added: list[str] = []
        try:
            for k in range(count):
                iface = AGENT_INTERFACE + ("" if k == 0 else f"/n{k}")
                # The CLI command, not the QueueAdd action: panoramisk takes QueueAdd's
                # "Added interface to queue" for the start of a list and waits forever.
                out = await self._ami.command(
                    f"queue add member {iface} to {QUEUE} penalty 0 as qa-agent-{k}")
                if "Added" not in out:
                    raise RuntimeError(f"could not add a queue member: {out.strip()}")
                added.append(iface)
            yield
        finally:
            for iface in added:
                with contextlib.suppress(Exception):
                    await self._ami.command(f"queue remove member {iface} from {QUEUE}")

    async def _call(self, scenario: Scenario, n: int, commands: list[str]) -> list[str]:
        ami = self._ami
        assert ami is not None
        async with self.world(scenario, n, self._queue_summary) as world:
            call = AsteriskCall(ami, caller_id=scenario.callerid, attest=scenario.attest)
            done = asyncio.Event()
            self._calls[call.service_uid] = (world, done)
            contexts: list[str] = []

            def on_exten(event: dict) -> None:
                if event.get("Uniqueid") == call.service_uid:
                    contexts.append(event.get("Context") or "")

            ami.on("Newexten", on_exten)
            line = AsteriskLine(call, done)
            try:
                await call.start()
                await drive(scenario.steps, line, self.expect_timeout)
                try:
                    await asyncio.wait_for(done.wait(), self.call_timeout)
                except TimeoutError:
                    raise Failed("end of call", "the service never finished the call") from None
                await _events_settled(line)
                commands[:] = line.commands
                await check_outcome(world, commands)
                if scenario.expect.next in ("queue", "voicemail"):
                    await _dialplan_went(contexts, f"starpay-{scenario.expect.next}", call)
            finally:
                commands[:] = line.commands
                ami.off("Newexten", on_exten)
                await call.close()
                self._calls.pop(call.service_uid, None)
        return commands


async def _events_settled(line: AsteriskLine, quiet: float = 1.0, limit: float = 10.0
                          ) -> None:
    """The service has finished, but AMI's AGIExecStart events for its last commands (the
    STARPAY_NEXT it set) can still be on their way on a loaded box: wait until no new one
    has come for ``quiet`` seconds (at most ``limit``)."""
    deadline = time.monotonic() + limit
    seen, since = len(line.commands), time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - since < quiet:
        await asyncio.sleep(0.05)
        if len(line.commands) != seen:
            seen, since = len(line.commands), time.monotonic()


async def _dialplan_went(contexts: list[str], context: str, call: AsteriskCall,
                         timeout: float = 10.0) -> None:
    """After the AGI, Asterisk's own dialplan must take the call where STARPAY_NEXT said."""
    deadline = time.monotonic() + timeout
    while context not in contexts:
        if time.monotonic() > deadline or call.ended.is_set():
            raise Failed("expect: next", f"the dialplan did not reach [{context}] (went "
                         f"through: {', '.join(dict.fromkeys(contexts)) or 'nothing'})")
        await asyncio.sleep(0.05)


class AsteriskLine:
    def __init__(self, call: AsteriskCall, agi_done: asyncio.Event) -> None:
        self.call = call
        self.agi_done = agi_done

    @property
    def commands(self) -> list[str]:
        return [h.command for h in self.call.heard]

    async def more(self, seen: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        # Polling keeps this independent of AsteriskCall's internals; 20 ms is far below
        # the shortest prompt.
        while len(self.call.heard) <= seen:
            if self.agi_done.is_set() or self.call.ended.is_set() \
                    or time.monotonic() > deadline:
                return len(self.call.heard) > seen
            await asyncio.sleep(0.02)
        return True

    async def press(self, keys: str) -> None:
        await self.call.press(keys)

    async def type_keys(self, keys: str) -> None:
        # PlayDTMF returns once the tone has played: the tone is the gap between keys.
        await self.call.press(keys, gap=0, duration_ms=round(TYPE_GAP_S * 1000))

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def hangup(self) -> None:
        await self.call.hangup()
