"""The sip target: each scenario is a real SIP phone's call (sipp, ivr.qa.sip_phone) through
a real Asterisk, its keys RFC 4733 telephone-events typed 80 ms apart.

The phone replays a recording, so its keys are fixed before the call: an ``expect:`` followed
by ``press:`` / ``type:`` becomes one timed entry (key_timeline.Step), a ``wait:`` between
them moves the keys to that many seconds after the prompt starts, and ``hangup`` ends the
sipp scenario at that moment. The times come from a dry run of the same scenario on the
emulator (its own world, thrown away). After the call, every ``expect:`` is checked, in
order, against the commands the service really sent, then the scenario's outcome.

The phone dials as the local instance's QA endpoint (``qa-phone``): its dialplan takes the
scenario's caller ID and attestation from the X-QA-Caller and X-QA-Attest headers, which
the product's endpoints never read (asterisk-config/extensions_starpay_qa.conf says why).

Scenarios a pre-recorded caller cannot play are reported as skipped, with the reason:
queue agents (the asterisk target adds real queue members), keys that follow no prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.agi.server import AGIServer
from ivr.agi.session import AGISession
from ivr.ami.client import AMIClient
from ivr.asterisk.local import QA_SIP_USER, LocalAsterisk
from ivr.config import Config
from ivr.flows.pay import pay
from ivr.qa import sip_phone
from ivr.qa.asterisk_call import qa_ami
from ivr.qa.checks import check_outcome
from ivr.qa.key_timeline import (
    CannotTime,
    Step,
    dry_run,
    plan,
    sound_seconds,
    sounds_of,
    typing_seconds,
)
from ivr.qa.result import Result
from ivr.qa.scenario import Scenario, prompts_of
from ivr.qa.scenario import Step as ScenarioStep
from ivr.qa.slow_session import slowed
from ivr.qa.steps import Failed, find_prompts
from ivr.qa.targets.base import Runner
from ivr.qa.world import World

HANGUP_AFTER_S = 0.5  # a hangup after an expect: this long into that prompt
AFTER_KEYS_S = 1.0  # a hangup right after keys: this long after the last one
CLOSING_S = 30.0  # no hangup: the service's own end (its BYE) is awaited this much longer
AGI_END_S = 15.0  # once the phone is done, the service's session must end within this


class CannotPreTime(ValueError):
    """The scenario needs a caller who reacts during the call; a recording cannot."""


@dataclass(frozen=True)
class Timed:
    """A scenario as a recording: the entries' steps, and when the phone hangs up."""

    steps: list[Step]  # the last one has no keys when the phone hangs up during a prompt
    hangs_up: bool
    after_keys_s: float | None = None  # hang up this long after the last keys instead


def timed_steps(scenario: Scenario) -> Timed:
    """The scenario's steps as timed entries; CannotPreTime when it cannot be recorded."""
    if scenario.agents:
        raise CannotPreTime("needs a free queue agent, which a recorded phone cannot "
                            "wait for (the asterisk target adds real queue members)")
    out: list[Step] = []
    prompt: str | None = None
    waited = 0.0
    keyed = False  # keys were already typed on this expect
    for step in scenario.steps:
        if step.kind == "expect":
            prompt, waited, keyed = step.prompts[-1], 0.0, False
        elif step.kind == "wait":
            waited += step.seconds
        elif step.kind in ("press", "type"):
            if prompt is None or keyed:
                raise CannotPreTime(f"{step.describe()} follows no expect: a recording "
                                    "times keys by the prompt they answer")
            out.append(Step(prompt, step.keys, waited or None))
            keyed = True
        else:  # hangup: the recording ends
            if prompt is not None and not keyed:
                return Timed([*out, Step(prompt, "", waited + HANGUP_AFTER_S)], True)
            return Timed(out, True, after_keys_s=waited + AFTER_KEYS_S)
    return Timed(out, False)


def check_heard(steps: Sequence[ScenarioStep], commands: Sequence[str]) -> None:
    """Every expect's prompts, in the steps' order, in what the service sent."""
    pos = (0, 0)
    for step in steps:
        if step.kind != "expect":
            continue
        hit = find_prompts(commands, pos, step.prompts)
        if hit is None:
            heard = prompts_of(commands[pos[0]:])[pos[1]:]
            raise Failed(step.describe(), "not heard; heard after the previous expect: "
                         f"{', '.join(heard) or 'nothing'}")
        pos = (hit[0], hit[1] + 1)


