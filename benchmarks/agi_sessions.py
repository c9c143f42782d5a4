"""How many concurrent calls the FastAGI layer holds, and how much latency it adds.

    python benchmarks/agi_sessions.py [--sessions 2000] [--commands 5] [--rounds 5]
                                      [--think-ms 1000] [--gc serve|default|off]

Each server under test runs in its own process (so it does not share a loop or a core with
the load); this process plays Asterisk with N FakeAsterisk clients. Every call first gets
ANSWER; the clients hold that reply until all N calls are connected (so the server really
holds N sessions at once; its RSS is sampled then), and then each call runs K commands
(stream file, get data, say digits, set variable, ...), each reply sent after a random
"prompt playing" pause (uniform 0..2x think-ms), as on a real PBX where prompts last
seconds.

The box may be shared with other work, so one run is several rounds, alternating which
server goes first, and the table shows the median of the rounds (each round's p99 is listed
too, to show the spread).

What is measured, honestly:
- round trip: from the moment a client has written its reply to the moment the next command
  arrives. That is the server's whole turn (read, parse, run the handler, build and send the
  next command) plus loopback TCP and this client process's own scheduling delay, so it is
  an upper bound on the server's overhead, not the overhead alone.
- server CPU per command: the server process's user+system CPU time during the run divided
  by the commands it sent (includes accepting connections and reading headers).
- RSS per session: (server RSS with all N calls held - RSS before the first call) / N.

Our server's process applies the GC tuning `ivr serve` applies (ivr.agi.server.tune_gc:
gc.freeze() after start-up and a raised young-generation threshold), since the numbers
should say how the product runs; ``--gc default`` measures it with CPython's defaults and
``--gc off`` with the collector disabled, for comparison. The baseline keeps CPython's
defaults unless ``--baseline-gc serve``. The load process (not under test) gets the same
tuning, so its own collections add less noise to both.

Baseline: panoramisk 1.4's FastAGI server (panoramisk.fast_agi), if it works on this
Python; otherwise a one-thread-per-call blocking socket server (``--baseline threads``).
Servers log at WARNING here: the numbers are for the protocol layer, not log output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import random
import signal
import socketserver
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
from bench_common import load_average, raise_fd_limit

from ivr.agi.server import GC_YOUNG_THRESHOLD, tune_gc
from ivr.qa.fake_asterisk import FakeAsterisk

SCRIPT = "bench"
HERE = os.path.abspath(__file__)
TARGET_P99_MS = 5.0
LOAD_BEFORE = "?"  # other work on the box skews latency: print it with the results




# -- the call every server runs: ANSWER, then K commands ----------------------------------

def command_plan(k: int) -> list[tuple[str, ...]]:
    cycle = [("STREAM FILE", "welcome", "123"), ("GET DATA", "enter-account", "5000", "4"),
             ("SAY DIGITS", "1234", ""), ("SET VARIABLE", "STARPAY_STEP", "paid"),
             ("GET VARIABLE", "STARPAY_STEP"), ("WAIT FOR DIGIT", "100")]
    return [cycle[i % len(cycle)] for i in range(k)]


def client_keys(k: int) -> str:
    """Keys so that STREAM FILE is interrupted and GET DATA gets 4 digits."""
    keys = ""
    for cmd in command_plan(k):
        if cmd[0] == "STREAM FILE":
            keys += "1"
        elif cmd[0] == "GET DATA":
            keys += "4321"
    return keys


GC_YOUNG = GC_YOUNG_THRESHOLD  # --gc-young, for trying other thresholds


def apply_gc(mode: str) -> None:
    """Called in a server process once it listens, where `ivr serve` calls tune_gc()."""
    if mode == "serve":
        tune_gc(GC_YOUNG)
    elif mode == "off":
        gc.disable()
    _gc_pauses.clear()  # count only collections under load, not tune_gc()'s own


async def serve_starpay(k: int, gc_mode: str) -> None:
    from ivr.agi import AGIServer, AGISession

    plan = command_plan(k)

    async def handler(s: AGISession) -> None:
        await s.answer()
        for cmd in plan:
            verb = cmd[0]
            if verb == "STREAM FILE":
                await s.stream_file(cmd[1], cmd[2])
            elif verb == "GET DATA":
                await s.get_data(cmd[1], int(cmd[2]), int(cmd[3]))
            elif verb == "SAY DIGITS":
                await s.say_digits(cmd[1])
            elif verb == "SET VARIABLE":
                await s.set_variable(cmd[1], cmd[2])
            elif verb == "GET VARIABLE":
                await s.get_variable(cmd[1])
            else:
                await s.wait_for_digit(int(cmd[1]))

    server = AGIServer({SCRIPT: handler}, port=0, max_sessions=100_000, backlog=4096,
                       command_timeout=60)
    await server.start()
    apply_gc(gc_mode)
    await announce_and_wait(server.port)
    await server.close()


async def serve_panoramisk(k: int, gc_mode: str) -> None:
    from panoramisk.fast_agi import Application

    plan = [" ".join(c if c else '""' for c in cmd) for cmd in command_plan(k)]

    async def handler(request) -> None:  # type: ignore[no-untyped-def]
        await request.send_command("ANSWER")
        for line in plan:
            await request.send_command(line)

    app = Application(loop=asyncio.get_running_loop())
    app.add_route(SCRIPT, handler)
    server = await asyncio.start_server(app.handler, "127.0.0.1", 0, backlog=4096)
    apply_gc(gc_mode)
    await announce_and_wait(server.sockets[0].getsockname()[1])
    server.close()


def serve_threads(k: int, gc_mode: str) -> None:
    plan = [(" ".join(c if c else '""' for c in cmd) + "\n").encode()
            for cmd in command_plan(k)]

    class Call(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while self.rfile.readline().strip():  # the agi_* header block
                pass
            for line in [b"ANSWER\n", *plan]:
                self.wfile.write(line)
                self.wfile.flush()
                reply = self.rfile.readline()
                if not reply or reply.startswith(b"HANGUP"):
                    return

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 4096

    server = Server(("127.0.0.1", 0), Call)
    apply_gc(gc_mode)
    print(f"PORT {server.server_address[1]}", flush=True)
    def stop(*_: object) -> None:
        report_gc()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, lambda *_: _gc_pauses.clear())
    server.serve_forever()


async def announce_and_wait(port: int) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, _gc_pauses.clear)
    print(f"PORT {port}", flush=True)
    await stop.wait()
    report_gc()


_gc_pauses: list[tuple[int, float]] = []  # (generation, seconds) of each collection


def watch_gc() -> None:
    """Record every collection: at thousands of live calls a full (generation 2) one stops
    the loop long enough to show in the p99, and young ones add up."""
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            _gc_pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(callback)


def report_gc() -> None:
    full = [t for g, t in _gc_pauses if g == 2]
    every = [t for _, t in _gc_pauses]
    print(f"GC {len(full)} {max(full, default=0.0) * 1000:.2f} {len(every)} "
          f"{sum(every) * 1000:.2f} {max(every, default=0.0) * 1000:.2f}", flush=True)


def run_server(kind: str, k: int, gc_mode: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    watch_gc()
    raise_fd_limit()
    if kind == "threads":
        serve_threads(k, gc_mode)
    elif kind == "panoramisk":
        asyncio.run(serve_panoramisk(k, gc_mode))
    else:
        asyncio.run(serve_starpay(k, gc_mode))


# -- the load: N fake Asterisk calls ---------------------------------------------------------

@dataclass
class Result:
    kind: str
    sessions: int = 0
    held: int = 0
    completed: int = 0
    errors: int = 0
    rtts: list[float] = field(default_factory=list)
    rss_idle: int = 0
    rss_held: int = 0
    cpu_s: float = 0.0
    commands: int = 0
    wall_s: float = 0.0
    gc_full: int = 0
    gc_worst_ms: float = 0.0
    gc_runs: int = 0
    gc_total_ms: float = 0.0
    gc_longest_ms: float = 0.0
    load_after: float = 0.0  # 1-minute load average when the run ended
    note: str = ""

    def pct(self, q: float) -> float:
        if not self.rtts:
            return float("nan")
        data = sorted(self.rtts)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    @property
    def rss_per_session_kib(self) -> float:
        return (self.rss_held - self.rss_idle) / max(1, self.held) / 1024

    @property
    def cpu_per_command_us(self) -> float:
        return self.cpu_s / max(1, self.commands) * 1e6


async def load(kind: str, n: int, k: int, think_ms: float, gc_mode: str) -> Result:
    res = Result(kind, sessions=n)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, HERE, "--serve", kind, "--commands", str(k), "--gc", gc_mode,
        "--gc-young", str(GC_YOUNG),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await proc.stdout.readline()).decode()
        if not line.startswith("PORT "):
            res.note = f"server did not start ({line.strip() or 'no output'})"
            return res
        port = int(line.split()[1])
        ps = psutil.Process(proc.pid)
        await asyncio.sleep(0.3)
        res.rss_idle = ps.memory_info().rss
        cpu0 = ps.cpu_times()
        all_in = asyncio.Event()  # every call connected (or failed)
        go = asyncio.Event()  # memory sampled: start the commands
        connect_gate = asyncio.Semaphore(256)  # the listen backlog is not what we measure
        held = 0
        keys = client_keys(k)
        rng = random.Random(1)

        async def call() -> None:
            nonlocal held
            fake = FakeAsterisk(port, script=SCRIPT, keys=keys)
            try:
                async with connect_gate:
                    await fake.connect()
                    cmd = await fake.read_command()  # ANSWER
                if cmd is None:
                    raise ConnectionError("closed before the first command")
                held += 1
                if held == n:
                    all_in.set()
                await go.wait()
                await fake.answer_all(cmd, rtts=res.rtts, pause=(
                    (lambda: rng.uniform(0, 2 * think_ms) / 1000) if think_ms else None))
                if len(fake.transcript) == k + 1:
                    res.completed += 1
                else:
                    res.errors += 1
            except (OSError, asyncio.IncompleteReadError) as exc:
                res.errors += 1
                if not res.note:
                    res.note = f"client error: {exc!r}"
                if not all_in.is_set() and held + res.errors >= n:
                    all_in.set()
            finally:
                await fake.close()

        started = time.perf_counter()
        tasks = [asyncio.create_task(call()) for _ in range(n)]
        waiter = asyncio.create_task(all_in.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED,
                           timeout=120)
        res.held = held
        await asyncio.sleep(0.2)  # let the server settle before sampling memory
        res.rss_held = ps.memory_info().rss
        proc.send_signal(signal.SIGUSR1)  # the server counts GC from here on
        await asyncio.sleep(0.05)
        all_in.set()
        go.set()
        await asyncio.gather(*tasks)
        res.wall_s = time.perf_counter() - started
        cpu1 = ps.cpu_times()
        res.cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        res.commands = res.completed * (k + 1)
        return res
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                for raw in (await proc.stdout.read()).decode().splitlines() if proc.stdout else []:
                    if raw.startswith("GC "):
                        f = raw.split()[1:]
                        res.gc_full, res.gc_runs = int(f[0]), int(f[2])
                        res.gc_worst_ms, res.gc_total_ms, res.gc_longest_ms = (
                            float(f[1]), float(f[3]), float(f[4]))
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


def panoramisk_works() -> str | None:
    """None if panoramisk's FastAGI server can serve a call on this Python, else why not."""
    async def probe() -> None:
        from panoramisk.fast_agi import Application

        done = asyncio.Event()

        async def handler(request) -> None:  # type: ignore[no-untyped-def]
            await request.send_command("ANSWER")
            done.set()

        app = Application(loop=asyncio.get_running_loop())
        app.add_route(SCRIPT, handler)
        server = await asyncio.start_server(app.handler, "127.0.0.1", 0)
        fake = FakeAsterisk(server.sockets[0].getsockname()[1], script=SCRIPT)
        async with asyncio.timeout(5):
            await fake.run()
            await done.wait()
        server.close()

    try:
        asyncio.run(probe())
    except Exception as exc:  # any failure means "use the threaded baseline"
        return f"{type(exc).__name__}: {exc}"
    return None


