"""Durable jobs: throughput, CPU per job, exactly-once under SIGKILL and idle latency.

StarPay's jobs (ivr/jobs/) on SQLite and on PostgreSQL, beside procrastinate on the same
PostgreSQL in the same run. Every worker is a process of its own (this script with
``--worker``), so "4 workers" is 4 processes competing for the jobs table:

* throughput: ``--jobs`` jobs deferred up front, then claimed and finished by 1 and by 4
  workers; kinds: ``noop``; ``row``, an async handler inserting one row through
  ``db.run`` (procrastinate: through its connector); ``rowtx`` (StarPay only), a
  ``tx_handler`` inserting the row inside the transaction that completes the job. Each run
  is counted per job id in the benchmark's own table ``bench_runs`` (noop jobs: in the
  workers' memory): "twice" and "lost" must be 0. jobs/s is from "go" to the last job
  marked done; CPU is the worker processes' (on SQLite that includes the database work;
  on PostgreSQL the server's CPU is the "db" column);
* SIGKILL: 4 StarPay workers with a 2 s lease on half ``row``, half ``rowtx`` jobs; one
  worker is killed when half the jobs are done and the others take its jobs over after
  the lease. ``rowtx`` must run no job twice; a ``row`` job whose handler committed its
  row before the kill but whose completion was lost runs again ("rerun after kill");
* idle latency: one idle worker; another process defers 200 jobs one at a time 20-50 ms
  apart; latency = start of the handler - the job's run_at.

    .venv/bin/python benchmarks/jobs.py [--jobs 10000] [--concurrency 16] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import logging
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil  # noqa: E402
from bench_common import load_average  # noqa: E402
from sqlalchemy import Column, Integer, MetaData, String, Table, insert  # noqa: E402

from ivr.jobs import queue  # noqa: E402
from ivr.jobs.worker import JobContext, JobKind, Worker  # noqa: E402
from ivr.storage.db import Database  # noqa: E402
from ivr.storage.migrate import upgrade  # noqa: E402
from ivr.storage.pgtemp import TempPostgres  # noqa: E402
from ivr.storage.tx import Tx  # noqa: E402

# The benchmark's own table: one row per run of a row-writing job.
RUNS_DDL = ("CREATE TABLE bench_runs (job INTEGER NOT NULL, kind VARCHAR(8) NOT NULL, "
            "worker VARCHAR(64) NOT NULL)")
_RUNS = Table("bench_runs", MetaData(), Column("job", Integer), Column("kind", String(8)),
              Column("worker", String(64)))
_RECORD_RUN = insert(_RUNS)
PROCRASTINATE_INSERT = ("INSERT INTO bench_runs (job, kind, worker) "
                        "VALUES (%(job)s, 'row', %(worker)s)")
POLL = 0.05  # how often the parent looks whether all jobs are done (seconds)


# ---- the worker processes ------------------------------------------------------------------

@dataclass
class Tally:
    """What a worker saw, written to its --out file when it stops."""

    ran: list[int] = field(default_factory=list)  # noop job numbers run here
    latency: list[float] = field(default_factory=list)


async def _serve(start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
                 ) -> None:
    """"ready" on stdout, then start on "go" and stop on "stop" (or EOF) from stdin."""
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await start()
    await asyncio.to_thread(sys.stdin.readline)
    await stop()


async def starpay_worker(args: argparse.Namespace, tally: Tally) -> None:
    db = Database(args.url)
    name = args.name

    async def noop(ctx: JobContext) -> None:
        tally.ran.append(ctx.payload["i"])

    async def row(ctx: JobContext) -> None:
        params = {"job": ctx.payload["i"], "kind": "row", "worker": name}
        await db.run(lambda tx: tx.execute(_RECORD_RUN, params))

    def row_tx(tx: Tx, ctx: JobContext) -> None:
        tx.execute(_RECORD_RUN, {"job": ctx.payload["i"], "kind": "rowtx", "worker": name})

    async def latency(ctx: JobContext) -> None:
        tally.latency.append(time.time() - ctx.payload["t"])

    kinds = {"noop": JobKind(noop), "row": JobKind(row), "rowtx": JobKind(tx_handler=row_tx),
             "lat": JobKind(latency)}
    worker = Worker(db, kinds, concurrency=args.concurrency, lease=args.lease, name=name)

    async def start() -> None:
        worker.start()

    await _serve(start, worker.stop)
    await db.dispose()


def procrastinate_app(conninfo: str, tally: Tally, name: str, pool_size: int) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=conninfo, min_size=min(4, pool_size), max_size=pool_size))

    @app.task(name="noop")
    async def noop(i: int) -> None:
        tally.ran.append(i)

    @app.task(name="row")
    async def row(i: int) -> None:
        await app.connector.execute_query_async(PROCRASTINATE_INSERT, job=i, worker=name)

    @app.task(name="lat")
    async def lat(t: float) -> None:
        tally.latency.append(time.time() - t)

    return app


async def procrastinate_worker(args: argparse.Namespace, tally: Tally) -> None:
    # The pool as large as the jobs running at once, plus the LISTEN connection and one.
    app = procrastinate_app(args.url, tally, args.name, args.concurrency + 2)
    running: list[asyncio.Task[None]] = []

    async def start() -> None:
        running.append(asyncio.create_task(app.run_worker_async(
            concurrency=args.concurrency, wait=True, install_signal_handlers=False,
            name=args.name)))

    async def stop() -> None:
        for t in running:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t

    async with app.open_async():
        await _serve(start, stop)


def worker_main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    tally = Tally()
    run = starpay_worker if args.worker == "starpay" else procrastinate_worker
    asyncio.run(run(args, tally))
    Path(args.out).write_text(json.dumps({"ran": tally.ran, "latency": tally.latency}))
    return 0


# ---- the parent: databases -----------------------------------------------------------------

class Probe(Protocol):
    """The parent's own connection, for counting and resetting (not through ivr)."""

    async def scalar(self, sql: str) -> int: ...
    async def rows(self, sql: str) -> list[tuple[Any, ...]]: ...
    async def execute(self, sql: str) -> None: ...
    async def close(self) -> None: ...


