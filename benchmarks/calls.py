"""Full *PAY calls under load: StarPay beside a bare FastAGI server, through a fake and a
real Asterisk.

    python benchmarks/calls.py [--target fake|asterisk|both] [--calls 2000]
                               [--ramp 50,100,200,400] [--rounds 1] [--short-prompts]

Every call is the happy path: greeting → balance → menu 1 → confirm 1 → approved →
goodbye, hang-up. Each call has its own account (phone, $84.17 due, sandbox Visa 4242,
texts on) in a fresh SQLite database made for the run, so no two charges meet on one
balance or daily limit.

Servers (each in its own process, so it does not share a loop with the load):
- starpay: `ivr serve` itself (AGIServer, the real pay flow built from the config, real
  services, the sandbox gateway, its reconciler and callback scheduler), configured only
  through the STARPAY_* environment.
- baseline: a bare asyncio FastAGI server with no database and no logic: it replays the
  exact AGI commands StarPay sent in a probe call (the same STREAM FILE and EXEC Read
  commands, so Asterisk does the same media work), reading one reply per command. StarPay
  asks each question in one Read that waits for its key itself, so late keys lengthen both
  servers' calls alike; a replayed STREAM FILE menu (an older flow's) that ends without a
  key is followed by a WAIT FOR DIGIT, as that flow's menus did.

Targets:
- fake: N FakeAsterisk callers in this process. All N connect and get their first
  command before any is answered (so the server really holds N calls; RSS is sampled
  then), then every reply goes out after an optional pause (--think-ms). calls/s is the
  server's throughput with N calls in flight; the round trip (reply written → next
  command read) includes this process's own scheduling, so it is an upper bound.
- asterisk: a private LocalAsterisk; calls are AMI Originates on Local channels, keys are
  PlayDTMF when the prompt shows up in AGIExecStart (reusing ivr.qa.asterisk_call), on a
  few AMI connections, each filtered to its own calls. Keys are queued on the service
  channel as received DTMF: played out of the caller's channel, each key holds its AMI
  connection for its duration, and at 400 calls presses queued 5-8 s behind each other
  (measured), longer than a menu waits. How late the prompt events arrive and how long
  PlayDTMF takes are printed per level. Call time = Originate sent →
  Hangup event; stretch = mean call time / mean at the lowest concurrency. --short-prompts
  cuts every StarPay prompt file in the instance's sounds dir to --prompt-ms (no product
  change: the flow plays whatever file is there); without it a call lasts ~40 s.

--bare protocol makes the baseline the same replay written as asyncio Protocol callbacks
instead of a streams coroutine: no task and no coroutine per call, each reply answered
inside data_received. That is the floor for any FastAGI server (a flow that awaits
anything needs a task per call), and a much stricter baseline than the default one, which
is a plain asyncio streams server like the one the issue's figures were taken with.

--agi-layer (fake target) adds a third server between the two: StarPay's FastAGI layer
alone (AGIServer and AGISession, as `ivr serve` runs them) replaying the baseline's script
with no flow, database or gateway; it splits StarPay's cost into the protocol layer's and
the rest's.

The box is shared: rounds alternate the servers (starpay, baseline, then baseline,
starpay, ...) and the load average is printed with each measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pstats
import random
import re
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psutil
from bench_common import load_average, raise_fd_limit

from ivr.agi.protocol import split_command
from ivr.ami import AMIActionError
from ivr.qa.asterisk_call import AsteriskCall, qa_ami
from ivr.qa.fake_asterisk import FakeAsterisk

HERE = Path(__file__).resolve()
FIRST_PHONE = 15552000000  # +1 555 numbers: never a real subscriber
FIRST_ACCOUNT = 700000
BALANCE = 8417  # the demo's $84.17: every call says the same words, like the baseline
KEYS = {"starpay/main_menu": "1", "starpay/pay_confirm_press": "1"}  # prompt -> key pressed
MENUS = tuple(f"STREAM FILE {p} " for p in KEYS)  # commands after which a key may come late
# The command that plays a prompt: alone (STREAM FILE) or in a question's list (EXEC Read).
PLAYS = r"^(?:STREAM FILE |EXEC Read \S*?)"
_VERB_WORD = re.compile(r"[A-Z]+\Z")
CHILDREN: set[asyncio.subprocess.Process] = set()
BARE = "streams"  # the baseline's implementation (--bare)


def phone(i: int) -> str:
    return f"+{FIRST_PHONE + i}"






def cpu_s(ps: psutil.Process) -> float:
    t = ps.cpu_times()
    return t.user + t.system


def pct(data: Sequence[float], q: float) -> float:
    if not data:
        return float("nan")
    s = sorted(data)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- the database: N accounts made through the import service ---------------------------

async def build_template(path: Path, n: int) -> None:
    from ivr.services.account_csv import Card, Record, import_records
    from ivr.storage.db import Database
    from ivr.storage.migrate import upgrade

    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        await upgrade(db.engine)
        due = date.today() + timedelta(days=14)
        card = Card("tok_sandbox_approve", None, "visa", "4242", 12, date.today().year + 3)
        # No PIN: hashing is slow on purpose and a trusted caller ID never asks for one.
        await import_records(db, [
            Record(i + 2, str(FIRST_ACCOUNT + i), f"Bench {i}", "en", "America/New_York",
                   "10001", None, [phone(i)], BALANCE, "USD", due, card, True)
            for i in range(n)], actor="benchmark")
    finally:
        await db.dispose()  # folds the WAL into the file, so a plain copy is complete


def db_counts(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as con:
        out = {f"payments:{s}": c for s, c in con.execute(
            "SELECT state, count(*) FROM payments GROUP BY state")}
        out |= {f"calls:{o}": c for o, c in con.execute(
            "SELECT coalesce(outcome, '?'), count(*) FROM calls GROUP BY outcome")}
    return out


# -- the servers (run in a child process) -----------------------------------------------

def serve_starpay(profile: str | None) -> None:
    """`ivr serve` as the CLI runs it, plus a PORT line for the parent."""
    from ivr import config, log
    from ivr.agi.server import tune_gc
    from ivr.commands.serve import serve

    cfg = config.load()
    log.setup(cfg.log.level)
    raise_fd_limit()
    prof = None
    if profile:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        def ready(server: Any) -> None:
            tune_gc()  # as `ivr serve` does once it listens
            print(f"PORT {server.port}", flush=True)

        asyncio.run(serve(cfg, ready=ready))
    finally:
        if prof:
            prof.disable()
            prof.dump_stats(profile)


async def serve_baseline(script: list[bytes], port: int) -> None:
    # Like StarPay's menus, wait for the key when a menu prompt ended without one, so
    # the baseline's calls last as long as StarPay's when keys come late.
    menus = tuple(m.encode() for m in MENUS)

    async def call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(line: bytes) -> bytes:
            writer.write(line)
            reply = await reader.readline()
            if reply.startswith(b"HANGUP"):  # out of band; the reply follows
                reply = await reader.readline()
            return reply

        try:
            while (await reader.readline()).strip():  # the agi_* header block
                pass
            for line in script:
                reply = await send(line)
                if reply.startswith(b"200 result=0 ") and line.startswith(menus):
                    reply = await send(b"WAIT FOR DIGIT 5000\n")
                if not reply or reply.startswith((b"511", b"200 result=-1")):
                    break
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(call, "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


async def serve_agi_layer(script: list[str], port: int) -> None:
    """The baseline's exchange through StarPay's own AGIServer/AGISession (parsed replies,
    deadlines, hang-up handling), with nothing behind it."""
    from ivr.agi.server import AGIServer, tune_gc
    from ivr.agi.session import AGISession

    commands = []
    for line in script:  # "STREAM FILE starpay/x """ -> ("STREAM FILE", "starpay/x", "")
        words = split_command(line)
        verb = next((i for i, w in enumerate(words) if not _VERB_WORD.match(w)), len(words))
        commands.append((" ".join(words[:verb]), words[verb:], line.startswith(MENUS)))

    async def replay(session: AGISession) -> None:
        for verb, args, menu in commands:
            reply = await session.command(verb, *args)
            if menu and reply.result == "0":
                reply = await session.command("WAIT FOR DIGIT", 5000)
            if reply.result == "-1":
                return

    server = AGIServer(lambda script: replay, port=port, max_sessions=100_000)
    await server.start()
    tune_gc()  # as `ivr serve` does
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    print(f"PORT {server.port}", flush=True)
    await stop.wait()
    await server.close()


