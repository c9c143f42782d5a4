"""Run call scenarios (ivr/qa/scenario.py) against the real pay flow, on two targets.

``emulator``: FakeAsterisk calls an in-process AGIServer running the real pay flow. Fast
(well under a second a call), no PBX needed.

``asterisk``: a real Asterisk (a private LocalAsterisk unless one is handed in) places the
call with AMI Originate on a Local channel (ivr.qa.asterisk_call); its dialplan runs the AGI
against our AGIServer on the instance's agi_port, real prompts play, keys are pressed with
PlayDTMF when the expected prompt shows up in AGIExecStart, and after the AGI the dialplan
really sends the caller to the queue or voicemail. Free agents are real queue members
(QueueAdd of a Local channel), so the flow's AMI QueueSummary check is the production one.

Either way each scenario gets its own SQLite database (a copy of one migrated, seeded
template), its own sandbox gateway and a clock starting at its ``at``, so scenarios run in
parallel (``jobs`` at a time) without seeing each other's payments or lockouts. Scenarios
with ``agents`` on the asterisk target run alone, one after another, since queue members
are shared by every call on that Asterisk.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from pathlib import Path
from typing import Protocol

from sqlalchemy import func, select

from ivr.agi.protocol import split_command
from ivr.agi.server import AGIServer
from ivr.agi.session import AGISession
from ivr.ami.client import AMIClient
from ivr.asterisk.local import LocalAsterisk
from ivr.config import CallConfig, HoursConfig
from ivr.flows.context import FlowContext
from ivr.flows.pay import pay
from ivr.gateways.sandbox import SandboxGateway
from ivr.qa.asterisk_call import QA_EVENTS, AsteriskCall, qa_ami
from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.qa.scenario import Scenario, Step, prompts_of, sound_prompt
from ivr.services.accounts import AccountService
from ivr.services.callbacks import CallbackStore
from ivr.services.calls import CallLog
from ivr.services.demo import seed_demo
from ivr.services.hours import BusinessHours
from ivr.services.payments import PaymentService
from ivr.storage.calls import Callback, CallRecord
from ivr.storage.db import Database
from ivr.storage.migrate import upgrade
from ivr.storage.models import Account, Payment, PaymentMethod, PhoneNumber, Statement

TARGETS = ("emulator", "asterisk")
QUEUE = "billing"
AGENT_INTERFACE = "Local/echo@starpay-test"  # answers and stays on the line: a free agent


@dataclass
class Result:
    scenario: Scenario
    target: str
    passed: bool
    seconds: float
    step: str | None = None  # the step (or "expect: ...") that failed
    message: str = ""
    heard: list[str] = field(default_factory=list)  # every prompt id played in the call

    @property
    def name(self) -> str:
        return self.scenario.name


class Failed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step, self.message = step, message


# ---- the world of one scenario -------------------------------------------------------------


class Templates:
    """Migrated databases (demo-seeded or empty) built once per run and copied per scenario:
    seeding hashes PINs, which is slow on purpose."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._built: dict[str, Path] = {}
        self._lock = asyncio.Lock()

    async def get(self, seed: str) -> Path:
        async with self._lock:
            if seed not in self._built:
                path = self.folder / f"template-{seed}.db"
                db = Database(f"sqlite+aiosqlite:///{path}")
                await upgrade(db.engine)
                if seed == "demo":
                    await seed_demo(db)
                await db.dispose()  # the last connection folds the WAL into the file
                self._built[seed] = path
            return self._built[seed]


@dataclass
class World:
    scenario: Scenario
    db: Database
    gateway: SandboxGateway
    ctx: FlowContext

    async def close(self) -> None:
        await self.gateway.close()
        await self.db.dispose()


Agents = Callable[[], Awaitable[bool]]


