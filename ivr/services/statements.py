"""The statements feed: one billing cycle as CSV, one statement per account.

Columns (header required, order free): account_number, statement_id (the billing system's
id, up to 64 characters), amount ("84.17", the statement's amount due), currency (the
account's; default USD), statement_date and due_date (YYYY-MM-DD, due on or after the
statement date).

Bad rows are reported with their line and every problem: among them an account number we
do not know (the feed never creates accounts), a currency other than the account's, a
statement id or an account that appears twice in the file, and a statement id imported
before with other values.

Idempotent by statement id: a statement whose id is already stored is left as it is, so a
rerun, a resent file or the rest of an interrupted import changes nothing that was done.

What the account owes, as a billing clerk counts it. A statement's amount is what the
billing system billed as of the end of its statement date, so it already reflects every
payment made up to then. On import of statement S for an account:

* If the account has a statement with a later statement date, S is history: stored as
  ``closed``, and nothing else changes.
* Otherwise S supersedes the account's open statements (they become ``closed``), and the
  balance owed becomes S.amount minus the payments made *after* S's statement date:
  approved (or partly refunded) payments net of refunds whose time is at or after midnight
  that ends the statement date in the account's time zone. Those the billing system could
  not know about, so they count against S; a payment made on or before the statement date
  is already in S's amount and is not counted twice. Pending payments count once settled
  (settling debits the balance).
* S is ``open`` while that balance is above zero, else ``paid``: an amount already paid is
  not asked again. A negative balance is a credit.

Example: statement 1 (Jan 1, 100.00) is paid on Jan 20. Statement 2 arrives dated Feb 1 for
130.00 (30.00 of new charges; the billing system saw the payment): owed 130.00. Had the
payment been made on Feb 3, after statement 2's date, and statement 2 said 230.00 (it
could not see the payment), the account owes 130.00.

The import runs like the accounts import (two passes, short batched transactions; see
ivr.services.account_csv). PostgreSQL: each batch locks its accounts' rows first, so a
payment settling meanwhile is either counted or debits the new balance, never lost.
"""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from ivr.money import AmountError, parse_text
from ivr.services.bulk_files import (
    BATCH_ROWS,
    BadRow,
    CheckReport,
    CountingLines,
    SeenBefore,
    Spool,
    first_lines,
)
from ivr.storage import audit, bulk
from ivr.storage.db import Database
from ivr.storage.models import Account, Statement

COLUMNS = ["account_number", "statement_id", "amount", "currency", "statement_date",
           "due_date"]
REQUIRED = ("account_number", "statement_id", "amount", "statement_date", "due_date")
_ROW_BYTES_GUESS = 40
_REF = re.compile(r"[\x21-\x7e]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")

# A spooled row: line, account_id, statement_ref, amount, currency, statement_date,
# due_date, cutoff (when payments start counting against it), account_number.
_STAGE: bulk.Columns = [
    ("line", "BIGINT"), ("account_id", "BIGINT"), ("statement_ref", "TEXT"),
    ("amount_minor", "BIGINT"), ("currency", "TEXT"), ("statement_date", "DATE"),
    ("due_date", "DATE"), ("cutoff", "TIMESTAMPTZ"), ("account_number", "TEXT"),
    ("latest", "BOOLEAN"), ("paid_minor", "BIGINT")]




@dataclass(frozen=True)
class StatementRow:
    account_number: str
    statement_ref: str | None
    amount_due_minor: int
    currency: str
    statement_date: date
    due_date: date
    status: str


