"""Exactly-once charging under load and faults, on SQLite and on PostgreSQL.

10,000 charge attempts from many concurrent tasks against the sandbox gateway with faults
injected: gateway timeouts (before and after the charge), duplicate retries with the same
idempotency key, and a simulated restart half-way (engine dropped, new engine, reconcile).
At the end the reconciler settles everything still open, and the books are checked:

* double charges: logical payments charged more than once at the gateway (must be 0);
* lost payments: money taken at the gateway with no approved payment recorded, or an approved
  payment with no charge, or a payment still open after reconcile (must be 0);
* books: the balances moved by exactly the sum of the recorded approved payments.

Baseline, side by side: the same attempts with no idempotency and no locking (a new key per
attempt, the gateway called first, then one INSERT + balance UPDATE). It is faster, and it
double-charges every retry and loses every charge whose answer timed out.

    .venv/bin/python benchmarks/payments.py [--attempts 10000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import bindparam, func, insert, select, update  # noqa: E402

from ivr.gateways.base import OutcomeUnknown  # noqa: E402
from ivr.gateways.sandbox import SandboxGateway  # noqa: E402
from ivr.services.payments import PaymentService  # noqa: E402
from ivr.services.reconcile import reconcile_once  # noqa: E402
from ivr.storage.db import Database  # noqa: E402
from ivr.storage.migrate import upgrade  # noqa: E402
from ivr.storage.models import Account, Payment, PaymentMethod  # noqa: E402
from ivr.storage.pgtemp import TempPostgres  # noqa: E402
from ivr.storage.tx import Tx  # noqa: E402

# The baseline's two statements, built once like the service's.
_RECORD = insert(Payment)
_DEBIT = (update(Account).where(Account.id == bindparam("acct"))
          .values(balance_minor=Account.balance_minor - bindparam("amount")))

OPENING = 10**12
ACCOUNTS = 200


@dataclass
class Attempt:
    account_id: int
    amount: int
    key: str
    intent: int  # the logical payment this attempt belongs to (retries share it)


@dataclass
class Result:
    label: str
    attempts: int
    seconds: float
    gateway_charges: int
    recorded: int
    double_charges: int
    lost: int
    balance_ok: bool

    @property
    def rate(self) -> float:
        return self.attempts / self.seconds


def plan(attempts: int, account_ids: list[int], dup_rate: float, seed: int) -> list[Attempt]:
    rng = random.Random(seed)
    out: list[Attempt] = []
    for _ in range(attempts):
        if out and rng.random() < dup_rate:
            prev = rng.choice(out)  # a retry of an earlier attempt, same key
            out.append(Attempt(prev.account_id, prev.amount, prev.key, prev.intent))
        else:
            out.append(Attempt(rng.choice(account_ids), rng.randint(100, 20_000),
                               f"bench-{uuid.uuid4().hex}", len(out)))
    return out


async def setup(url: str) -> list[int]:
    db = Database(url)
    await upgrade(db.engine)
    ids = []
    async with db.session() as s:
        for i in range(ACCOUNTS):
            a = Account(account_number=f"B{i:05d}", name=f"Bench {i}", zip_code="10001",
                        balance_minor=OPENING)
            s.add(a)
            await s.flush()
            s.add(PaymentMethod(account_id=a.id, token="tok_sandbox_approve", brand="visa",
                                last4="4242", exp_month=12, exp_year=date.today().year + 2))
            ids.append(a.id)
    await db.dispose()
    return ids


async def run_many(coros: list, concurrency: int) -> None:  # type: ignore[type-arg]
    sem = asyncio.Semaphore(concurrency)

    async def one(c):  # type: ignore[no-untyped-def]
        async with sem:
            return await c

    await asyncio.gather(*(one(c) for c in coros))


async def exactly_once(url: str, attempts: list[Attempt], ledger: Path, concurrency: int,
                       timeout_rate: float) -> Result:
    gw = SandboxGateway(ledger, timeout_rate=timeout_rate, seed=7)
    half = len(attempts) // 2
    t0 = time.perf_counter()
    for part in (attempts[:half], attempts[half:]):
        db = Database(url)  # the second part runs on a fresh engine: a restart
        await reconcile_once(db, gw, min_age=timedelta(0), give_up_after=timedelta(0))
        svc = PaymentService(db, gw, daily_limit_minor=OPENING)
        await run_many([svc.charge(a.account_id, a.amount, "ivr", a.key, None)
                        for a in part], concurrency)
        await db.dispose()
    db = Database(url)
    while (await reconcile_once(db, gw, min_age=timedelta(0),
                                give_up_after=timedelta(0))).checked:
        pass
    seconds = time.perf_counter() - t0
    charged = gw.approved_charges()
    async with db.session() as s:
        approved = dict((await s.execute(select(Payment.idempotency_key, Payment.amount_minor)
                                         .where(Payment.state == "approved"))).all())
        moved = OPENING * ACCOUNTS - int((await s.execute(
            select(func.sum(Account.balance_minor)))).scalar())
        still_open = (await s.execute(select(func.count()).select_from(Payment).where(
            Payment.state.in_(("pending", "unknown"))))).scalar()
    await db.dispose()
    await gw.close()
    by_intent: dict[int, int] = {}
    key_to_intent = {a.key: a.intent for a in attempts}
    for key in charged:
        by_intent[key_to_intent[key]] = by_intent.get(key_to_intent[key], 0) + 1
    doubles = sum(1 for n in by_intent.values() if n > 1)
    lost = len(set(charged) ^ set(approved)) + int(still_open or 0)
    return Result("exactly-once", len(attempts), seconds, len(charged), len(approved),
                  doubles, lost, moved == sum(approved.values()))


async def baseline(url: str, attempts: list[Attempt], ledger: Path, concurrency: int,
                   timeout_rate: float) -> Result:
    """No idempotency, no locking, no pending row: what a naive integration does."""
    gw = SandboxGateway(ledger, timeout_rate=timeout_rate, seed=7)
    db = Database(url)
    recorded: list[str] = []
    recorded_minor = 0

    async def naive(a: Attempt) -> None:
        key = f"{a.key}-{uuid.uuid4().hex[:8]}"  # each try gets a fresh key
        try:
            r = await gw.charge("tok_sandbox_approve", a.amount, "USD", key, {})
        except OutcomeUnknown:
            return  # the caller is told "try again"; a charge may have happened
        if not r.approved:
            return
        def record(tx: Tx) -> None:
            # The same execution path as the exactly-once service (Database.run, prebuilt
            # Core statements), so the comparison measures exactly-once itself.
            tx.execute(_RECORD, {
                "account_id": a.account_id, "amount_minor": a.amount, "currency": "USD",
                "state": "approved", "idempotency_key": key, "gateway": "sandbox",
                "channel": "ivr", "processor_reference": r.reference})
            tx.execute(_DEBIT, {"acct": a.account_id, "amount": a.amount})

        await db.run(record)
        nonlocal recorded_minor
        recorded.append(key)
        recorded_minor += a.amount

    t0 = time.perf_counter()
    await run_many([naive(a) for a in attempts], concurrency)
    seconds = time.perf_counter() - t0
    charged = gw.approved_charges()
    async with db.session() as s:
        moved = OPENING * ACCOUNTS - int((await s.execute(
            select(func.sum(Account.balance_minor)))).scalar())
    await db.dispose()
    await gw.close()
    key_to_intent = {a.key: a.intent for a in attempts}
    by_intent: dict[int, int] = {}
    for key in charged:
        intent = key_to_intent[key.rsplit("-", 1)[0]]
        by_intent[intent] = by_intent.get(intent, 0) + 1
    doubles = sum(1 for n in by_intent.values() if n > 1)
    lost = len(set(charged) - set(recorded))
    return Result("baseline (no idempotency/locks)", len(attempts), seconds, len(charged),
                  len(recorded), doubles, lost, moved == recorded_minor)


async def bench(backend: str, url: str, args: argparse.Namespace, tmp: Path
                ) -> list[Result]:
    results = []
    for name, fn in (("exactly-once", exactly_once), ("baseline", baseline)):
        db_url = url if backend == "postgresql" else f"sqlite+aiosqlite:///{tmp}/{name}.db"
        if backend == "postgresql":
            db_url = await _pg_db(url, name)
        ids = await setup(db_url)
        attempts = plan(args.attempts, ids, args.dup_rate, seed=1)
        results.append(await fn(db_url, attempts, tmp / f"{backend}-{name}-ledger.db",
                                args.concurrency, args.timeout_rate))
    return results


async def _pg_db(url: str, name: str) -> str:
    import asyncpg

    base = url.rsplit("/", 1)[0]
    host_port = base.split("@", 1)[1]
    host, port = host_port.split(":")
    conn = await asyncpg.connect(host=host, port=int(port), user="starpay",
                                 database="postgres")
    dbname = "bench_" + name.replace("-", "_")
    await conn.execute(f"CREATE DATABASE {dbname}")
    await conn.close()
    return f"{base}/{dbname}"


def report(backend: str, results: list[Result]) -> None:
    print(f"\n== {backend} ==")
    print(f"{'':34}{'attempts':>9}{'gw charges':>11}{'recorded':>9}{'double':>7}"
          f"{'lost':>6}{'books':>6}{'pay/s':>9}")
    for r in results:
        print(f"{r.label:34}{r.attempts:>9}{r.gateway_charges:>11}{r.recorded:>9}"
              f"{r.double_charges:>7}{r.lost:>6}{'ok' if r.balance_ok else 'BAD':>6}"
              f"{r.rate:>9.0f}")
    ours, base = results
    print(f"cost of exactly-once: {base.rate / ours.rate:.2f}x the baseline's time per "
          f"attempt ({ours.rate:.0f} vs {base.rate:.0f} attempts/s)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--attempts", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--timeout-rate", type=float, default=0.05)
    p.add_argument("--dup-rate", type=float, default=0.15)
    p.add_argument("--skip-postgres", action="store_true")
    args = p.parse_args()
    # Each injected timeout logs a warning; thousands of them would bury the numbers.
    logging.getLogger("ivr").setLevel(logging.ERROR)
    print(f"{args.attempts} attempts, {args.concurrency} concurrent tasks, "
          f"{args.timeout_rate:.0%} gateway timeouts, {args.dup_rate:.0%} duplicate retries, "
          f"restart half-way; {ACCOUNTS} accounts")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        res = asyncio.run(bench("sqlite", "", args, Path(tmp)))
        report("SQLite (WAL, synchronous=FULL)", res)
        failed |= res[0].double_charges > 0 or res[0].lost > 0 or not res[0].balance_ok
        if not args.skip_postgres:
            with TempPostgres(fsync=True) as pg:
                res = asyncio.run(bench("postgresql", pg.url(), args, Path(tmp)))
            report("PostgreSQL (throwaway cluster, fsync on)", res)
            failed |= res[0].double_charges > 0 or res[0].lost > 0 or not res[0].balance_ok
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