@contextlib.asynccontextmanager
async def make_world(scenario: Scenario, templates: Templates, folder: Path,
                     agents: Agents, hours: HoursConfig, call: CallConfig, *,
                     first_key_ms: int, next_key_ms: int) -> AsyncIterator[World]:
    path = folder / "starpay.db"
    template = await templates.get(scenario.seed)
    await asyncio.to_thread(_copy, template, path)
    db = Database(f"sqlite+aiosqlite:///{path}")
    await add_accounts(db, scenario)
    gateway = SandboxGateway(folder / "sandbox.db")
    business = BusinessHours.from_config(hours)
    start = scenario.start_time(business.tz)
    began = time.monotonic()

    def clock() -> dt.datetime:
        if start is None:
            return dt.datetime.now(UTC)
        return (start + timedelta(seconds=time.monotonic() - began)).astimezone(UTC)

    ctx = FlowContext(accounts=AccountService(db), payments=PaymentService(db, gateway),
                      calls=CallLog(db, clock=clock), callbacks=CallbackStore(db, clock=clock),
                      hours=business, agents_available=agents, config=call, clock=clock,
                      first_key_ms=first_key_ms, next_key_ms=next_key_ms)
    world = World(scenario, db, gateway, ctx)
    try:
        yield world
    finally:
        await world.close()


def _copy(template: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, path)


async def add_accounts(db: Database, scenario: Scenario) -> None:
    today = date.today()
    async with db.write_session() as s:
        for spec in scenario.accounts:
            acct = Account(account_number=spec.account, name=spec.name, language=spec.language,
                           zip_code=spec.zip_code, balance_minor=spec.balance_minor,
                           currency="USD", sms_opt_in=False)
            for e164 in spec.phones:
                phone = (await s.execute(select(PhoneNumber).where(
                    PhoneNumber.e164 == e164))).scalar_one_or_none()
                acct.phones.append(phone or PhoneNumber(e164=e164))
            s.add(acct)
            await s.flush()
            if spec.card:
                token, brand, last4 = spec.card
                s.add(PaymentMethod(account_id=acct.id, token=token, brand=brand, last4=last4,
                                    exp_month=12, exp_year=today.year + 2))
            if spec.due_in_days is not None:
                due = today + timedelta(days=spec.due_in_days)
                s.add(Statement(account_id=acct.id, amount_due_minor=spec.balance_minor,
                                currency="USD", statement_date=due - timedelta(days=21),
                                due_date=due, status="open"))


# ---- driving the steps ---------------------------------------------------------------------


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


async def drive(steps: Sequence[Step], line: Line, expect_timeout: float) -> None:
    """Take the steps in order; raise Failed at the first that cannot be done."""
    pos = 0
    for step in steps:
        if step.kind == "expect":
            while (hit := find_run(line.commands, pos, step.prompts)) is None:
                if not await line.more(len(line.commands), expect_timeout):
                    heard = prompts_of(line.commands[pos:])
                    ended = "the call ended" if not heard else "not heard"
                    raise Failed(step.describe(), f"{ended}; heard since the previous step: "
                                 f"{', '.join(heard) or 'nothing'}")
            pos = hit + 1
        elif step.kind == "press":
            await line.press(step.keys)
        elif step.kind == "wait":
            await line.wait(step.seconds)
        else:
            await line.hangup()


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


# ---- checking the outcome ------------------------------------------------------------------


def next_of(commands: Sequence[str]) -> str:
    """STARPAY_NEXT as the service last set it ("none" when it never did)."""
    value = "none"
    for raw in commands:
        words = split_command(raw)
        if len(words) >= 4 and [w.upper() for w in words[:2]] == ["SET", "VARIABLE"] \
                and words[2] == "STARPAY_NEXT":
            value = words[3] or "none"
    return value


async def check_outcome(world: World, commands: Sequence[str]) -> None:
    want = world.scenario.expect
    async with world.db.session() as s:
        payments = list((await s.execute(select(Payment).order_by(Payment.id))).scalars())
        record = (await s.execute(select(CallRecord).order_by(CallRecord.id.desc())
                                  .limit(1))).scalar_one_or_none()
        callbacks = (await s.execute(select(func.count()).select_from(Callback).where(
            Callback.status == "pending"))).scalar_one()
    if want.payment is not None:
        if want.payment.state is None:
            if payments:
                p = payments[-1]
                raise Failed("expect: payment", f"wanted none; got {p.state} "
                             f"{p.amount_minor / 100:.2f}")
        else:
            if not payments:
                raise Failed("expect: payment", f"wanted {want.payment.state}; got none")
            p = payments[-1]
            if p.state != want.payment.state or (want.payment.amount_minor is not None and
                                                 p.amount_minor != want.payment.amount_minor):
                amount = ("" if want.payment.amount_minor is None
                          else f" {want.payment.amount_minor / 100:.2f}")
                raise Failed("expect: payment", f"wanted {want.payment.state}{amount}; got "
                             f"{p.state} {p.amount_minor / 100:.2f}")
    if want.call_outcome is not None or want.language is not None:
        if record is None:
            raise Failed("expect: call_outcome", "no call record was stored")
        if want.call_outcome is not None and record.outcome != want.call_outcome:
            raise Failed("expect: call_outcome",
                         f"wanted {want.call_outcome}; got {record.outcome} "
                         f"(path: {' '.join(record.path or [])})")
        if want.language is not None and record.language != want.language:
            raise Failed("expect: language", f"wanted {want.language}; got {record.language}")
    if want.next is not None and next_of(commands) != want.next:
        raise Failed("expect: next", f"wanted {want.next}; STARPAY_NEXT was "
                     f"{next_of(commands)}")
    if want.callback is not None:
        got = "scheduled" if callbacks else "none"
        if got != want.callback:
            raise Failed("expect: callback", f"wanted {want.callback}; got {got}")