class _BareProtocol(asyncio.Protocol):
    """serve_baseline's call on an asyncio Protocol: the same replay, no streams."""

    def __init__(self, script: list[bytes], menus: tuple[bytes, ...]) -> None:
        self.script, self.menus = script, menus
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.in_headers = True
        self.i = -1
        self.waiting = False  # a WAIT FOR DIGIT after a menu is in flight

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if self.in_headers:
            end = buf.find(b"\n\n")
            if end < 0:
                self.buf = buf
                return
            self.in_headers = False
            buf = buf[end + 2:]
            self.step(None)
        while (n := buf.find(b"\n")) >= 0:
            line, buf = buf[:n + 1], buf[n + 1:]
            if not line.startswith(b"HANGUP"):  # out of band; the reply follows
                self.step(line)
        self.buf = buf

    def step(self, reply: bytes | None) -> None:
        assert self.transport is not None
        if reply is not None:
            if reply.startswith((b"511", b"200 result=-1")):
                self.transport.close()
                return
            if (not self.waiting and reply.startswith(b"200 result=0 ")
                    and self.script[self.i].startswith(self.menus)):
                self.waiting = True
                self.transport.write(b"WAIT FOR DIGIT 5000\n")
                return
        self.waiting = False
        self.i += 1
        if self.i >= len(self.script):
            self.transport.close()
            return
        self.transport.write(self.script[self.i])


async def serve_baseline_protocol(script: list[bytes], port: int) -> None:
    menus = tuple(m.encode() for m in MENUS)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _BareProtocol(script, menus), "127.0.0.1",
                                      port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    await stop.wait()
    server.close()


