"""Bulk imports at telecom scale: N accounts (each with a phone and a card) and N statements
through `ivr accounts import` / `ivr statements import`'s code, on SQLite and PostgreSQL,
beside the floor: the same rows loaded raw (SQLite: executemany in one transaction;
PostgreSQL: COPY) with no validation. Prints rows/s, the ratio to the floor and the import
process's peak RSS (each load runs in a child process; psutil samples it), at 10k, 100k and
N rows. (A live charge's wait beside an import is measured by
tests/integration/test_import_beside_calls.py, one call; a charge loop here is still to do.)

Targets: >= 20,000 rows/s, within 3x of the floor, peak RSS <= 250 MB at 1M rows.
Usage: python benchmarks/bulk.py [--rows N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_files(d: Path, n: int) -> tuple[Path, Path]:
    acc, st = d / f"accounts-{n}.csv", d / f"statements-{n}.csv"
    with acc.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_number", "name", "zip", "phones", "balance", "card_token",
                    "card_last4", "card_exp"])
        for i in range(n):
            w.writerow([f"A{i:08d}", f"Person {i}", "10001", f"+1212{2000000 + i:07d}",
                        "12.34", f"tok_{i}", "4242", "12/2031"])
    with st.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_number", "statement_id", "amount", "currency",
                    "statement_date", "due_date"])
        for i in range(n):
            w.writerow([f"A{i:08d}", f"S{i:08d}", "42.10", "USD", "2026-02-01",
                        "2026-02-21"])
    return acc, st


# -- the child: one load, timed ---------------------------------------------------------

async def child(kind: str, url: str, path: Path, size: int) -> float:
    from ivr.services import account_csv, statements
    from ivr.storage.db import Database

    db = Database(url)
    t0 = time.perf_counter()
    try:
        if kind == "accounts":
            with path.open(newline="") as f:
                rep = account_csv.check(f, size_hint=size)
            assert not rep.bad, rep.bad[:3]
            await account_csv.apply(db, rep)
        elif kind == "statements":
            with path.open(newline="") as f:
                srep = await statements.check(db, f, size_hint=size)
            assert not srep.bad, srep.bad[:3]
            await statements.apply(db, srep)
        else:
            await floor(db, kind, path)
    finally:
        await db.dispose()
    return time.perf_counter() - t0


async def floor(db: object, kind: str, path: Path) -> None:
    """The same rows, raw: no validation, ids given, one transaction (SQLite) or COPY."""
    import sqlite3
    from datetime import UTC, date, datetime

    import asyncpg  # type: ignore[import-untyped]
    from sqlalchemy.engine import make_url

    from ivr.storage.db import Database
    assert isinstance(db, Database)
    now = datetime.now(UTC)
    with path.open(newline="") as f:
        rows = list(csv.reader(f))[1:]
    tables: dict[str, tuple[list[str], list[tuple[Any, ...]]]]
    if kind == "floor-accounts":
        tables = {
            "accounts": (["id", "account_number", "name", "language", "time_zone",
                          "zip_code", "balance_minor", "currency", "sms_opt_in",
                          "failed_attempts", "created_at", "updated_at"],
                         [(i + 1, r[0], r[1], "en", "America/New_York", r[2], 1234, "USD",
                           False, 0, now, now) for i, r in enumerate(rows)]),
            "phone_numbers": (["id", "e164"], [(i + 1, r[3]) for i, r in enumerate(rows)]),
            "account_phones": (["account_id", "phone_id"],
                               [(i + 1, i + 1) for i in range(len(rows))]),
            "payment_methods": (["account_id", "processor", "token", "brand", "last4",
                                 "exp_month", "exp_year", "is_default", "created_at"],
                                [(i + 1, "sandbox", r[5], "card", "4242", 12, 2031, True,
                                  now) for i, r in enumerate(rows)])}
    else:
        # The floor's accounts were loaded with ids 1..N in file order.
        tables = {"statements": (
            ["account_id", "amount_due_minor", "currency", "statement_date", "due_date",
             "status", "statement_ref"],
            [(i + 1, 4210, "USD", date(2026, 2, 1), date(2026, 2, 21),
              "open", r[1]) for i, r in enumerate(rows)])}
    u = make_url(db.url)
    if db.is_sqlite:
        con = sqlite3.connect(u.database or "", isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        for t, (cols, vals) in tables.items():
            marks = ", ".join("?" for _ in cols)
            con.executemany(f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({marks})",
                            [tuple(v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(
                                v, datetime) else v.isoformat() if isinstance(v, date)
                                else v for v in row) for row in vals])
        con.execute("COMMIT")
        con.close()
        return
    conn = await asyncpg.connect(host=u.host, port=u.port, user=u.username,
                                 database=u.database)
    try:
        async with conn.transaction():
            for t, (cols, vals) in tables.items():
                await conn.copy_records_to_table(t, records=vals, columns=cols)
    finally:
        await conn.close()


# -- the parent -------------------------------------------------------------------------

def measure(kind: str, url: str, path: Path) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one load in a child process."""
    p = subprocess.Popen([sys.executable, __file__, "--child", kind, url, str(path)],
                         stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(p.pid)
    peak = 0
    while p.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.05)
    out, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"{kind} load failed ({p.returncode})")
    return float(out.strip().splitlines()[-1]), peak / 2**20


async def fresh(url_kind: str, d: Path, pg: object, name: str) -> str:
    from ivr.storage.db import Database
    from ivr.storage.migrate import upgrade
    if url_kind == "sqlite":
        url = f"sqlite+aiosqlite:///{d / name}.db"
    else:
        import asyncpg
        conn = await asyncpg.connect(host="127.0.0.1", port=pg.port,  # type: ignore[attr-defined]
                                     user=pg.user, database="postgres")  # type: ignore[attr-defined]
        await conn.execute(f"CREATE DATABASE {name}")
        await conn.close()
        url = pg.url(name)  # type: ignore[attr-defined]
    db = Database(url)
    await upgrade(db.engine)
    await db.dispose()
    return url


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=3)
    args = ap.parse_args()
    if args.child:
        kind, url, path = args.child
        print(asyncio.run(child(kind, url, Path(path), os.path.getsize(path))))
        return
    from ivr.storage.pgtemp import TempPostgres
    sizes = sorted({s for s in (10_000, 100_000, args.rows) if s <= args.rows})
    d = Path(tempfile.mkdtemp(prefix="starpay-bulk-"))
    pg = TempPostgres().start()
    n_db = 0
    print(f"{'backend':<10} {'load':<11} {'rows':>9} {'s':>7} {'rows/s':>8} "
          f"{'floor r/s':>9} {'x floor':>7} {'RSS MB':>7}")
    try:
        for size in sizes:
            acc, st = write_files(d, size)
            for backend in ("sqlite", "postgresql"):
                n_db += 1
                url = asyncio.run(fresh(backend, d, pg, f"b{n_db}"))
                fl_url = asyncio.run(fresh(backend, d, pg, f"f{n_db}"))
                for kind, path in (("accounts", acc), ("statements", st)):
                    secs, rss = measure(kind, url, path)
                    fsecs, _ = measure(f"floor-{kind}", fl_url, path)
                    print(f"{backend:<10} {kind:<11} {size:>9} {secs:>7.1f} "
                          f"{size / secs:>8,.0f} {size / fsecs:>9,.0f} "
                          f"{secs / fsecs:>7.1f} {rss:>7.0f}", flush=True)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