Metric = tuple[str, Callable[[Result], float], str]

METRICS: list[Metric] = [
    ("sessions held concurrently", lambda r: r.held, "{:.0f}"),
    ("calls completed", lambda r: r.completed, "{:.0f}"),
    ("errors", lambda r: r.errors, "{:.0f}"),
    ("round trip p50 (ms)", lambda r: r.pct(0.50), "{:.2f}"),
    ("round trip p99 (ms)", lambda r: r.pct(0.99), "{:.2f}"),
    ("round trip max (ms)", lambda r: r.pct(1.0), "{:.2f}"),
    ("server CPU per command (us)", lambda r: r.cpu_per_command_us, "{:.0f}"),
    ("server RSS idle (MiB)", lambda r: r.rss_idle / 2**20, "{:.1f}"),
    ("server RSS per held session (KiB)", lambda r: r.rss_per_session_kib, "{:.1f}"),
    ("server GC runs (any generation)", lambda r: r.gc_runs, "{:.0f}"),
    ("server GC pauses, total (ms)", lambda r: r.gc_total_ms, "{:.1f}"),
    ("server longest GC pause (ms)", lambda r: r.gc_longest_ms, "{:.1f}"),
    ("server full GC runs", lambda r: r.gc_full, "{:.0f}"),
    ("wall time (s)", lambda r: r.wall_s, "{:.1f}"),
]