async def check(db: Database, stream: IO[str], *, size_hint: int = 0,
                progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Pass 1: validate every row (against the accounts and the statements already stored,
    a chunk at a time) and spool the good ones. Writes nothing."""
    report = CheckReport(Spool())
    lines = CountingLines(stream)
    reader = csv.DictReader(lines)
    fields = reader.fieldnames or []
    missing = [c for c in REQUIRED if c not in fields]
    unknown = [c for c in fields if c not in COLUMNS]
    if missing or unknown:
        why = (f"header lacks column(s) {', '.join(missing)}; " if missing else "") + (
            f"unknown column(s) {', '.join(unknown)}; " if unknown else "")
        report.bad.append(BadRow(1, f"{why}known columns: {', '.join(COLUMNS)}"))
        return report
    seen_ref, seen_acct = (SeenBefore(size_hint // _ROW_BYTES_GUESS) for _ in range(2))
    maybe_dup: list[tuple[int, str, int]] = []  # (spool column, key, line)
    chunk: list[tuple[int, dict[str, Any]]] = []
    n = 0
    for row in reader:
        n += 1
        problems: list[str] = []
        parsed = _parse(row, problems)
        if problems:
            report.bad.append(BadRow(reader.line_num, "; ".join(problems)))
        else:
            chunk.append((reader.line_num, parsed))
        if len(chunk) >= BATCH_ROWS:
            await _check_chunk(db, chunk, report, seen_ref, seen_acct, maybe_dup)
            chunk = []
        if progress and n % 1000 == 0:
            progress(n, lines.chars)
    if chunk:
        await _check_chunk(db, chunk, report, seen_ref, seen_acct, maybe_dup)
    if maybe_dup:
        _confirm_duplicates(report, maybe_dup)
    return report


def _parse(row: dict[str | Any, str | Any], problems: list[str]) -> dict[str, Any]:
    g = {k: (v or "").strip() for k, v in row.items() if k is not None and
         isinstance(v, str)}
    bad = problems.append
    for col in REQUIRED:
        if not g.get(col):
            bad(f"{col} is empty")
    ref = g.get("statement_id", "")
    if ref and not _REF.fullmatch(ref):
        bad("statement_id: use up to 64 printable characters without spaces")
    amount = 0
    if g.get("amount"):
        try:
            amount = parse_text(g["amount"])
        except AmountError as exc:
            bad(f"amount {g['amount']!r}: {exc}")
    currency = (g.get("currency") or "USD").upper()
    if not _CURRENCY.fullmatch(currency):
        bad(f"currency {currency!r} is not an ISO 4217 code")
    days: dict[str, date] = {}
    for col in ("statement_date", "due_date"):
        if g.get(col):
            try:
                days[col] = date.fromisoformat(g[col])
            except ValueError:
                bad(f"{col} {g[col]!r} is not YYYY-MM-DD")
    if len(days) == 2 and days["due_date"] < days["statement_date"]:
        bad("due_date is before statement_date")
    return {"account_number": g.get("account_number", ""), "ref": ref, "amount": amount,
            "currency": currency, **days}


async def _check_chunk(db: Database, chunk: list[tuple[int, dict[str, Any]]],
                       report: CheckReport, seen_ref: SeenBefore, seen_acct: SeenBefore,
                       maybe_dup: list[tuple[int, str, int]]) -> None:
    numbers = {p["account_number"] for _, p in chunk}
    refs = {p["ref"] for _, p in chunk}
    async with db.session() as s:
        accounts = {r.account_number: r for r in await s.execute(
            select(Account.id, Account.account_number, Account.time_zone, Account.currency)
            .where(Account.account_number.in_(numbers)))}
        stored = {r.statement_ref: r for r in await s.execute(
            select(Statement.statement_ref, Statement.account_id, Statement.amount_due_minor,
                   Statement.currency, Statement.statement_date, Statement.due_date)
            .where(Statement.statement_ref.in_(refs)))}
    for line, p in chunk:
        problems = []
        acct = accounts.get(p["account_number"])
        if acct is None:
            problems.append(f"account {p['account_number']} is not known (import it with "
                            "`ivr accounts import` first)")
        elif acct.currency != p["currency"]:
            problems.append(f"currency {p['currency']} is not the account's "
                            f"({acct.currency})")
        old = stored.get(p["ref"])
        if old is not None and acct is not None and (
                old.account_id, old.amount_due_minor, old.currency, old.statement_date,
                old.due_date) != (acct.id, p["amount"], p["currency"], p["statement_date"],
                                  p["due_date"]):
            problems.append(f"statement {p['ref']} was imported before with other values")
        if problems:
            report.bad.append(BadRow(line, "; ".join(problems)))
            continue
        assert acct is not None
        if seen_ref.maybe_seen_then_add(p["ref"]):
            maybe_dup.append((2, p["ref"], line))
        if seen_acct.maybe_seen_then_add(p["account_number"]):
            maybe_dup.append((8, p["account_number"], line))
        report.spool.add((line, acct.id, p["ref"], p["amount"], p["currency"],
                          p["statement_date"].isoformat(), p["due_date"].isoformat(),
                          _cutoff(p["statement_date"], acct.time_zone), p["account_number"]))
        report.good += 1


def _cutoff(statement_date: date, time_zone: str) -> str:
    """Midnight ending the statement date in the account's zone, as stored (UTC text)."""
    try:
        tz = ZoneInfo(time_zone)
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    end = datetime.combine(statement_date + timedelta(days=1), time(), tz)
    return bulk.sqlite_timestamp(end)


def _confirm_duplicates(report: CheckReport, maybe: list[tuple[int, str, int]]) -> None:
    what = {2: "statement", 8: "account"}
    for col in (2, 8):
        keys = {k for c, k, _ in maybe if c == col}
        if not keys:
            continue
        first = first_lines(keys, ((r[col], r[0]) for b in report.spool.batches() for r in b))
        for c, key, line in maybe:
            if c == col and first[key] < line and line not in report.skip_lines:
                report.bad.append(BadRow(line, f"{what[col]} {key} already on line "
                                               f"{first[key]}"))
                report.skip_lines.add(line)
                report.good -= 1
    report.bad.sort(key=lambda b: b.line)


async def apply(db: Database, report: CheckReport, actor: str = "cli",
                progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Pass 2: store the spooled statements batch by batch; returns (new, unchanged)."""
    new = unchanged = done = 0
    for rows in report.spool.batches():
        if report.skip_lines:
            rows = [r for r in rows if r[0] not in report.skip_lines]
        added = await _apply_batch(db, rows)
        new, unchanged, done = new + added, unchanged + len(rows) - added, done + len(rows)
        if progress:
            progress(done)
    async with db.write_session() as s:
        audit.record(s, actor, "statements.imported", None, new=new, unchanged=unchanged)
    return new, unchanged


async def _apply_batch(db: Database, rows: list[tuple[Any, ...]]) -> int:
    async with bulk.batch(db) as b:
        await b.stage("stage_statements", _STAGE, [(*r, None, 0) for r in rows])
        await b.execute("""
            DELETE FROM stage_statements WHERE EXISTS (SELECT 1 FROM statements st
                WHERE st.statement_ref = stage_statements.statement_ref)""")
        if not b.sqlite:  # the write turn is SQLite's lock
            await b.execute("""
                SELECT id FROM accounts
                WHERE id IN (SELECT account_id FROM stage_statements) ORDER BY id FOR UPDATE""")
        await b.execute("""
            UPDATE stage_statements SET latest = NOT EXISTS (SELECT 1 FROM statements st
                WHERE st.account_id = stage_statements.account_id
                AND st.statement_date > stage_statements.statement_date)""")
        await b.execute("""
            UPDATE stage_statements SET paid_minor = (
                SELECT coalesce(sum(p.amount_minor - p.refunded_minor), 0) FROM payments p
                WHERE p.account_id = stage_statements.account_id
                AND p.state IN ('approved', 'refunded')
                AND p.created_at >= stage_statements.cutoff)
            WHERE latest""")
        await b.execute("""
            UPDATE statements SET status = 'closed' WHERE status = 'open' AND account_id IN (
                SELECT account_id FROM stage_statements WHERE latest)""")
        added = await b.execute("""
            INSERT INTO statements (account_id, amount_due_minor, currency, statement_date,
                due_date, status, statement_ref)
            SELECT account_id, amount_minor, currency, statement_date, due_date,
                CASE WHEN NOT latest THEN 'closed'
                     WHEN amount_minor - paid_minor > 0 THEN 'open' ELSE 'paid' END,
                statement_ref
            FROM stage_statements WHERE true""")
        now = b.timestamp(datetime.now(UTC))
        await b.execute(f"""
            UPDATE accounts SET updated_at = {now}, balance_minor = (
                SELECT s.amount_minor - s.paid_minor FROM stage_statements s
                WHERE s.account_id = accounts.id)
            WHERE id IN (SELECT account_id FROM stage_statements WHERE latest)""")
    return added


async def list_statements(db: Database, account_number: str | None = None,
                          open_only: bool = False) -> AsyncIterator[StatementRow]:
    """Statements by account number and statement date, streamed."""
    q = (select(Account.account_number, Statement.statement_ref, Statement.amount_due_minor,
                Statement.currency, Statement.statement_date, Statement.due_date,
                Statement.status)
         .join(Account, Account.id == Statement.account_id)
         .order_by(Account.account_number, Statement.statement_date, Statement.id))
    if account_number is not None:
        q = q.where(Account.account_number == account_number)
    if open_only:
        q = q.where(Statement.status == "open")
    async with db.session() as s:
        result = await s.stream(q.execution_options(yield_per=1000))
        async for r in result:
            yield StatementRow(*r)
