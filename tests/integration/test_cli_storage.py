"""`ivr db`, `ivr accounts`, `ivr payments` as a user runs them (on both databases)."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.services.accounts import AccountService
from ivr.storage.db import Database


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STARPAY_PAYMENTS_SANDBOX_PATH", str(tmp_path / "ledger.db"))

    def _run(url: str, *argv: str) -> int:
        monkeypatch.setenv("STARPAY_DATABASE_URL", url)
        return main(list(argv))
    return _run


def test_upgrade_seed_export_import_round_trip(blank_db_url, run, capsys, tmp_path):
    assert run(blank_db_url, "db", "seed", "--demo") == 1
    assert "run `ivr db upgrade`" in capsys.readouterr().err
    assert run(blank_db_url, "db", "upgrade") == 0
    assert run(blank_db_url, "db", "upgrade") == 0  # idempotent
    assert run(blank_db_url, "db", "current") == 0
    assert run(blank_db_url, "db", "seed", "--demo") == 0
    assert "9 added" in capsys.readouterr().out
    assert run(blank_db_url, "db", "seed", "--demo") == 0
    assert "0 added, 9 already present" in capsys.readouterr().out
    out = tmp_path / "accounts.csv"
    assert run(blank_db_url, "accounts", "export", str(out)) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 9 and rows[0]["balance"] == "84.17"
    assert not any("4242424242424242" in v for r in rows for v in r.values())
    assert run(blank_db_url, "accounts", "import", str(out)) == 0
    assert "0 new, 9 updated" in capsys.readouterr().out
    assert run(blank_db_url, "payments", "list") == 0
    assert "no payments" in capsys.readouterr().out
    assert run(blank_db_url, "payments", "reconcile") == 0


BAD_CSV = """account_number,name,zip,phones,balance,card_token,card_last4,card_exp,pin
A1,Ann,12345,+15551230000,10.00,tok_a,1111,01/2030,1234
A2,Bob,1234,,10.00,,,,
A3,Cy,12345,not-a-phone,5,,,,
A4,Di,12345,,84.175,,,,
A5,Ed,12345,,5,4111 1111 1111 1111,1111,01/2030,
A6,Fay,12345,+15551230000;+15551230001,5,tok_f,1111,13/2030,
A1,Ann again,12345,,1,,,,
A8,Gus,12345,,1,,,,12
"""


async def _count(url: str) -> int:
    db = Database(url)
    try:
        return len(await AccountService(db).by_phone("+15551230000"))
    finally:
        await db.dispose()


def test_import_reports_every_bad_row_and_imports_nothing(db_url, run, capsys, tmp_path):
    f = tmp_path / "in.csv"
    f.write_text(BAD_CSV)
    assert run(db_url, "accounts", "import", str(f)) == 1
    err = capsys.readouterr().err
    for line, words in [(3, "ZIP"), (4, "phone"), (5, "at most two digits"),
                        (6, "card number"), (7, "card_exp"), (8, "already on line 2"),
                        (9, "pin")]:
        assert f"in.csv:{line}: " in err and words in err, (line, err)
    assert "4111" not in err  # the card number is not echoed back
    assert "in.csv:2:" not in err
    assert "nothing imported" in err
    assert asyncio.run(_count(db_url)) == 0
    assert run(db_url, "accounts", "import", "--skip-bad", str(f)) == 0
    assert "1 new" in capsys.readouterr().out
    assert asyncio.run(_count(db_url)) == 1


def test_large_import_shows_progress(db_url, run, capsys, tmp_path):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["account_number", "name", "zip", "balance"])
    for i in range(1100):
        w.writerow([f"N{i}", f"Person {i}", "12345", "1.00"])
    f = tmp_path / "big.csv"
    f.write_text(buf.getvalue())
    assert run(db_url, "accounts", "import", str(f)) == 0
    cap = capsys.readouterr()
    assert "1000 rows" in cap.err and "1100 new" in cap.out


def test_dead_database_is_a_clear_error(run, capsys, tmp_path):
    from ivr.storage.pgtemp import free_port

    dead = f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
    assert run(dead, "db", "upgrade") == 1
    err = capsys.readouterr().err
    assert "cannot use the database" in err and "Traceback" not in err
    assert run(dead, "payments", "list") == 1
    assert "check that PostgreSQL is running" in capsys.readouterr().err
    unwritable = f"sqlite+aiosqlite:///{Path('/proc/none/x.db')}"
    assert run(unwritable, "accounts", "export") == 1