class Server:
    """One server child process: start it, watch it with psutil, stop it."""

    def __init__(self, kind: str, run_dir: Path, *, port: int = 0, db: Path | None = None,
                 script: Path | None = None, ami: tuple[int, str] | None = None,
                 profile: Path | None = None) -> None:
        self.kind, self.run_dir, self.port = kind, run_dir, port
        self.db, self.script, self.ami, self.profile = db, script, ami, profile
        self.proc: asyncio.subprocess.Process | None = None
        self.ps: psutil.Process | None = None

    async def start(self) -> Server:
        env = dict(os.environ)
        args = [sys.executable, str(HERE), "--serve", self.kind]
        if self.kind == "starpay":
            assert self.db is not None
            empty = self.run_dir / "starpay.toml"
            empty.touch()
            ami_port, ami_secret = self.ami or (1, "unused")  # fake: nothing to reach
            env |= {"STARPAY_CONFIG": str(empty),
                    "STARPAY_DATABASE_URL": f"sqlite+aiosqlite:///{self.db}",
                    "STARPAY_PAYMENTS_SANDBOX_PATH": str(self.db.with_suffix(".sandbox")),
                    "STARPAY_AGI_PORT": str(self.port), "STARPAY_AMI_PORT": str(ami_port),
                    "STARPAY_AMI_SECRET": ami_secret, "STARPAY_AGI_MAX_SESSIONS": "100000"}
            if self.profile:
                args += ["--profile-out", str(self.profile)]
        else:
            args += ["--script", str(self.script), "--port", str(self.port), "--bare", BARE]
        err = os.open(self.run_dir / f"{self.kind}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                      0o600)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=err)
        finally:
            os.close(err)
        CHILDREN.add(self.proc)
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while not (line := (await self.proc.stdout.readline()).decode()).startswith(
                    "PORT "):
                if not line:
                    raise RuntimeError(f"{self.kind} server did not start; see its log")
        self.port = int(line.split()[1])
        self.ps = psutil.Process(self.proc.pid)
        return self

    async def warm_up(self, callerid: str) -> None:
        """One full call on an account the measurement does not use: lazy imports and
        first-time statement compiles are not per-call costs."""
        await FakeAsterisk(self.port, script="pay", callerid=callerid, args=["A"],
                           uniqueid=f"{int(time.time())}.warm", on_sound=caller()).run(30)
        await asyncio.sleep(0.3)

    def cpu(self) -> float:
        assert self.ps is not None
        return cpu_s(self.ps)

    def sys_cpu(self) -> float:
        """Kernel time alone (socket calls, fsync of the database's commits)."""
        assert self.ps is not None
        return float(self.ps.cpu_times().system)

    def main_thread_cpu(self) -> float:
        """CPU of the event loop's thread alone (the rest: aiosqlite's worker threads)."""
        assert self.ps is not None
        return sum(t.user_time + t.system_time for t in self.ps.threads() if t.id == self.ps.pid)

    def rss(self) -> int:
        assert self.ps is not None
        return int(self.ps.memory_info().rss)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(40):
                await self.proc.wait()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        CHILDREN.discard(self.proc)


# -- a scripted caller for FakeAsterisk ---------------------------------------------------

def caller() -> Callable[[str, FakeAsterisk], None]:
    """Press 1 when the menu starts and 1 when the confirmation starts (interrupting them,
    as the real caller does in the asterisk target); a FakeAsterisk on_sound hook, so a
    prompt inside a Read list counts too."""
    def on_sound(sound: str, fake: FakeAsterisk) -> None:
        key = KEYS.get(sound)
        if key:
            fake.press(key)
    return on_sound


async def probe_script(template: Path, n: int, run_dir: Path) -> list[str]:
    """One StarPay call on a spare account: the AGI commands the baseline replays."""
    db = run_dir / "probe.db"
    shutil.copyfile(template, db)
    server = await Server("starpay", run_dir, db=db).start()
    try:
        fake = FakeAsterisk(server.port, script="pay", callerid=phone(n), args=["A"],
                            on_sound=caller())
        await fake.run(max_seconds=30)
    finally:
        await server.stop()
    if "starpay/approved" not in fake.streamed:
        raise RuntimeError(f"the probe call was not approved: {fake.streamed}")
    return [c.raw for c in fake.transcript]


# -- target: fake Asterisk ----------------------------------------------------------------

@dataclass
class FakeRun:
    kind: str
    calls: int
    held: int = 0
    completed: int = 0
    errors: int = 0
    approved: int | None = None
    wall_s: float = 0.0
    cpu_s: float = 0.0
    loop_cpu_s: float = 0.0
    sys_cpu_s: float = 0.0
    rss_idle: int = 0
    rss_held: int = 0
    rtts: list[float] = field(default_factory=list)
    load: str = ""
    note: str = ""

    @property
    def calls_per_s(self) -> float:
        return self.completed / self.wall_s if self.wall_s else float("nan")

    @property
    def cpu_ms_per_call(self) -> float:
        return self.cpu_s / max(1, self.completed) * 1000

    @property
    def rss_kib_per_call(self) -> float:
        return (self.rss_held - self.rss_idle) / max(1, self.held) / 1024


async def fake_round(kind: str, n: int, template: Path, script: Path, run_dir: Path,
                     think_ms: float, profile: Path | None) -> FakeRun:
    res = FakeRun(kind, n)
    db = run_dir / f"fake-{kind}.db"
    shutil.copyfile(template, db)
    server = await Server(kind, run_dir, db=db, script=script, profile=profile).start()
    stamp = int(time.time())
    try:
        await server.warm_up(phone(n))
        res.rss_idle, cpu0, loop0 = server.rss(), server.cpu(), server.main_thread_cpu()
        sys0 = server.sys_cpu()
        all_in = asyncio.Event()
        gate = asyncio.Semaphore(256)  # the listen backlog is not what we measure
        rng = random.Random(1)
        held = 0

        async def call(i: int) -> None:
            nonlocal held
            fake = FakeAsterisk(server.port, script="pay", callerid=phone(i), args=["A"],
                                uniqueid=f"{stamp}.{i}", on_sound=caller())
            try:
                async with gate:
                    await fake.connect()
                    cmd = await fake.read_command()
                if cmd is None:
                    raise ConnectionError("closed before the first command")
                held += 1
                if held == n:
                    all_in.set()
                await all_in.wait()
                await fake.answer_all(cmd, rtts=res.rtts, pause=(
                    (lambda: rng.uniform(0, 2 * think_ms) / 1000) if think_ms else None))
                ok = "starpay/approved" in fake.streamed and fake.verbs()[-1] == "HANGUP"
                res.completed += ok
                res.errors += not ok
            except (OSError, asyncio.IncompleteReadError) as exc:
                res.errors += 1
                res.note = res.note or f"client error: {exc!r}"
                if held + res.errors >= n:
                    all_in.set()
            finally:
                await fake.close()

        started = time.perf_counter()
        tasks = [asyncio.create_task(call(i)) for i in range(n)]
        waiter = asyncio.create_task(all_in.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED, timeout=300)
        res.held = held
        await asyncio.sleep(0.2)
        res.rss_held = server.rss()
        all_in.set()
        await asyncio.gather(*tasks)
        res.wall_s = time.perf_counter() - started
        res.cpu_s = server.cpu() - cpu0
        res.loop_cpu_s = server.main_thread_cpu() - loop0
        res.sys_cpu_s = server.sys_cpu() - sys0
        res.load = load_average()
    finally:
        await server.stop()
    if kind == "starpay":
        counts = db_counts(db)
        res.approved = counts.get("payments:approved", 0) - 1  # minus the warm-up
        other = {k: v for k, v in counts.items()
                 if k not in ("payments:approved", "calls:paid")}
        if other:
            res.note = (res.note + " " if res.note else "") + f"db: {other}"
    return res


def print_fake(runs: list[FakeRun], n: int, think_ms: float, commands: int) -> None:
    ours = [r for r in runs if r.kind == "starpay"]
    base = [r for r in runs if r.kind == "baseline"]

    def med(rs: list[FakeRun], f: Callable[[FakeRun], float]) -> float:
        vals = [f(r) for r in rs]
        return statistics.median(vals) if vals else float("nan")

    rows: list[tuple[str, Callable[[FakeRun], float], str]] = [
        ("calls held at once", lambda r: r.held, "{:.0f}"),
        ("calls completed (approved path)", lambda r: r.completed, "{:.0f}"),
        ("errors", lambda r: r.errors, "{:.0f}"),
        ("payments approved", lambda r: r.approved if r.approved is not None
         else float("nan"), "{:.0f}"),
        ("wall time (s)", lambda r: r.wall_s, "{:.1f}"),
        ("calls/s", lambda r: r.calls_per_s, "{:.1f}"),
        ("round trip p50 (ms)", lambda r: pct(r.rtts, 0.5) * 1000, "{:.2f}"),
        ("round trip p99 (ms)", lambda r: pct(r.rtts, 0.99) * 1000, "{:.2f}"),
        ("server CPU per call (ms)", lambda r: r.cpu_ms_per_call, "{:.2f}"),
        ("  of which the event loop thread",
         lambda r: r.loop_cpu_s / max(1, r.completed) * 1000, "{:.2f}"),
        ("  of which in the kernel",
         lambda r: r.sys_cpu_s / max(1, r.completed) * 1000, "{:.2f}"),
        ("server CPU per command (us)",
         lambda r: r.cpu_s / max(1, r.completed * commands) * 1e6, "{:.0f}"),
        ("server RSS idle (MiB)", lambda r: r.rss_idle / 2**20, "{:.1f}"),
        ("server RSS per held call (KiB)", lambda r: r.rss_kib_per_call, "{:.1f}"),
    ]
    print()
    print(f"(a) fake Asterisk: {n} concurrent full *PAY calls x {commands} AGI commands, "
          f"reply pause uniform 0..{2 * think_ms:.0f} ms, median of {len(ours)} round(s)")
    layer = [r for r in runs if r.kind == "agi-layer"]
    head = f"{'':34}{'starpay':>12}{'baseline':>12}{'ratio':>8}"
    if layer:
        head += f"{'agi-layer':>12}{'ratio':>8}"
    print(head)
    print("-" * len(head))

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b and a == a and b == b else "-"

    for name, f, fmt in rows:
        a, b = med(ours, f), med(base, f)
        line = f"{name:34}{fmt.format(a):>12}{fmt.format(b):>12}{ratio(a, b):>8}"
        if layer:
            c = med(layer, f)
            line += f"{fmt.format(c):>12}{ratio(c, b):>8}"
        print(line)
    print("-" * len(head))
    for r in runs:
        print(f"  round {r.kind:9} {r.calls_per_s:7.1f} calls/s  CPU/call "
              f"{r.cpu_ms_per_call:6.2f} ms  load avg after: {r.load}"
              + (f"  note: {r.note}" if r.note else ""))


async def run_fake(args: argparse.Namespace, template: Path, script: Path, run_dir: Path,
                   commands: int) -> list[FakeRun]:
    runs: list[FakeRun] = []
    for r in range(args.rounds):
        kinds = ["starpay", "agi-layer", "baseline"] if args.agi_layer else [
            "starpay", "baseline"]
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind in order:
            prof = run_dir / "starpay.prof" if args.profile and kind == "starpay" else None
            print(f"fake round {r + 1}/{args.rounds}: {kind}, {args.calls} calls "
                  f"(load avg {load_average()})", flush=True)
            runs.append(await fake_round(kind, args.calls, template, script, run_dir,
                                         args.think_ms, prof))
            if prof:
                print_profile(prof)
    print_fake(runs, args.calls, args.think_ms, commands)
    return runs


def print_profile(path: Path, top: int = 25) -> None:
    # cProfile sees only the loop thread, and a coroutine's cumulative time counts its
    # waits: own time is the column to read; the SQL itself runs in aiosqlite's threads.
    print(f"\nserver profile (cProfile, event-loop thread, whole run), top {top} by own time:")
    stats = pstats.Stats(str(path))
    stats.sort_stats("tottime").print_stats(top)
    print(f"StarPay's own code (ivr/), top {top} by own time:")
    stats.sort_stats("tottime").print_stats(r"/ivr/", top)


# -- target: a real Asterisk --------------------------------------------------------------

class Line:
    """One AMI connection (the QA user) and the calls it drives."""

    def __init__(self, ami: Any, prefix: str) -> None:
        self.ami, self.prefix = ami, prefix
        self.calls: dict[str, AsteriskCall] = {}
        for name in ("Newchannel", "AGIExecStart", "AGIExecEnd", "Hangup"):
            ami.on(name, self.route)

    def route(self, event: dict[str, Any]) -> Any:
        call = self.calls.get(event.get("Uniqueid", ""))
        return call.on_event(event) if call else None

    async def filter(self) -> bool:
        # Asterisk sends every session every event; each line only wants its own calls.
        try:
            for rx in (f"Uniqueid: {self.prefix}", "Event: OriginateResponse"):
                await self.ami.action({"Action": "Filter", "Operation": "Add",
                                       "Filter": rx})
        except Exception as exc:  # an old Asterisk: unfiltered is slower, still right
            print(f"note: AMI Filter refused ({exc}); events unfiltered", file=sys.stderr)
            return False
        return True


@dataclass
class LevelRun:
    kind: str
    calls: int
    ok: int = 0
    failed: int = 0
    durations: list[float] = field(default_factory=list)
    peak_live: int = 0
    wall_s: float = 0.0
    ast_cpu: float = 0.0
    srv_cpu: float = 0.0
    srv_loop_cpu: float = 0.0  # the server's event-loop thread alone
    commands: list[int] = field(default_factory=list)  # AGI commands per completed call
    srv_sys_cpu: float = 0.0  # the server's kernel time
    drv_cpu: float = 0.0
    # The key-press path: how late the prompt's AGIExecStart event reached us, and how long
    # Asterisk took to answer the PlayDTMF (it holds the AMI session while it plays).
    event_lag: list[float] = field(default_factory=list)
    press_s: list[float] = field(default_factory=list)
    approved: int | None = None
    load: str = ""
    note: str = ""

    @property
    def mean(self) -> float:
        return statistics.fmean(self.durations) if self.durations else float("nan")


async def asterisk_level(kind: str, n: int, lines: list[Line], ast_ps: psutil.Process,
                         agi_port: int, ami_secret: tuple[int, str], template: Path,
                         script: Path, run_dir: Path, launch_rate: float,
                         timeout: float) -> LevelRun:
    res = LevelRun(kind, n)
    db = run_dir / f"ast-{kind}-{n}.db"
    shutil.copyfile(template, db)
    server = await Server(kind, run_dir, port=agi_port, db=db, script=script,
                          ami=ami_secret).start()
    me = psutil.Process()
    live = 0
    try:
        await server.warm_up(phone(n))
        a0, s0, d0 = cpu_s(ast_ps), server.cpu(), cpu_s(me)
        l0, k0 = server.main_thread_cpu(), server.sys_cpu()

        async def one(i: int) -> None:
            nonlocal live
            line = lines[i % len(lines)]
            call = AsteriskCall(line.ami, caller_id=phone(i), attest="A",
                                uid_prefix=line.prefix, subscribe=False)
            line.calls[call.caller_uid] = line.calls[call.service_uid] = call
            await asyncio.sleep(i / launch_rate)
            t0 = time.monotonic()
            counted = False
            try:
                async with asyncio.timeout(timeout):
                    await call.start(timeout_ms=60000)
                    live, counted = live + 1, True
                    res.peak_live = max(res.peak_live, live)
                    for prompt, key in KEYS.items():
                        hit = await call.wait_for(rf"{PLAYS}{prompt}\b",
                                                  timeout=timeout)
                        if hit.lag is not None:
                            res.event_lag.append(hit.lag)
                        try:
                            pressed = time.monotonic()
                            await call.press(key, gap=0, as_received=True)
                            res.press_s.append(time.monotonic() - pressed)
                        except AMIActionError:
                            # The baseline replays its script without waiting for keys, so
                            # on a loaded box the call may be over before the key is sent.
                            if kind != "baseline":
                                raise
                    await call.wait_for(rf"{PLAYS}starpay/approved\b", timeout=timeout)
                    await call.wait_end(timeout=timeout)
                res.durations.append(time.monotonic() - t0)
                res.commands.append(len(call.heard))
                res.ok += 1
            except Exception as exc:  # e.g. AMI "Channel not found": one call, not the run
                res.failed += 1
                res.note = res.note or f"{type(exc).__name__}: {str(exc)[:160]}"
            finally:
                live -= counted
                with contextlib.suppress(Exception):
                    await call.close()
                line.calls.pop(call.caller_uid, None)
                line.calls.pop(call.service_uid, None)

        started = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        res.wall_s = time.monotonic() - started
        res.ast_cpu, res.srv_cpu = cpu_s(ast_ps) - a0, server.cpu() - s0
        res.srv_loop_cpu = server.main_thread_cpu() - l0
        res.srv_sys_cpu = server.sys_cpu() - k0
        res.drv_cpu = cpu_s(me) - d0
        res.load = load_average()
    finally:
        await server.stop()
    if kind == "starpay":
        res.approved = db_counts(db).get("payments:approved", 0) - 1  # minus the warm-up
    return res


def shorten_prompts(sounds: Path, ms: int) -> int:
    """Cut every StarPay prompt in this private instance to its first ``ms``."""
    done = 0
    for wav in sounds.glob("*/starpay/*.wav"):
        with wave.open(str(wav), "rb") as w:
            params, frames = w.getparams(), w.readframes(w.getframerate() * ms // 1000)
        with wave.open(str(wav), "wb") as w:
            w.setparams(params)
            w.writeframes(frames)
        done += 1
    return done


async def run_asterisk(args: argparse.Namespace, template: Path, script: Path,
                       run_dir: Path, instance: Any) -> list[LevelRun]:
    ramp = sorted(int(x) for x in args.ramp.split(","))
    await asyncio.to_thread(instance.start)
    if args.short_prompts:
        cut = shorten_prompts(instance.sounds_dir, args.prompt_ms)
        print(f"short prompts: {cut} StarPay prompt files cut to {args.prompt_ms} ms")
    ast_ps = psutil.Process(instance.pid())
    lines: list[Line] = []
    for k in range(args.ami_lines):
        ami = await qa_ami(instance, events="call,agi", action_timeout=60,
                           keepalive_interval=None)
        line = Line(ami, f"bench{k}x")
        await line.filter()
        lines.append(line)
    runs: list[LevelRun] = []
    try:
        for n in ramp:
            for r in range(args.rounds):
                order = ["starpay", "baseline"] if r % 2 == 0 else ["baseline", "starpay"]
                for kind in order:
                    print(f"asterisk: {n} calls, {kind}, round {r + 1}/{args.rounds} "
                          f"(load avg {load_average()})", flush=True)
                    run = await asterisk_level(
                        kind, n, lines, ast_ps, instance.agi_port,
                        (instance.ami_port, instance.ami_secret), template, script, run_dir,
                        args.launch_rate, args.call_timeout)
                    runs.append(run)
                    print(f"  {run.ok}/{n} ok, mean call {run.mean:.1f} s, peak live "
                          f"{run.peak_live}, asterisk {run.ast_cpu / n * 1000:.1f} ms/call, "
                          f"{kind} {run.srv_cpu / n * 1000:.1f} ms/call (event loop "
                          f"{run.srv_loop_cpu / n * 1000:.1f}, kernel "
                          f"{run.srv_sys_cpu / n * 1000:.1f}), "
                          f"{statistics.fmean(run.commands or [0]):.1f} AGI commands/call"
                          + (f"; {run.note}" if run.note else ""), flush=True)
                    await asyncio.sleep(2)  # let Asterisk tear the channels down
    finally:
        for line in lines:
            await line.ami.close()
    print_asterisk(runs, ramp, args)
    return runs


def print_asterisk(runs: list[LevelRun], ramp: list[int], args: argparse.Namespace) -> None:
    def agg(kind: str, n: int) -> dict[str, float]:
        rs = [r for r in runs if r.kind == kind and r.calls == n]
        if not rs:
            return {}
        md = statistics.median
        durs = [d for r in rs for d in r.durations]
        return {"ok": sum(r.ok for r in rs), "calls": sum(r.calls for r in rs),
                "mean": statistics.fmean(durs) if durs else float("nan"),
                "p95": pct(durs, 0.95), "peak": md([r.peak_live for r in rs]),
                "ast": md([r.ast_cpu / r.calls * 1000 for r in rs]),
                "srv": md([r.srv_cpu / r.calls * 1000 for r in rs]),
                "ast_u": md([r.ast_cpu / r.wall_s * 100 for r in rs]),
                "srv_u": md([r.srv_cpu / r.wall_s * 100 for r in rs]),
                "drv_u": md([r.drv_cpu / r.wall_s * 100 for r in rs]),
                "approved": sum(r.approved or 0 for r in rs) if kind == "starpay"
                else float("nan")}

    prompts = f"prompts cut to {args.prompt_ms} ms" if args.short_prompts else "full prompts"
    print()
    print(f"(b) real Asterisk, Local channels, AMI Originate + PlayDTMF on {args.ami_lines} "
          f"AMI connections, {prompts}, launch {args.launch_rate:.0f} calls/s, "
          f"{args.rounds} round(s) per level")
    head = (f"{'server':9}{'calls':>6}{'ok':>6}{'paid':>6}{'peak':>6}{'mean s':>8}"
            f"{'p95 s':>7}{'stretch':>8}{'ast ms':>8}{'srv ms':>8}{'ast %':>7}{'srv %':>7}"
            f"{'drv %':>7}")
    print(head)
    print("-" * len(head))
    bends: dict[str, int | None] = {}
    for kind in ("starpay", "baseline"):
        first = agg(kind, ramp[0])
        bends[kind] = None
        for n in ramp:
            a = agg(kind, n)
            if not a:
                continue
            stretch = a["mean"] / first["mean"] if first else float("nan")
            if bends[kind] is None and (stretch >= 1.25 or a["ok"] < a["calls"]):
                bends[kind] = n
            paid = f"{a['approved']:.0f}" if a["approved"] == a["approved"] else "-"
            print(f"{kind:9}{n:>6}{a['ok']:>6.0f}{paid:>6}{a['peak']:>6.0f}{a['mean']:>8.1f}"
                  f"{a['p95']:>7.1f}{stretch:>7.2f}x{a['ast']:>8.1f}{a['srv']:>8.1f}"
                  f"{a['ast_u']:>7.0f}{a['srv_u']:>7.0f}{a['drv_u']:>7.0f}")
    print("-" * len(head))
    print("ast/srv ms = CPU per call of Asterisk / of the FastAGI server process; % = CPU "
          "time / wall time of the level (100 = one core); drv = this load process")
    for n in ramp:
        a, b = agg("starpay", n), agg("baseline", n)
        if a and b and b["srv"]:
            print(f"  {n:>5} calls: StarPay/baseline server CPU per call "
                  f"{a['srv'] / b['srv']:.2f}x, Asterisk CPU per call {a['ast']:.1f} vs "
                  f"{b['ast']:.1f} ms")
    for n in ramp:
        rs = [r for r in runs if r.kind == "starpay" and r.calls == n]
        lag = [x for r in rs for x in r.event_lag]
        press = [x for r in rs for x in r.press_s]
        if lag or press:
            print(f"  {n:>5} calls, StarPay's keys: prompt event read "
                  f"{pct(lag, 0.5):.2f} / {pct(lag, 0.95):.2f} / {max(lag, default=0):.2f} s "
                  f"after Asterisk raised it, PlayDTMF answered in {pct(press, 0.5):.2f} / "
                  f"{pct(press, 0.95):.2f} / {max(press, default=0):.2f} s (p50 / p95 / max;"
                  " the menu waits 5 s for a key)")
    for kind, n in bends.items():
        print(f"  {kind}: " + (f"call time stretched >= 1.25x (or calls failed) at {n}"
                               if n else "no bend (< 1.25x, no failures) up to "
                               f"{ramp[-1]} calls"))
    for r in runs:
        if r.note:
            print(f"  note ({r.kind}, {r.calls}): {r.note}")
    print("  load average after each level: "
          + ", ".join(f"{r.kind[:4]}@{r.calls}: {r.load}" for r in runs))


# -- main ---------------------------------------------------------------------------------

def conclusion(fake: list[FakeRun], ast: list[LevelRun]) -> None:
    print("\nconclusion:")
    if fake:
        ours = statistics.median([r.cpu_ms_per_call for r in fake if r.kind == "starpay"])
        base = statistics.median([r.cpu_ms_per_call for r in fake if r.kind == "baseline"])
        sp = [r for r in fake if r.kind == "starpay"]
        cps = statistics.median([r.calls_per_s for r in sp])
        busy = statistics.median([r.cpu_s / r.wall_s * 100 for r in sp])
        failed = sum(r.errors for r in sp)
        verdict = "within" if ours <= 2 * base else "OVER"
        print(f"  fake: StarPay {ours:.1f} ms CPU per full call vs {base:.1f} ms for the bare "
              f"server ({ours / base:.1f}x, {verdict} the 2x budget); {cps:.0f} calls/s "
              f"with {sp[0].calls} in flight, using {busy:.0f}% of a core (below 100%: "
              f"waiting, not computing); {failed} call(s) failed")
    if ast:
        top = max(r.calls for r in ast)
        for kind in ("starpay", "baseline"):
            rs = [r for r in ast if r.kind == kind and r.calls == top]
            if rs:
                r = rs[0]
                print(f"  asterisk at {top} calls with {kind}: Asterisk "
                      f"{r.ast_cpu / r.wall_s * 100:.0f}% of a core, {kind} "
                      f"{r.srv_cpu / r.wall_s * 100:.0f}%, load generator "
                      f"{r.drv_cpu / r.wall_s * 100:.0f}%")


async def main_async(args: argparse.Namespace) -> int:
    from ivr.asterisk.local import LocalAsterisk

    ramp_max = max(int(x) for x in args.ramp.split(","))
    n_accounts = max(args.calls, ramp_max)
    raise_fd_limit(n_accounts * 4 + 1000)
    run_dir = Path(tempfile.mkdtemp(prefix="starpay-calls-"))
    instance = None
    print(f"StarPay call benchmark: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
          f"load average at start {load_average()}; the baseline on asyncio {BARE}")
    try:
        template = run_dir / "template.db"
        t0 = time.perf_counter()
        await build_template(template, n_accounts + 1)  # +1: the spare for probe/warm-up
        print(f"{n_accounts + 1} accounts imported in {time.perf_counter() - t0:.1f} s")
        lines = await probe_script(template, n_accounts, run_dir)
        script = run_dir / "script.agi"
        script.write_text("".join(f"{x}\n" for x in lines))
        print(f"probe call: {len(lines)} AGI commands, "
              f"{sum(x.startswith('STREAM FILE') for x in lines)} STREAM FILE, "
              f"{sum(x.startswith('EXEC Read') for x in lines)} EXEC Read; the baseline "
              "replays them")
        fake_runs: list[FakeRun] = []
        ast_runs: list[LevelRun] = []
        if args.target in ("fake", "both"):
            fake_runs = await run_fake(args, template, script, run_dir, len(lines))
        if args.target in ("asterisk", "both"):
            instance = LocalAsterisk(f"bench-{os.getpid()}")
            ast_runs = await run_asterisk(args, template, script, run_dir, instance)
        conclusion(fake_runs, ast_runs)
        ok = all(r.approved == r.calls for r in fake_runs if r.kind == "starpay")
        return 0 if ok else 1
    finally:
        for proc in list(CHILDREN):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if instance is not None:
            await asyncio.to_thread(instance.remove)
        if args.keep:
            print(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=["fake", "asterisk", "both"], default="both")
    ap.add_argument("--calls", type=int, default=2000, help="concurrent calls, fake target")
    ap.add_argument("--ramp", default="50,100,200,400",
                    help="concurrent calls per level, asterisk target")
    ap.add_argument("--rounds", type=int, default=1,
                    help="rounds per measurement; servers alternate order each round")
    ap.add_argument("--think-ms", type=float, default=0.0,
                    help="fake: mean pause before each reply (0: as fast as possible)")
    ap.add_argument("--short-prompts", action="store_true",
                    help="asterisk: cut StarPay prompts to --prompt-ms in the instance")
    ap.add_argument("--prompt-ms", type=int, default=300)
    ap.add_argument("--launch-rate", type=float, default=100.0,
                    help="asterisk: calls originated per second")
    ap.add_argument("--ami-lines", type=int, default=4, help="asterisk: AMI connections")
    ap.add_argument("--call-timeout", type=float, default=180.0)
    ap.add_argument("--profile", action="store_true",
                    help="fake: run StarPay under cProfile and print its hot spots")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs)")
    ap.add_argument("--bare", choices=["streams", "protocol"], default="streams",
                    help="the baseline on asyncio streams or on an asyncio Protocol")
    ap.add_argument("--agi-layer", action="store_true",
                    help="fake: also run StarPay's FastAGI layer alone (see above)")
    ap.add_argument("--serve", choices=["starpay", "baseline", "agi-layer"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--script", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global BARE
    BARE = args.bare
    if args.serve == "starpay":
        serve_starpay(args.profile_out)
        return 0
    if args.serve == "agi-layer":
        raise_fd_limit()
        asyncio.run(serve_agi_layer(Path(args.script).read_text().splitlines(), args.port))
        return 0
    if args.serve == "baseline":
        raise_fd_limit()
        script = [(x + "\n").encode() for x in Path(args.script).read_text().splitlines()]
        bare = serve_baseline_protocol if args.bare == "protocol" else serve_baseline
        asyncio.run(bare(script, args.port))
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
