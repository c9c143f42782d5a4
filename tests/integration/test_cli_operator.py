"""The operator's commands as an admin runs them, on both databases: payments show, refund
and --json, calls list/show, callbacks list, db seed --demo --reset."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from ivr.cli import main
from ivr.gateways.sandbox import SandboxGateway
from ivr.services.callbacks import CallbackStore
from ivr.services.confirmation import confirmation_number
from ivr.services.payments import PaymentService
from ivr.storage.calls import CallRecord
from ivr.storage.db import Database
from ivr.storage.models import Account, Payment, PaymentMethod, Statement


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STARPAY_PAYMENTS_SANDBOX_PATH", str(tmp_path / "ledger.db"))

    def _run(url: str, *argv: str) -> int:
        monkeypatch.setenv("STARPAY_DATABASE_URL", url)
        return main(list(argv))
    return _run


async def _with(url: str, tmp_path: Path, body):
    db = Database(url)
    gw = SandboxGateway(tmp_path / "ledger.db")
    try:
        return await body(db, gw)
    finally:
        await gw.close()
        await db.dispose()


async def _account_id(db: Database, number: str) -> int:
    async with db.session() as s:
        return (await s.execute(select(Account.id).where(
            Account.account_number == number))).scalar_one()


def _pay(url: str, tmp_path: Path, account: str, amount: int, key: str) -> int:
    async def body(db: Database, gw: SandboxGateway) -> int:
        out = await PaymentService(db, gw).charge(await _account_id(db, account), amount,
                                                  "ivr", key, f"call-{key}")
        return out.payment_id  # type: ignore[union-attr]
    return asyncio.run(_with(url, tmp_path, body))


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_payments_list_show_and_refund(db_url, run, capsys, tmp_path):
    assert run(db_url, "db", "seed", "--demo") == 0
    paid = _pay(db_url, tmp_path, "100001", 8417, "k1")
    declined = _pay(db_url, tmp_path, "100009", 1000, "k2")  # the always-declined card
    code = confirmation_number(paid)
    capsys.readouterr()

    assert run(db_url, "payments", "list") == 0
    out = capsys.readouterr().out
    assert code in out and confirmation_number(declined) not in out
    assert run(db_url, "payments", "list", "--json") == 0
    rows = {r["id"]: r for r in _json_lines(capsys.readouterr().out)}
    assert rows[paid]["confirmation"] == code and rows[paid]["state"] == "approved"
    assert rows[declined]["confirmation"] is None and rows[declined]["state"] == "declined"

    assert run(db_url, "payments", "show", code) == 0
    out = capsys.readouterr().out
    assert "$84.17" in out and "approved" in out and "100001" in out
    assert run(db_url, "payments", "show", f"#{declined}") == 0
    assert "none (declined)" in capsys.readouterr().out
    assert run(db_url, "payments", "show", code[:-1] + str((int(code[-1]) + 1) % 10)) == 1
    assert "not a confirmation number" in capsys.readouterr().err

    assert run(db_url, "payments", "refund", code, "--amount", "20.00", "--key", "r1") == 0
    assert "refunded $20.00" in capsys.readouterr().out
    assert run(db_url, "payments", "refund", code, "--amount", "20.00", "--key", "r1") == 0
    assert "nothing new was sent" in capsys.readouterr().out
    assert run(db_url, "payments", "refund", code, "--amount", "70") == 1
    assert "only $64.17 of $84.17 is left" in capsys.readouterr().err
    assert run(db_url, "payments", "refund", code, "--amount", "1.234") == 2
    assert run(db_url, "payments", "refund", f"#{declined}") == 1
    assert "only an approved payment" in capsys.readouterr().err
    assert run(db_url, "payments", "refund", code) == 0  # the rest
    assert "refunded $64.17" in capsys.readouterr().out

    assert run(db_url, "payments", "show", code, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] == "refunded" and shown["refunded_minor"] == 8417
    assert [r["amount_minor"] for r in shown["refunds"]] == [2000, 6417]
    assert run(db_url, "payments", "list", "--state", "refunded", "--json") == 0
    assert [r["id"] for r in _json_lines(capsys.readouterr().out)] == [paid]


def test_refund_timeout_is_exit_3_then_reconcile_settles_it(db_url, run, capsys, tmp_path,
                                                             monkeypatch):
    assert run(db_url, "db", "seed", "--demo") == 0
    code = confirmation_number(_pay(db_url, tmp_path, "100001", 5000, "k1"))
    capsys.readouterr()
    real = SandboxGateway.__init__

    def timing_out(self, *a, **kw):  # the CLI's gateway times out on its refund
        real(self, *a, **kw)
        self.refund_fault = "after"
    monkeypatch.setattr(SandboxGateway, "__init__", timing_out)
    assert run(db_url, "payments", "refund", code, "--amount", "10") == 3
    err = capsys.readouterr().err
    assert "Do not refund again" in err and "--key cli-refund-" in err
    monkeypatch.setattr(SandboxGateway, "__init__", real)
    assert run(db_url, "payments", "reconcile", "--min-age", "0") == 0
    assert "refunds checked 1: 1 succeeded" in capsys.readouterr().out
    assert run(db_url, "payments", "show", code, "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["refunded_minor"] == 1000 and shown["state"] == "approved"


def _add_calls(url: str) -> list[int]:
    async def body() -> list[int]:
        db = Database(url)
        try:
            alex = await _account_id(db, "100001")
            now = datetime.now(UTC)
            rows = [
                CallRecord(uniqueid="1700000000.1", ani="+15551234567", verified_how="zip",
                           account_id=alex, path=["greeting", "verify", "pay", "confirm"],
                           outcome="paid", started_at=now - timedelta(days=3),
                           ended_at=now - timedelta(days=3) + timedelta(seconds=95),
                           duration_s=95, details={"menu": "1"}),
                CallRecord(uniqueid="1700000000.2", ani="+15551234599", verified_how="none",
                           path=["greeting", "identify"], outcome="hangup",
                           started_at=now - timedelta(minutes=10), duration_s=12),
            ]
            async with db.session() as s:
                s.add_all(rows)
                await s.flush()
                return [r.id for r in rows]
        finally:
            await db.dispose()
    return asyncio.run(body())


def test_calls_list_and_show(db_url, run, capsys):
    assert run(db_url, "db", "seed", "--demo") == 0
    assert run(db_url, "calls", "list") == 0
    assert "no calls" in capsys.readouterr().out
    old, new = _add_calls(db_url)
    assert run(db_url, "calls", "list") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[0] == str(new) and out[2].split()[0] == str(old)  # newest first
    assert "greeting > verify > pay > confirm" in out[2] and "100001" in out[2]
    assert run(db_url, "calls", "list", "--account", "100001", "--json") == 0
    assert [c["id"] for c in _json_lines(capsys.readouterr().out)] == [old]
    assert run(db_url, "calls", "list", "--number", "(555) 123-4599", "--json") == 0
    assert [c["id"] for c in _json_lines(capsys.readouterr().out)] == [new]
    assert run(db_url, "calls", "list", "--since", "1h ago", "--json") == 0
    assert [c["id"] for c in _json_lines(capsys.readouterr().out)] == [new]
    assert run(db_url, "calls", "list", "--since=-4d", "--json") == 0
    assert [c["id"] for c in _json_lines(capsys.readouterr().out)] == [new, old]
    assert run(db_url, "calls", "list", "--since", "last tuesday") == 2
    assert "not a moment we read" in capsys.readouterr().err
    assert run(db_url, "calls", "show", str(old)) == 0
    out = capsys.readouterr().out
    assert "1. greeting" in out and "4. confirm" in out and "paid" in out
    assert "menu = \"1\"" in out
    assert run(db_url, "calls", "show", "1700000000.2", "--json") == 0
    assert json.loads(capsys.readouterr().out)["outcome"] == "hangup"
    assert run(db_url, "calls", "show", "999999") == 1
    assert "there is no call" in capsys.readouterr().err


def test_callbacks_list(db_url, run, capsys):
    assert run(db_url, "db", "seed", "--demo") == 0

    async def schedule() -> None:
        db = Database(db_url)
        try:
            store = CallbackStore(db)
            alex = await _account_id(db, "100001")
            soon = datetime.now(UTC) + timedelta(hours=1)
            await store.schedule("+15551234567", soon, account_id=alex)
            placed = await store.schedule("+15551234570", soon - timedelta(minutes=5))
            await store.finish(placed.id, "placed")
        finally:
            await db.dispose()
    asyncio.run(schedule())
    capsys.readouterr()
    assert run(db_url, "callbacks", "list") == 0
    out = capsys.readouterr().out
    assert "+15551234567" in out and "100001" in out and "+15551234570" not in out
    assert run(db_url, "callbacks", "list", "--status", "all", "--json") == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [(r["number"], r["status"]) for r in rows] == [("+15551234570", "placed"),
                                                          ("+15551234567", "pending")]
    assert rows[1]["account"] == "100001"
    assert run(db_url, "callbacks", "list", "--status", "failed") == 0
    assert "no callbacks failed" in capsys.readouterr().out


def test_seed_reset_puts_the_demo_back_and_leaves_the_rest(db_url, run, capsys, tmp_path):
    assert run(db_url, "db", "seed", "--demo") == 0
    pid = _pay(db_url, tmp_path, "100001", 8417, "k1")

    async def mess_up() -> None:
        db = Database(db_url)
        try:
            async with db.write_session() as s:
                sam = (await s.execute(select(Account).where(
                    Account.account_number == "100002"))).scalar_one()
                sam.failed_attempts, sam.locked_until = 3, datetime.now(UTC) + timedelta(1)
                jordan = await _account_id(db, "100004")
                s.add(PaymentMethod(account_id=jordan, token="tok_sandbox_approve",
                                    brand="visa", last4="4242", exp_month=1, exp_year=2099))
                s.add(Account(account_number="X1", name="Not Demo", zip_code="12345",
                              balance_minor=100))
        finally:
            await db.dispose()
    asyncio.run(mess_up())
    capsys.readouterr()
    assert run(db_url, "db", "seed", "--demo", "--reset") == 0
    assert "9 reset to their seeded state, 0 added" in capsys.readouterr().out

    async def check() -> None:
        db = Database(db_url)
        try:
            async with db.session() as s:
                accts = {a.account_number: a for a in (await s.execute(
                    select(Account))).scalars()}
                assert accts["100001"].balance_minor == 8417
                assert (accts["100002"].failed_attempts, accts["100002"].locked_until) \
                    == (0, None)
                assert accts["X1"].balance_minor == 100
                cards = (await s.execute(select(PaymentMethod).where(
                    PaymentMethod.account_id == accts["100004"].id))).scalars().all()
                assert cards == []
                alex_cards = (await s.execute(select(PaymentMethod).where(
                    PaymentMethod.account_id == accts["100001"].id))).scalars().all()
                assert len(alex_cards) == 1 and alex_cards[0].is_default
                open_ = (await s.execute(select(Statement).where(
                    Statement.account_id == accts["100001"].id,
                    Statement.status == "open"))).scalars().all()
                assert len(open_) == 1 and open_[0].amount_due_minor == 8417
                assert (await s.get(Payment, pid)) is not None  # history is kept
        finally:
            await db.dispose()
    asyncio.run(check())
    # The walk-through works again: Alex can pay the whole bill a second time.
    again = _pay(db_url, tmp_path, "100001", 8417, "k2")
    assert run(db_url, "payments", "show", confirmation_number(again)) == 0
    assert "approved" in capsys.readouterr().out
