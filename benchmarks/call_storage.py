"""A paid call's storage work, paced like real calls, through the shipped storage path and
through SQLAlchemy's own execution side by side.

    python benchmarks/call_storage.py [--calls 200] [--gap 1.0] [--rounds 3]

Each of N concurrent "calls" sleeps, looks its account up by phone, sleeps, charges it
(pending payment with the call record, sandbox gateway, settlement), sleeps and closes its
call record: the four transactions and the gateway call of a real paid call, with the
idle gaps between them that make every transaction run on a CPU cold from idle.

- starpay: Database.run as shipped (on a SQLite file: SqliteTx on each storage thread's own
  sqlite3 connection).
- baseline: the same Database and transaction bodies, but each body runs on SQLAlchemy's
  Connection (a pooled sync engine, CoreTx), as Database.run did before ivr/storage/tx.py.

Printed: process CPU per call for the storage work (the cost of the sleeps alone, measured
separately, is subtracted), and how much of it is the event loop's thread.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from calls import build_template, phone  # the same accounts as the call benchmark
from sqlalchemy import Engine, create_engine

from ivr.agi.server import tune_gc
from ivr.gateways.sandbox import SandboxGateway
from ivr.services.accounts import AccountService
from ivr.services.calls import CallFacts, CallLog
from ivr.services.payments import PaymentService
from ivr.storage.db import Database, _sqlite_events
from ivr.storage.tx import CoreTx


class SQLAlchemyExecution(Database):
    """Database.run with each transaction body on SQLAlchemy's Connection instead."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        assert self._path is not None
        self._sa: Engine = create_engine(f"sqlite:///{self._path}", pool_size=6,
                                         max_overflow=0, connect_args={"timeout": 30})
        _sqlite_events(self._sa)

    def _sqlite_tx(self, work: Any, begin: str, durable: bool) -> Any:
        mode = "IMMEDIATE" if begin.endswith("IMMEDIATE") else ""
        engine = self._sa.execution_options(sqlite_begin=mode)
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            with conn.begin():
                return work(CoreTx(conn))


def cpu(me: psutil.Process) -> tuple[float, float]:
    t = me.cpu_times()
    loop = sum(x.user_time + x.system_time for x in me.threads() if x.id == me.pid)
    return t.user + t.system, loop


async def one_round(kind: str, template: Path, run_dir: Path, n: int, gap: float,
                    seed: int) -> tuple[float, float]:
    db_path = run_dir / f"{kind}.db"
    shutil.copyfile(template, db_path)
    url = f"sqlite+aiosqlite:///{db_path}"
    db = SQLAlchemyExecution(url) if kind == "baseline" else Database(url)
    gateway = SandboxGateway(run_dir / f"{kind}.sandbox")
    payments, accounts = PaymentService(db, gateway), AccountService(db)
    calls = CallLog(db, clock=lambda: datetime.now(UTC))
    rnd = random.Random(seed)
    pauses = [[rnd.uniform(0, 2 * gap) for _ in range(3)] for _ in range(n)]
    try:
        for i in range(n, n + 5):  # warm up: threads, connections, compiled statements
            await accounts.by_phone(phone(i))

        async def call(i: int) -> None:
            await asyncio.sleep(pauses[i][0])
            account = (await accounts.by_phone(phone(i)))[0]
            facts = CallFacts(uniqueid=f"bench.{i}", ani=phone(i), attestation="A",
                              started_at=datetime.now(UTC))
            await asyncio.sleep(pauses[i][1])
            out = await payments.charge(account.id, account.balance_minor, "ivr", f"k{i}",
                                        facts.uniqueid, on_pending=lambda tx, pid:
                                        calls.stage(tx, facts, pid))
            if out.kind != "approved":
                raise RuntimeError(f"call {i}: {out}")
            await asyncio.sleep(pauses[i][2])
            await calls.close(facts)

        async def pace_only(i: int) -> None:
            for p in pauses[i]:
                await asyncio.sleep(p)

        me = psutil.Process()
        tune_gc()
        c0, l0 = cpu(me)
        await asyncio.gather(*(call(i) for i in range(n)))
        c1, l1 = cpu(me)
        await asyncio.gather(*(pace_only(i) for i in range(n)))
        c2, l2 = cpu(me)
        return ((c1 - c0) - (c2 - c1)) / n * 1000, ((l1 - l0) - (l2 - l1)) / n * 1000
    finally:
        await db.dispose()
        await gateway.close()


async def main_async(args: argparse.Namespace) -> None:
    run_dir = Path(tempfile.mkdtemp(prefix="starpay-storage-"))
    try:
        template = run_dir / "template.db"
        t0 = time.perf_counter()
        await build_template(template, args.calls + 5)
        print(f"{args.calls + 5} accounts imported in {time.perf_counter() - t0:.1f} s; "
              f"{args.calls} concurrent paid calls, pauses of 0-{2 * args.gap:.1f} s")
        got: dict[str, list[tuple[float, float]]] = {"starpay": [], "baseline": []}
        for r in range(args.rounds):
            order = ["starpay", "baseline"] if r % 2 == 0 else ["baseline", "starpay"]
            for kind in order:
                total, loop = await one_round(kind, template, run_dir, args.calls, args.gap,
                                              seed=r)
                got[kind].append((total, loop))
                print(f"  round {r + 1} {kind:9} storage CPU per call {total:5.2f} ms "
                      f"(event-loop thread {loop:.2f} ms)", flush=True)
        med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
               for k, v in got.items()}
        print(f"\nmedian storage CPU per paid call: starpay {med['starpay'][0]:.2f} ms "
              f"(loop {med['starpay'][1]:.2f}), SQLAlchemy execution {med['baseline'][0]:.2f}"
              f" ms (loop {med['baseline'][1]:.2f}); ratio "
              f"{med['starpay'][0] / med['baseline'][0]:.2f}")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--gap", type=float, default=1.0, help="mean pause between steps (s)")
    ap.add_argument("--rounds", type=int, default=3)
    asyncio.run(main_async(ap.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