class SqliteProbe:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None)

    async def scalar(self, sql: str) -> int:
        return int(self.conn.execute(sql).fetchone()[0])

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql).fetchall()

    async def execute(self, sql: str) -> None:
        self.conn.execute(sql)

    async def close(self) -> None:
        self.conn.close()


class PgProbe:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, pg: TempPostgres, database: str) -> PgProbe:
        import asyncpg

        return cls(await asyncpg.connect(host="127.0.0.1", port=pg.port, user=pg.user,
                                         database=database))

    async def scalar(self, sql: str) -> int:
        return int(await self.conn.fetchval(sql))

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in await self.conn.fetch(sql)]

    async def execute(self, sql: str) -> None:
        await self.conn.execute(sql)

    async def close(self) -> None:
        await self.conn.close()


@dataclass
class Target:
    """One system on one database: how to reset it, defer to it and see it finish."""

    system: str  # StarPay | procrastinate
    backend: str  # SQLite | PostgreSQL
    # Clean jobs and bench_runs tables for a run label: a probe on them and the URL the
    # workers get (SQLite: a new file per run).
    fresh: Callable[[str], Awaitable[tuple[Probe, str]]]
    done_sql: str
    pg_pid: int | None = None  # the postmaster, for the server's CPU


async def starpay_defer(url: str, kinds: list[str]) -> float:
    """Defer job i of kind kinds[i] in 1,000-job transactions; seconds it took."""
    db = Database(url)
    t0 = time.perf_counter()
    jobs = list(enumerate(kinds))

    def chunk(lo: int) -> Callable[[Tx], object]:
        return lambda tx: [queue.defer_in(tx, k, {"i": i}) for i, k in jobs[lo:lo + 1000]]

    for lo in range(0, len(jobs), 1000):
        await db.run(chunk(lo))
    seconds = time.perf_counter() - t0
    await db.dispose()
    return seconds