# ---- targets -------------------------------------------------------------------------------


class Runner:
    """Runs scenarios on one target; use ``async with Runner(...)`` then ``run(...)``."""

    target = "emulator"
    expect_timeout = 10.0
    call_timeout = 30.0
    first_key_ms = 500
    next_key_ms = 300

    def __init__(self, *, jobs: int = 8, hours: HoursConfig | None = None,
                 call: CallConfig | None = None) -> None:
        self.jobs = max(1, jobs)
        self.hours = hours or HoursConfig()
        self.call = call or CallConfig()
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
                          self.hours, self.call, first_key_ms=self.first_key_ms,
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


class AsteriskRunner(Runner):
    """The same scenarios through a real Asterisk; see the module docstring."""

    target = "asterisk"
    expect_timeout = 45.0  # the main menu alone plays 12 s, then up to 3 x 5 s of silence
    call_timeout = 180.0
    first_key_ms = 5000  # the production pauses: real callers, real timing
    next_key_ms = 3000

    def __init__(self, instance: LocalAsterisk | None = None, *, jobs: int = 16,
                 hours: HoursConfig | None = None, call: CallConfig | None = None) -> None:
        super().__init__(jobs=jobs, hours=hours, call=call)
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
            await pay(session, world.ctx)
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

    async def wait(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def hangup(self) -> None:
        await self.call.hangup()


# ---- reports -------------------------------------------------------------------------------


def describe(result: Result) -> str:
    status = "PASS" if result.passed else "FAIL"
    line = f"{status}  {result.name}  [{result.target}, {result.seconds:.1f} s]"
    if result.passed:
        return line
    heard = result.heard if len(result.heard) <= 30 else ["...", *result.heard[-30:]]
    return (f"{line}\n      {result.step}: {result.message}\n"
            f"      heard: {', '.join(heard) or 'nothing'}\n      file: {result.scenario.file}")


def summary(results: Sequence[Result]) -> str:
    failed = sum(not r.passed for r in results)
    return f"{len(results) - failed} passed, {failed} failed"


def write_junit(results: Sequence[Result], path: str | Path, target: str) -> None:
    failed = sum(not r.passed for r in results)
    suite = ET.Element("testsuite", name=f"starpay-scenarios.{target}",
                       tests=str(len(results)), failures=str(failed), errors="0",
                       time=f"{sum(r.seconds for r in results):.3f}")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"scenarios.{r.target}",
                             name=r.name, time=f"{r.seconds:.3f}", file=str(r.scenario.file))
        if not r.passed:
            fail = ET.SubElement(case, "failure", message=f"{r.step}: {r.message}")
            fail.text = describe(r)
        out = ET.SubElement(case, "system-out")
        out.text = "heard: " + ", ".join(r.heard)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


async def run_scenarios(scenarios: Sequence[Scenario], target: str = "emulator", *,
                        jobs: int | None = None, instance: LocalAsterisk | None = None,
                        on_result: Callable[[Result], None] | None = None,
                        hours: HoursConfig | None = None) -> list[Result]:
    if target == "emulator":
        runner: Runner = Runner(jobs=jobs or 8, hours=hours)
    elif target == "asterisk":
        runner = AsteriskRunner(instance, jobs=jobs or 16, hours=hours)
    else:
        raise ValueError(f"target is one of {TARGETS}, not {target!r}")
    async with runner:
        return await runner.run(scenarios, on_result)
