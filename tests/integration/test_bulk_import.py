"""Accounts and statements imports at scale, as an admin runs them (both databases)."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from ivr.cli import main
from ivr.storage.db import Database
from ivr.storage.models import Account, Payment, PhoneNumber, Statement, account_phones


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)

    def _run(url: str, *argv: str) -> int:
        monkeypatch.setenv("STARPAY_DATABASE_URL", url)
        return main(list(argv))
    return _run


def accounts_csv(path: Path, n: int, bad_at: int | None = None) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account_number", "name", "zip", "phones", "balance", "card_token",
                    "card_last4", "card_exp"])
        for i in range(n):
            zip_code = "1234" if i == bad_at else "10001"
            w.writerow([f"B{i:06d}", f"Person {i}", zip_code, f"+1212{2000000 + i:07d}",
                        "12.34", "tok_b", "4242", "12/2031"])
    return path


async def snapshot(url: str) -> dict[str, Any]:
    db = Database(url)
    try:
        async with db.session() as s:
            out: dict[str, Any] = {}
            for name, t in [("accounts", Account), ("phones", PhoneNumber),
                            ("statements", Statement)]:
                out[name] = (await s.execute(select(func.count()).select_from(t))).scalar()
            out["links"] = (await s.execute(
                select(func.count()).select_from(account_phones))).scalar()
            out["balances"] = sorted((await s.execute(
                select(Account.account_number, Account.balance_minor))).all())
            out["statement_rows"] = sorted((await s.execute(select(
                Statement.statement_ref, Statement.account_id, Statement.amount_due_minor,
                Statement.status, Statement.id))).all(), key=repr)
            return out
    finally:
        await db.dispose()


def test_import_then_rerun_changes_nothing(db_url, run, capsys, tmp_path):
    f = accounts_csv(tmp_path / "a.csv", 5000)
    assert run(db_url, "accounts", "import", str(f)) == 0
    assert "5000 new, 0 updated" in capsys.readouterr().out
    first = asyncio.run(snapshot(db_url))
    assert first["accounts"] == first["phones"] == first["links"] == 5000
    assert run(db_url, "accounts", "import", str(f)) == 0
    assert "0 new, 5000 updated" in capsys.readouterr().out
    assert asyncio.run(snapshot(db_url)) == first


def test_bad_row_near_the_end_leaves_nothing_and_names_the_line(db_url, run, capsys,
                                                                  tmp_path):
    f = accounts_csv(tmp_path / "a.csv", 9000, bad_at=8990)
    assert run(db_url, "accounts", "import", str(f)) == 1
    err = capsys.readouterr().err
    assert "a.csv:8992: zip '1234'" in err and "nothing imported" in err
    assert "\r" not in err  # not a terminal: plain progress lines
    assert "rows/s" in err
    assert asyncio.run(snapshot(db_url))["accounts"] == 0


def test_every_problem_of_a_bad_row_is_reported(db_url, run, capsys, tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("account_number,name,zip,phones,balance,sms_opt_in\n"
                 "X1,,1234,not-a-phone,1.234,maybe\n")
    assert run(db_url, "accounts", "import", str(f)) == 1
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith(f"{f}:2:")][0]
    for words in ("name is empty", "zip '1234'", "phone 'not-a-phone'", "balance",
                  "sms_opt_in"):
        assert words in line, (words, line)


STATEMENTS = """account_number,statement_id,amount,currency,statement_date,due_date
B000000,S-1,100.00,USD,2026-01-01,2026-01-21
B000001,S-2,50.00,USD,2026-01-01,2026-01-21
"""


def test_statements_imported_twice_change_nothing(db_url, run, capsys, tmp_path):
    run(db_url, "accounts", "import", str(accounts_csv(tmp_path / "a.csv", 3)))
    f = tmp_path / "s.csv"
    f.write_text(STATEMENTS)
    assert run(db_url, "statements", "import", str(f)) == 0
    assert "2 new" in capsys.readouterr().out
    first = asyncio.run(snapshot(db_url))
    assert dict(first["balances"])["B000000"] == 10000
    assert run(db_url, "statements", "import", str(f)) == 0
    assert "0 new, 2 already imported" in capsys.readouterr().out
    assert asyncio.run(snapshot(db_url)) == first
    assert run(db_url, "statements", "list", "--account", "B000000", "--open", "--json") == 0
    assert '"statement_id": "S-1"' in capsys.readouterr().out


def test_unknown_account_is_a_bad_row(db_url, run, capsys, tmp_path):
    run(db_url, "accounts", "import", str(accounts_csv(tmp_path / "a.csv", 1)))
    f = tmp_path / "s.csv"
    f.write_text(STATEMENTS)  # B000001 does not exist
    assert run(db_url, "statements", "import", str(f)) == 1
    err = capsys.readouterr().err
    assert "s.csv:3: account B000001 is not known" in err and "nothing imported" in err
    snap = asyncio.run(snapshot(db_url))
    assert snap["statements"] == 0 and snap["accounts"] == 1


async def _pay(url: str, number: str, amount: int, at: datetime, key: str) -> None:
    db = Database(url)
    try:
        async with db.write_session() as s:
            acct = (await s.execute(select(Account).where(
                Account.account_number == number))).scalar_one()
            s.add(Payment(account_id=acct.id, amount_minor=amount, currency="USD",
                          state="approved", idempotency_key=key, gateway="sandbox",
                          channel="ivr", refunded_minor=0, created_at=at, updated_at=at))
            acct.balance_minor -= amount
    finally:
        await db.dispose()


def test_statement_after_a_payment_against_the_previous_one(db_url, run, capsys, tmp_path):
    run(db_url, "accounts", "import", str(accounts_csv(tmp_path / "a.csv", 2)))
    f1 = tmp_path / "jan.csv"
    f1.write_text(STATEMENTS)
    assert run(db_url, "statements", "import", str(f1)) == 0
    # B000000 pays January's 100.00 on Jan 20, before February's statement date: the
    # billing system saw it, so February's 130.00 is owed in full.
    # B000001 pays January's 50.00 on Feb 3 (10:00 New York), after February's statement
    # date: February (80.00, still carrying the 50.00) is owed less that payment.
    asyncio.run(_pay(db_url, "B000000", 10000, datetime(2026, 1, 20, 15, tzinfo=UTC), "k1"))
    asyncio.run(_pay(db_url, "B000001", 5000, datetime(2026, 2, 3, 15, tzinfo=UTC), "k2"))
    f2 = tmp_path / "feb.csv"
    f2.write_text("account_number,statement_id,amount,currency,statement_date,due_date\n"
                  "B000000,S-3,130.00,USD,2026-02-01,2026-02-21\n"
                  "B000001,S-4,80.00,USD,2026-02-01,2026-02-21\n")
    assert run(db_url, "statements", "import", str(f2)) == 0
    snap = asyncio.run(snapshot(db_url))
    assert dict(snap["balances"]) == {"B000000": 13000, "B000001": 3000}
    status = {r[0]: r[3] for r in snap["statement_rows"]}
    assert status == {"S-1": "closed", "S-2": "closed", "S-3": "open", "S-4": "open"}
    # A statement fully covered by a later payment is not asked again.
    asyncio.run(_pay(db_url, "B000001", 3000, datetime(2026, 3, 2, 15, tzinfo=UTC), "k3"))
    f3 = tmp_path / "mar.csv"
    f3.write_text("account_number,statement_id,amount,currency,statement_date,due_date\n"
                  "B000001,S-5,30.00,USD,2026-03-01,2026-03-21\n")
    assert run(db_url, "statements", "import", str(f3)) == 0
    snap = asyncio.run(snapshot(db_url))
    assert dict(snap["balances"])["B000001"] == 0
    assert {r[0]: r[3] for r in snap["statement_rows"]}["S-5"] == "paid"