async def procrastinate_defer(conninfo: str, kinds: list[str]) -> float:
    app = procrastinate_app(conninfo, Tally(), "parent", 4)
    async with app.open_async():
        t0 = time.perf_counter()
        for kind in sorted(set(kinds)):
            todo = [{"i": i} for i, k in enumerate(kinds) if k == kind]
            for lo in range(0, len(todo), 1000):
                await app.tasks[kind].batch_defer_async(*todo[lo:lo + 1000])
        return time.perf_counter() - t0


# ---- the parent: one run -------------------------------------------------------------------

@dataclass
class Proc:
    name: str
    proc: asyncio.subprocess.Process
    out: Path
    cpu0: float = 0.0
    cpu: float = 0.0  # CPU seconds between "go" and the end of the work

    def cpu_now(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()


async def spawn(system: str, url: str, name: str, concurrency: int, lease: float,
                tmp: Path) -> Proc:
    out = tmp / f"{name}.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", system, "--url", url, "--name", name,
        "--concurrency", str(concurrency), "--lease", str(lease), "--out", str(out),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    if line.strip() != b"ready":
        raise RuntimeError(f"worker {name} did not start (said {line!r})")
    return Proc(name, proc, out)


def server_cpu(pg_pid: int | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL process (backends, autovacuum, WAL writer...)."""
    if pg_pid is None:
        return {}
    out: dict[int, float] = {}
    with contextlib.suppress(psutil.Error):
        parent = psutil.Process(pg_pid)
        for p in [parent, *parent.children()]:
            with contextlib.suppress(psutil.Error):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
    return out


@dataclass
class Result:
    system: str
    backend: str
    kind: str
    workers: int
    jobs: int
    defer_s: float
    seconds: float | None  # None: not all done within the time allowed
    cpu_s: float
    db_cpu_s: float | None
    twice: int
    lost: int
    rerun_after_kill: int = 0
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds if self.seconds else 0.0


async def run_once(t: Target, kinds: list[str], workers: int, args: argparse.Namespace,
                   tmp: Path, label: str, *, lease: float = 30.0, kill_at: float | None = None,
                   latency_jobs: int = 0) -> list[Result]:
    """Defer the jobs (or none, for latency), start the workers, say go, wait until all
    are done (killing worker 0 at ``kill_at`` of them), stop them, count runs per job."""
    probe, url = await t.fresh(label)
    n = len(kinds) or latency_jobs
    defer_s = 0.0
    if kinds:
        defer = starpay_defer if t.system == "StarPay" else procrastinate_defer
        defer_s = await defer(url, kinds)
        if t.backend == "PostgreSQL":
            await probe.execute("ANALYZE")  # not autovacuum's, half-way through a run
    procs = list(await asyncio.gather(*(
        spawn(t.system.lower(), url, f"{label}-w{k}", args.concurrency, lease, tmp)
        for k in range(workers))))
    db0 = server_cpu(t.pg_pid)
    for p in procs:
        p.cpu0 = p.cpu_now()
    t0 = time.perf_counter()
    await asyncio.gather(*(p.send("go") for p in procs))
    killed: Proc | None = None
    if latency_jobs:
        await defer_one_by_one(t, url, latency_jobs)
    deadline = time.monotonic() + args.timeout
    seconds: float | None = None
    while time.monotonic() < deadline:
        done = await probe.scalar(t.done_sql)
        if kill_at is not None and killed is None and done >= kill_at * n:
            killed = procs[0]
            killed.cpu = killed.cpu_now() - killed.cpu0
            killed.proc.kill()
        if done >= n:
            seconds = time.perf_counter() - t0
            break
        await asyncio.sleep(POLL)
    db1 = server_cpu(t.pg_pid)
    for p in procs:
        if p is not killed:
            p.cpu = p.cpu_now() - p.cpu0
    await asyncio.gather(*(p.send("stop") for p in procs if p is not killed))
    for p in procs:
        await p.proc.wait()
    db_cpu = sum(v - db0.get(pid, 0.0) for pid, v in db1.items()) if t.pg_pid else None
    cpu = sum(p.cpu for p in procs)
    tallies = [json.loads(p.out.read_text()) for p in procs if p is not killed]
    runs = await probe.rows("SELECT job, kind, worker FROM bench_runs")
    await probe.close()

    def result(kind: str, jobs: int, twice: int, lost: int, rerun: int = 0,
               latencies: list[float] | None = None) -> Result:
        return Result(t.system, t.backend, kind, workers, jobs, defer_s, seconds, cpu,
                      db_cpu, twice, lost, rerun, latencies or [])

    if latency_jobs:
        lat = [x for tally in tallies for x in tally["latency"]]
        return [result("lat", n, 0, n - len(lat), latencies=lat)]
    out = []
    for kind in sorted(set(kinds)):
        want = {i for i, k in enumerate(kinds) if k == kind}
        by_job: dict[int, list[str]] = collections.defaultdict(list)
        if kind == "noop":
            for tally in tallies:
                for i in tally["ran"]:
                    by_job[i].append("")
        else:
            for job, k, worker in runs:
                if k == kind:
                    by_job[job].append(worker)
        again = {i: ws for i, ws in by_job.items() if len(ws) > 1}
        # Run once by the killed worker, then again by another after its lease ran out.
        rerun = {i for i, ws in again.items()
                 if len(ws) == 2 and killed is not None and ws.count(killed.name) == 1}
        for i in sorted(set(again) - rerun)[:10]:
            print(f"  {t.system} {t.backend} {kind}: job {i} ran {len(again[i])} times, "
                  f"by {', '.join(again[i])}", file=sys.stderr)
        out.append(result(kind, len(want), len(again) - len(rerun),
                          len(want - set(by_job)), len(rerun)))
    return out


async def defer_one_by_one(t: Target, url: str, n: int) -> None:
    """The latency run's deferrer: its own connection, one job at a time, 20-50 ms apart."""
    rng = random.Random(3)
    if t.system == "StarPay":
        db = Database(url)
        for _ in range(n):
            now = time.time()
            await queue.defer(db, "lat", {"t": now}, run_at=datetime.fromtimestamp(now, UTC))
            await asyncio.sleep(rng.uniform(0.02, 0.05))
        await db.dispose()
        return
    app = procrastinate_app(url, Tally(), "parent", 2)
    async with app.open_async():
        for _ in range(n):
            await app.tasks["lat"].defer_async(t=time.time())
            await asyncio.sleep(rng.uniform(0.02, 0.05))


# ---- the targets ---------------------------------------------------------------------------

def sqlite_target(tmp: Path) -> Target:
    async def fresh(label: str) -> tuple[Probe, str]:
        path = tmp / f"{label}.db"
        url = f"sqlite+aiosqlite:///{path}"
        db = Database(url)
        await upgrade(db.engine)
        await db.dispose()
        probe = SqliteProbe(path)
        await probe.execute(RUNS_DDL)
        return probe, url

    return Target("StarPay", "SQLite", fresh, "SELECT count(*) FROM jobs WHERE state = 'done'")


async def pg_targets(pg: TempPostgres, with_procrastinate: bool) -> list[Target]:
    admin = await PgProbe.connect(pg, "postgres")
    for name in ("bench_starpay", "bench_procrastinate"):
        await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    pid = int((pg.dir / "data" / "postmaster.pid").read_text().split()[0])  # type: ignore[operator]
    starpay_url = pg.url("bench_starpay")
    db = Database(starpay_url)
    await upgrade(db.engine)
    await db.dispose()
    setup = await PgProbe.connect(pg, "bench_starpay")
    await setup.execute(RUNS_DDL)
    await setup.close()

    async def fresh_starpay(label: str) -> tuple[Probe, str]:
        probe = await PgProbe.connect(pg, "bench_starpay")
        await probe.execute("TRUNCATE jobs, bench_runs RESTART IDENTITY")
        return probe, starpay_url

    targets = [Target("StarPay", "PostgreSQL", fresh_starpay,
                      "SELECT count(*) FROM jobs WHERE state = 'done'", pid)]
    if not with_procrastinate:
        return targets
    conninfo = f"host=127.0.0.1 port={pg.port} user={pg.user} dbname=bench_procrastinate"
    app = procrastinate_app(conninfo, Tally(), "parent", 2)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
    setup = await PgProbe.connect(pg, "bench_procrastinate")
    await setup.execute(RUNS_DDL)
    await setup.close()

    async def fresh_procrastinate(label: str) -> tuple[Probe, str]:
        probe = await PgProbe.connect(pg, "bench_procrastinate")
        await probe.execute("TRUNCATE procrastinate_jobs, procrastinate_workers, bench_runs "
                            "RESTART IDENTITY CASCADE")
        return probe, conninfo

    targets.append(Target("procrastinate", "PostgreSQL", fresh_procrastinate,
                          "SELECT count(*) FROM procrastinate_jobs "
                          "WHERE status = 'succeeded'", pid))
    return targets


# ---- the report ----------------------------------------------------------------------------

def ms(seconds: float, jobs: int) -> str:
    return f"{1000 * seconds / jobs:.2f}" if jobs else "-"


def print_throughput(results: list[Result]) -> None:
    print(f"{'system':14}{'db':11}{'kind':7}{'workers':>8}{'jobs':>7}{'defer/s':>9}"
          f"{'jobs/s':>8}{'CPU ms/job':>11}{'db CPU ms/job':>14}{'twice':>6}{'lost':>5}")
    for r in results:
        db_cpu = ms(r.db_cpu_s, r.jobs) if r.db_cpu_s is not None else "-"
        rate = f"{r.rate:.0f}" if r.seconds else "TIMEOUT"
        defer = f"{r.jobs / r.defer_s:.0f}" if r.defer_s else "-"
        print(f"{r.system:14}{r.backend:11}{r.kind:7}{r.workers:>8}{r.jobs:>7}{defer:>9}"
              f"{rate:>8}{ms(r.cpu_s, r.jobs):>11}{db_cpu:>14}{r.twice:>6}{r.lost:>5}",
              flush=True)


def print_ratios(results: list[Result]) -> None:
    pg = {(r.system, r.kind, r.workers): r for r in results if r.backend == "PostgreSQL"}
    for (system, kind, workers), r in sorted(pg.items()):
        theirs = pg.get(("procrastinate", kind, workers))
        if system != "StarPay" or theirs is None or not theirs.rate:
            continue
        cpu = f"{r.cpu_s / theirs.cpu_s:.2f}x" if theirs.cpu_s else "-"
        print(f"StarPay/procrastinate on PostgreSQL, {kind:5} {workers} worker(s): jobs/s "
              f"{r.rate / theirs.rate:.2f}x ({r.rate:.0f} vs {theirs.rate:.0f}), worker CPU "
              f"per job {cpu}")


def print_kill(results: list[Result]) -> None:
    print(f"{'db':11}{'kind':7}{'jobs':>7}{'jobs/s':>8}{'twice':>6}{'rerun after kill':>17}"
          f"{'lost':>5}")
    for r in results:
        rate = f"{r.rate:.0f}" if r.seconds else "TIMEOUT"
        print(f"{r.backend:11}{r.kind:7}{r.jobs:>7}{rate:>8}{r.twice:>6}"
              f"{r.rerun_after_kill:>17}{r.lost:>5}", flush=True)


def print_latency(results: list[Result]) -> None:
    print(f"{'system':14}{'db':11}{'jobs':>5}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
          f"{'lost':>5}")
    for r in results:
        lat = sorted(r.latencies) or [float("nan")]
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        print(f"{r.system:14}{r.backend:11}{r.jobs:>5}{1000 * statistics.median(lat):>8.0f}"
              f"{1000 * p99:>8.0f}{1000 * lat[-1]:>8.0f}{r.lost:>5}", flush=True)


# ---- main ----------------------------------------------------------------------------------

async def bench(targets: list[Target], args: argparse.Namespace, tmp: Path,
                sections: dict[str, list[Result]]) -> None:
    n = args.jobs
    for t in targets if "throughput" in args.only else []:
        kinds = ["noop", "row"] + (["rowtx"] if t.system == "StarPay" else [])
        for kind in kinds:
            for workers in (1, 4):
                label = f"{t.system}-{t.backend}-{kind}-{workers}".lower()
                res = await run_once(t, [kind] * n, workers, args, tmp, label)
                print_throughput(res)
                sections["throughput"] += res
    for t in targets if "kill" in args.only else []:
        if t.system == "StarPay":
            label = f"kill-{t.backend}".lower()
            kinds = ["row" if i % 2 else "rowtx" for i in range(n)]
            res = await run_once(t, kinds, 4, args, tmp, label, lease=args.kill_lease,
                                 kill_at=0.5)
            print_kill(res)
            sections["kill"] += res
    for t in targets if "latency" in args.only else []:
        label = f"lat-{t.system}-{t.backend}".lower()
        res = await run_once(t, [], 1, args, tmp, label, latency_jobs=args.latency_jobs)
        print_latency(res)
        sections["latency"] += res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=10_000, help="jobs per throughput run")
    p.add_argument("--concurrency", type=int, default=16, help="jobs at once per worker")
    p.add_argument("--kill-lease", type=float, default=2.0,
                   help="the SIGKILL run's lease (seconds)")
    p.add_argument("--latency-jobs", type=int, default=200)
    p.add_argument("--timeout", type=float, default=300.0, help="per run (seconds)")
    p.add_argument("--quick", action="store_true", help="a smoke run: 300 jobs, 30 latency")
    p.add_argument("--skip-postgres", action="store_true")
    p.add_argument("--only", type=lambda s: set(s.split(",")),
                   default={"throughput", "kill", "latency"},
                   help="comma-separated parts to run: throughput,kill,latency")
    p.add_argument("--skip-procrastinate", action="store_true")
    # A worker process (started by this script): --worker starpay|procrastinate.
    p.add_argument("--worker", choices=("starpay", "procrastinate"), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--name", help=argparse.SUPPRESS)
    p.add_argument("--lease", type=float, default=30.0, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker_main(args)
    if args.quick:
        args.jobs, args.latency_jobs = min(args.jobs, 300), min(args.latency_jobs, 30)
    with_procrastinate = not args.skip_procrastinate
    if with_procrastinate:
        try:
            import procrastinate  # noqa: F401
        except ImportError:
            print("procrastinate is not installed (pip install -e '.[bench]'); "
                  "running StarPay alone")
            with_procrastinate = False
    logging.getLogger("ivr").setLevel(logging.ERROR)
    # procrastinate warns that the App lives in __main__: it matters for tasks found by
    # import path, not for these, registered on the App the workers run.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    print(f"{args.jobs} jobs per run, {args.concurrency} at once per worker; workers are "
          f"processes; load average before: {load_average()}", flush=True)
    sections: dict[str, list[Result]] = collections.defaultdict(list)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        targets = [sqlite_target(tmp)]
        if args.skip_postgres:
            asyncio.run(bench(targets, args, tmp, sections))
        else:
            with TempPostgres(fsync=True) as pg:
                async def all_targets() -> None:
                    targets.extend(await pg_targets(pg, with_procrastinate))
                    await bench(targets, args, tmp, sections)

                asyncio.run(all_targets())
    print(f"\n== throughput: {args.jobs} jobs deferred, then claimed and finished "
          "(SQLite WAL synchronous=FULL; PostgreSQL throwaway cluster, fsync on) ==")
    print_throughput(sections["throughput"])
    print_ratios(sections["throughput"])
    print(f"\n== SIGKILL: 4 StarPay workers, lease {args.kill_lease:.0f} s, worker 0 "
          "killed when half the jobs are done; row = async handler, rowtx = tx_handler ==")
    print_kill(sections["kill"])
    print(f"\n== idle latency: {args.latency_jobs} jobs deferred one at a time 20-50 ms "
          "apart by another process, 1 idle worker; handler start - run_at ==")
    print_latency(sections["latency"])
    print(f"\nload average after: {load_average()}; {time.perf_counter() - t0:.0f} s in all")
    bad = [r for r in sections["throughput"] + sections["kill"] + sections["latency"]
           if r.twice or r.lost or not r.seconds]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