class _RecordingStream:
    """The session's stream, keeping each command line the flow writes on it."""

    def __init__(self, stream: Any, commands: list[str]) -> None:
        self._stream, self._commands = stream, commands

    def write(self, data: bytes) -> None:
        self._commands.append(data.decode(errors="replace").rstrip("\n"))
        self._stream.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def record_commands(session: AGISession, commands: list[str]) -> None:
    """Keep every command sent on ``session`` from now on, as its raw line."""
    session.stream = _RecordingStream(session.stream, commands)  # type: ignore[assignment]


@dataclass
class _Call:
    world: World
    commands: list[str]
    done: asyncio.Event
    channel: str = ""


class SipRunner(Runner):
    """Scenarios as a real SIP phone's calls; see the module docstring."""

    target = "sip"
    expect_timeout = 0.0  # nothing waits on a prompt: the recording is fixed
    call_timeout = 240.0
    first_key_ms = 5000  # the production pauses: the recording types in them
    next_key_ms = 3000

    def __init__(self, instance: LocalAsterisk | None = None, *, jobs: int = 6,
                 config: Config | None = None) -> None:
        super().__init__(jobs=jobs, config=config)
        self.instance = instance
        self._own = instance is None
        self._server: AGIServer | None = None
        self._ami: AMIClient | None = None
        self._calls: dict[str, _Call] = {}
        self._contexts: dict[str, list[str]] = {}  # channel -> dialplan contexts it entered

    async def start(self) -> None:
        sip_phone.find_sipp()  # no sipp: the run fails at once, saying what to install
        if self.instance is None:
            self.instance = LocalAsterisk(f"qa-sip-{os.getpid()}")
            await asyncio.to_thread(self.instance.start)
        self._server = AGIServer({"pay": self._dispatch}, port=self.instance.agi_port)
        await self._server.start()
        self._ami = await qa_ami(self.instance, events="call,dialplan")
        self._ami.on("Newexten", self._on_exten)

    async def stop(self) -> None:
        if self._ami is not None:
            await self._ami.close()
        if self._server is not None:
            await self._server.close()
        if self._own and self.instance is not None:
            await asyncio.to_thread(self.instance.remove)

    def _on_exten(self, event: dict) -> None:
        channel = event.get("Channel") or ""
        if channel.startswith(f"PJSIP/{QA_SIP_USER}-"):
            self._contexts.setdefault(channel, []).append(event.get("Context") or "")

    async def _dispatch(self, session: AGISession) -> None:
        # The QA dialplan put the phone's X-QA-Call tag in QA_CALL: it names the scenario.
        tag = await session.get_variable("QA_CALL") or ""
        call = self._calls.get(tag)
        if call is None:
            raise RuntimeError(f"no scenario waits for SIP call {tag!r}")
        call.channel = session.channel
        record_commands(session, call.commands)
        try:
            await pay(slowed(session, call.world.scenario.slow_ms), call.world.ctx)
        finally:
            call.done.set()

    async def run_one(self, scenario: Scenario, n: int) -> Result:
        try:
            timed_steps(scenario)
        except CannotPreTime as exc:
            return Result(scenario, self.target, True, 0.0, skipped=str(exc))
        result = await super().run_one(scenario, n)
        if result.step == "dry run":  # CannotTime: the emulator did not say how to time it
            return Result(scenario, self.target, True, result.seconds,
                          skipped=f"cannot be pre-timed: {result.message}")
        return result

    async def _no_agents(self) -> bool:
        return False  # scenarios with agents are skipped

    async def _entries(self, scenario: Scenario, n: int, timed: Timed
                       ) -> tuple[list[sip_phone.Entry], float]:
        """The entries' times from a dry run on the emulator, and how long the phone stays
        on the line (from the start of its media)."""
        async with self.world(scenario, 10_000 + n, self._no_agents) as dry:
            server = AGIServer({"pay": lambda s: pay(s, dry.ctx)}, port=0)
            async with server:
                try:
                    transcript, pressed_at = await dry_run(
                        server.port, timed.steps, callerid=scenario.callerid,
                        attest=scenario.attest)
                    entries = plan(transcript, pressed_at, timed.steps,
                                   per_command_s=scenario.slow_ms / 1000)
                except CannotTime as exc:
                    raise Failed("dry run", str(exc)) from None
        if timed.hangs_up and timed.after_keys_s is None:
            return entries[:-1], entries[-1].at  # the last is the moment to hang up
        end = entries[-1].at + typing_seconds(entries[-1].keys) if entries else 0.0
        if timed.hangs_up:
            return entries, end + (timed.after_keys_s or 0.0)
        # The phone waits for the service to end the call; the dry run says how long
        # the rest plays (closing prompts, a retry's timeouts) plus a margin.
        plays = sum(_length_or_zero(s, "en") + scenario.slow_ms / 1000
                    for cmd in transcript for s in sounds_of(cmd))
        return entries, max(end, plays) + CLOSING_S

    async def call_once(self, scenario: Scenario, n: int, commands: list[str],
                        began: list[float]) -> list[str]:
        assert self.instance is not None and self._ami is not None, "use async with"
        timed = timed_steps(scenario)
        entries, hold_s = await self._entries(scenario, n, timed)
        async with self.world(scenario, n, self._no_agents) as world:
            tag = uuid.uuid4().hex
            call = _Call(world, commands, asyncio.Event())
            self._calls[tag] = call
            headers = {"X-QA-Call": tag, "X-QA-Caller": scenario.callerid}
            if scenario.attest:
                headers["X-QA-Attest"] = scenario.attest
            began[0] = time.monotonic()
            try:
                phone_task = asyncio.create_task(asyncio.to_thread(
                    sip_phone.call, self.instance, entries, self._folder(n),
                    user=QA_SIP_USER, headers=headers, hold_s=hold_s))
                handed = await self._hand_off(scenario, call, phone_task)
                phone = await phone_task
                if not phone.completed:
                    raise Failed("call", "the SIP phone's call failed: "
                                 + phone.output[-1500:])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(call.done.wait(), AGI_END_S)
                if not call.done.is_set():
                    raise Failed("end of call", "the service never finished the call")
                check_heard(scenario.steps, commands)
                await check_outcome(world, commands)
                if handed is not None and not handed:
                    went = self._contexts.get(call.channel, [])
                    raise Failed("expect: next", f"the dialplan did not reach "
                                 f"[starpay-{scenario.expect.next}] (went through: "
                                 f"{', '.join(dict.fromkeys(went)) or 'nothing'})")
            finally:
                self._calls.pop(tag, None)
                self._contexts.pop(call.channel, None)
        return commands

    def _folder(self, n: int) -> Path:
        assert self._tmp is not None
        return self._tmp / f"s{n:03d}" / "phone"

    async def _hand_off(self, scenario: Scenario, call: _Call,
                        phone: asyncio.Future[sip_phone.SipCall]) -> bool | None:
        """When the service hands the call to the queue or voicemail, whether Asterisk's
        dialplan took it there (None: no hand-off expected); then the call is hung up, as
        a recording cannot leave a message or wait in a queue."""
        want = scenario.expect.next
        if want not in ("queue", "voicemail"):
            return None
        done = asyncio.ensure_future(call.done.wait())
        waiters: list[asyncio.Future[Any]] = [done, phone]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        if phone.done():
            return f"starpay-{want}" in self._contexts.get(call.channel, [])
        deadline = time.monotonic() + 10
        while f"starpay-{want}" not in self._contexts.get(call.channel, []):
            if time.monotonic() > deadline or phone.done():
                return False
            await asyncio.sleep(0.05)
        assert self._ami is not None
        with contextlib.suppress(Exception):  # the phone may have hung up meanwhile
            await self._ami.action({"Action": "Hangup", "Channel": call.channel})
        return True


def _length_or_zero(name: str, lang: str) -> float:
    """A sound's length, 0 for one that is not a StarPay prompt (digits and the like are
    short; the margin covers them)."""
    try:
        return sound_seconds(name, lang)
    except CannotTime:
        return 0.0