def median(results: list[Result], metric: Callable[[Result], float]) -> float:
    values = [v for v in (metric(r) for r in results) if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


def print_table(ours: list[Result], base: list[Result], n: int, k: int, think_ms: float,
                gc_modes: tuple[str, str]) -> None:
    kind = base[0].kind
    print()
    print(f"FastAGI: {n} concurrent calls x (ANSWER + {k} commands), prompt pause uniform "
          f"0..{2 * think_ms:.0f} ms, loopback TCP, server in its own process, "
          f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"median of {len(ours)} rounds, alternating which server goes first; round trip = "
          "client wrote a reply -> next command arrived (an upper bound on server overhead)")
    notes = [GC_NOTE[m].format(young=GC_YOUNG) for m in gc_modes]
    print(f"GC: starpay {notes[0]}; {kind} {notes[1]}; the server GC rows count collections "
          "while the commands run (not while the calls connect)")
    head = f"{'':36}{'starpay':>12}{kind:>16}{'ratio':>9}"
    print(head)
    print("-" * len(head))
    rows = [(name, median(ours, metric), median(base, metric), fmt)
            for name, metric, fmt in METRICS]
    # Other work on the box only ever adds delay, so the best round is worth a look too.
    rows.insert(5, ("round trip p99, best round (ms)", min(r.pct(0.99) for r in ours),
                    min(r.pct(0.99) for r in base), "{:.2f}"))
    for name, a, b, fmt in rows:
        ratio = f"{a / b:.2f}" if b and a == a and b == b else "-"
        print(f"{name:36}{fmt.format(a):>12}{fmt.format(b):>16}{ratio:>9}")
    print("-" * len(head))
    for r_list in (ours, base):
        p99s = ", ".join(f"{r.pct(0.99):.2f}" for r in r_list)
        print(f"p99 per round, {r_list[0].kind}: {p99s} ms")
    p99 = median(ours, lambda r: r.pct(0.99))
    verdict = "meets" if p99 < TARGET_P99_MS else "MISSES"
    print(f"starpay median p99 round trip {p99:.2f} ms {verdict} the {TARGET_P99_MS:.0f} ms "
          f"target (load average before: {LOAD_BEFORE}; after: {load_average()})")
    busy = [r for r in (*ours, *base) if r.load_after > (os.cpu_count() or 1)]
    if busy:
        print(f"warning: {len(busy)} of {len(ours) + len(base)} runs ended with a load average "
              f"above the {os.cpu_count()} CPUs: other work was competing for the cores, so "
              "their latencies say more about the box than about the servers")
    for r in (*ours, *base):
        if r.note:
            print(f"note ({r.kind}): {r.note}")


GC_NOTE = {
    "serve": "tuned as `ivr serve` tunes it (gc.freeze() after start-up, young-generation "
             "threshold {young})",
    "default": "CPython defaults",
    "off": "collector disabled (reference only: cycles would leak)",
}




def quiet_load_gc() -> None:
    """The load process is not under test: the tuning that keeps our server's collections
    few and short does the same for its own, so they add less noise to either server."""
    tune_gc()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--commands", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5,
                    help="rounds per server, alternating which goes first (median shown)")
    ap.add_argument("--think-ms", type=float, default=1000.0,
                    help="mean pause before each reply, like a prompt playing (0: none)")
    ap.add_argument("--baseline", choices=["auto", "panoramisk", "threads"], default="auto")
    ap.add_argument("--gc", choices=list(GC_NOTE), default="serve",
                    help="GC set-up of our server process (default: as `ivr serve`)")
    ap.add_argument("--baseline-gc", choices=list(GC_NOTE), default="default",
                    help="GC set-up of the baseline's process")
    ap.add_argument("--gc-young", type=int, default=GC_YOUNG_THRESHOLD,
                    help="young-generation threshold for --gc serve (default: tune_gc's)")
    ap.add_argument("--serve", choices=["starpay", "panoramisk", "threads"],
                    help=argparse.SUPPRESS)  # internal: run one server in this process
    args = ap.parse_args()
    global GC_YOUNG
    GC_YOUNG = args.gc_young
    if args.serve:
        run_server(args.serve, args.commands, args.gc)
        return 0
    raise_fd_limit(args.sessions * 2 + 1000)
    global LOAD_BEFORE
    LOAD_BEFORE = load_average()
    baseline = args.baseline
    if baseline in ("auto", "panoramisk"):
        why = panoramisk_works()
        if why is None:
            print("panoramisk 1.4 fast_agi works on this Python (coroutine handlers only; "
                  "its non-coroutine path needs asyncio.coroutine, gone in 3.11)")
            baseline = "panoramisk"
        else:
            print(f"panoramisk 1.4 fast_agi does not work here ({why}); "
                  "baseline: one thread per call")
            baseline = "threads"
    quiet_load_gc()
    ours: list[Result] = []
    base: list[Result] = []
    for i in range(args.rounds):
        order = [("starpay", args.gc, ours), (baseline, args.baseline_gc, base)]
        if i % 2:
            order.reverse()
        for kind, gc_mode, results in order:
            r = asyncio.run(load(kind, args.sessions, args.commands, args.think_ms, gc_mode))
            r.load_after = os.getloadavg()[0]
            results.append(r)
            print(f"round {i + 1}/{args.rounds} {kind:>10}: p50 {r.pct(0.5):6.2f} ms  "
                  f"p99 {r.pct(0.99):6.2f} ms  CPU/cmd {r.cpu_per_command_us:4.0f} us  "
                  f"GC {r.gc_runs} runs {r.gc_total_ms:.0f} ms (longest {r.gc_longest_ms:.1f})"
                  f"  held {r.held}  errors {r.errors}  (load {load_average()})", flush=True)
    print_table(ours, base, args.sessions, args.commands, args.think_ms,
                (args.gc, args.baseline_gc))
    ok = all(r.errors == 0 and r.held == args.sessions for r in ours)
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
