"""Database.run on both databases: a transaction body of plain Core code commits whole or
not at all, and a cancelled caller never cuts a transaction short or hands its write turn
on while it is still running."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from sqlalchemy import func, select, text

from ivr.services.accounts import AccountService
from ivr.storage import audit
from ivr.storage.db import lock_account
from ivr.storage.models import AuditEntry
from ivr.storage.tx import Tx
from tests.integration.test_payments_charge import make_account


def _count(action: str):
    def work(conn: Tx) -> int:
        return int(conn.execute(select(func.count()).select_from(AuditEntry)
                                 .where(AuditEntry.action == action)).scalar_one())
    return work


async def test_commits_on_return_and_rolls_back_on_error(db):
    def ok(conn: Tx) -> str:
        audit.append(conn, "test", "run.ok", None, n=1)
        return "done"

    def fails(conn: Tx) -> None:
        audit.append(conn, "test", "run.fails", None)
        raise RuntimeError("boom")

    assert await db.run(ok) == "done"
    with pytest.raises(RuntimeError, match="boom"):
        await db.run(fails)
    assert await db.run(_count("run.ok"), write=False) == 1
    assert await db.run(_count("run.fails"), write=False) == 0


async def test_lock_account_returns_balance_and_raises_for_unknown_account(db):
    acct_id = await make_account(db)
    balance = await db.run(lambda conn: lock_account(conn, acct_id), account_id=acct_id)
    assert balance == (await AccountService(db).get(acct_id)).balance_minor  # type: ignore[union-attr]
    with pytest.raises(LookupError):
        await db.run(lambda conn: lock_account(conn, 999_999), account_id=999_999)


async def test_cancelled_caller_waits_for_its_transaction(db):
    """Cancel the caller while the body runs: the body still commits, and the cancellation
    arrives only once it has (so the write turn and account lock were held throughout)."""
    acct_id = await make_account(db)
    started = threading.Event()
    finished_at: list[float] = []

    def slow(conn: Tx) -> None:
        lock_account(conn, acct_id)
        audit.append(conn, "test", "run.slow", None)
        started.set()
        # SQLite runs the body in a worker thread; PostgreSQL on the loop (awaiting).
        if conn.dialect == "sqlite":
            time.sleep(0.6)
        else:
            conn.execute(text("SELECT pg_sleep(0.6)"))
        finished_at.append(time.monotonic())

    def after(conn: Tx) -> float:
        lock_account(conn, acct_id)
        audit.append(conn, "test", "run.after", None)
        return time.monotonic()

    first = asyncio.create_task(db.run(slow, account_id=acct_id))
    assert await asyncio.to_thread(started.wait, 5)
    second = asyncio.create_task(db.run(after, account_id=acct_id))
    first.cancel()
    await asyncio.sleep(0.2)
    assert not first.done(), "the cancellation must wait for the running transaction"
    with pytest.raises(asyncio.CancelledError):
        await first
    second_at = await second
    assert finished_at and second_at > finished_at[0]
    assert await db.run(_count("run.slow"), write=False) == 1
    assert await db.run(_count("run.after"), write=False) == 1
