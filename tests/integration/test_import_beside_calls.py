"""A live *PAY call while a 100,000-row accounts import writes to the same SQLite file:
the caller's wait from pressing 1 to confirm until "approved" starts stays under 1 s.

In process, the import's batches take turns with the call's writes in the writer queue
(settlements first). As a separate `ivr accounts import` process, only SQLite's lock
arbitrates: the call's busy handler has to find the lock free between two batches."""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from ivr.qa.fake_asterisk import FakeAsterisk
from ivr.services import account_csv
from tests.unit.pay_world import ALEX, World, make_world

ROWS = 100_000


def accounts_file(path: Path, n: int = ROWS) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_number", "name", "zip", "phones", "balance", "card_token",
                    "card_last4", "card_exp"])
        for i in range(n):
            w.writerow([f"C{i:07d}", f"Person {i}", "10001", f"+1212{2000000 + i:07d}",
                        "12.34", f"tok_{i}", "4242", "12/2031"])
    return path


async def timed_payment(world: World) -> float:
    """One paying call; seconds from the confirming key to the start of "approved"."""
    marks: dict[str, float] = {}

    def on_sound(sound: str, fake: FakeAsterisk) -> None:
        if sound == "starpay/main_menu" and "menu" not in marks:
            marks["menu"] = time.perf_counter()
            fake.press("1")
        elif sound == "starpay/pay_confirm_press" and "confirm" not in marks:
            marks["confirm"] = time.perf_counter()
            fake.press("1")
        elif sound == "starpay/approved" and "approved" not in marks:
            marks["approved"] = time.perf_counter()

    fake = FakeAsterisk(world.server.port, script="pay", callerid=ALEX, args=["A"],
                        on_sound=on_sound)
    await fake.run(max_seconds=20)
    assert "approved" in marks, [s for s in fake.streamed]
    return marks["approved"] - marks["confirm"]


async def test_call_pays_within_a_second_during_an_in_process_import(tmp_path: Path
                                                                      ) -> None:
    path = accounts_file(tmp_path / "accounts.csv")
    async with make_world(tmp_path / "w") as world:
        with path.open(newline="") as f:
            # Pass 1 is CPU work: a server would run it off the event loop, as here.
            report = await asyncio.to_thread(account_csv.check, f,
                                             size_hint=path.stat().st_size)
        assert not report.bad and report.good == ROWS
        applied: list[int] = []
        started = asyncio.Event()

        def progress(done: int) -> None:
            applied.append(done)
            started.set()

        try:
            task = asyncio.create_task(account_csv.apply(world.db, report,
                                                         progress=progress))
            await asyncio.wait_for(started.wait(), 30)
            waits = [await timed_payment(world)]
            assert not task.done(), "the import ended before the call paid"
            assert await task == (ROWS, 0)
        finally:
            report.close()
        print(f"confirm -> approved: {waits[0]:.3f} s after {applied[0]} rows")
        assert waits[0] < 1.0
        assert await world.balance("100001") == 0


async def test_call_pays_within_a_second_beside_an_import_process(tmp_path: Path) -> None:
    path = accounts_file(tmp_path / "accounts.csv")
    async with make_world(tmp_path / "w") as world:
        db_file = tmp_path / "w" / "starpay.db"
        env = {**os.environ, "STARPAY_DATABASE_URL": f"sqlite+aiosqlite:///{db_file}"}
        proc = subprocess.Popen([sys.executable, "-m", "ivr", "accounts", "import",  # noqa: ASYNC220
                                 str(path)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            # Wait for pass 2 (the writes): its progress lines say "applied" or the
            # accounts table starts to grow.
            deadline = time.monotonic() + 40
            while await world_accounts(world) < 2_000:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the import never started writing"
                await asyncio.sleep(0.05)
            waits = [await timed_payment(world)]
            assert proc.poll() is None, "the import ended before the call paid"
            out, err = await asyncio.to_thread(proc.communicate, timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 0, err
        assert f"{ROWS} new, 0 updated" in out
        print(f"confirm -> approved beside the import process: {waits[0]:.3f} s")
        assert waits[0] < 1.0
        assert await world.balance("100001") == 0


async def world_accounts(world: World) -> int:
    from sqlalchemy import func, select

    from ivr.storage.models import Account
    async with world.db.session() as s:
        return (await s.execute(select(func.count()).select_from(Account))).scalar_one()
