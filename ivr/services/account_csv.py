"""Accounts in and out as CSV. Export writes exactly what import accepts.

Columns (header required, order free): account_number, name, zip (required); language,
time_zone, pin (plain digits, hashed on import) or pin_hash (as exported), phones
(``;``-separated, any format phonenumbers understands), balance ("84.17"), currency, due_date
(YYYY-MM-DD, opens a statement for the balance), card_token, card_customer, card_brand,
card_last4, card_exp (MM/YYYY), sms_opt_in (yes/no).

Never a card number: a value that looks like one is a bad row, and it is not echoed back.

Import streams the file twice, so memory stays flat at any size. Pass 1 validates every row
(each bad row is reported with its line and every problem it has) and spools the good ones;
nothing is written unless every row is good (or the caller skips bad ones). Pass 2 applies
the spool in short transactions of BATCH_ROWS rows (set-based upserts, see
ivr.storage.bulk), which yield the database's writer to live calls between batches. The
apply is idempotent: existing accounts (by number) are updated, so rerunning an interrupted
import finishes it.
"""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ivr.money import AmountError, parse_text, to_text
from ivr.phone import to_e164
from ivr.services.accounts import default_card, hash_pin
from ivr.services.bulk_files import (
    BadRow,
    CheckReport,
    CountingLines,
    SeenBefore,
    Spool,
    first_lines,
)
from ivr.storage import audit, bulk
from ivr.storage.db import Database
from ivr.storage.models import Account, looks_like_pan

COLUMNS = ["account_number", "name", "language", "time_zone", "zip", "pin", "pin_hash",
           "phones", "balance", "currency", "due_date", "card_token", "card_customer",
           "card_brand", "card_last4", "card_exp", "sms_opt_in"]
REQUIRED = ("account_number", "name", "zip")
# Roughly the bytes of one row, to size the duplicate filter from the file's size.
_ROW_BYTES_GUESS = 40


@dataclass
class Card:
    token: str
    customer: str | None
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass
class Record:
    line: int
    account_number: str
    name: str
    language: str
    time_zone: str
    zip_code: str
    pin_hash: str | None
    phones: list[str]
    balance_minor: int
    currency: str
    due_date: date | None
    card: Card | None
    sms_opt_in: bool




# A spooled row: what the staging table takes, in its column order, then the phones.
_STAGE_ACCOUNTS: bulk.Columns = [
    ("line", "BIGINT"), ("account_number", "TEXT"), ("name", "TEXT"), ("language", "TEXT"),
    ("time_zone", "TEXT"), ("zip_code", "TEXT"), ("pin_hash", "TEXT"),
    ("balance_minor", "BIGINT"), ("currency", "TEXT"), ("due_date", "DATE"),
    ("sms_opt_in", "BOOLEAN"), ("card_token", "TEXT"), ("card_customer", "TEXT"),
    ("card_brand", "TEXT"), ("card_last4", "TEXT"), ("card_exp_month", "INTEGER"),
    ("card_exp_year", "INTEGER")]
_STAGE_PHONES: bulk.Columns = [("account_number", "TEXT"), ("e164", "TEXT")]
_N_STAGE = len(_STAGE_ACCOUNTS)


def check(stream: IO[str], default_region: str = "US", *, size_hint: int = 0,
          progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Pass 1: validate every row, collecting every problem with the file's line numbers,
    and spool the good rows. ``progress(rows, chars_read)`` is called now and then."""
    report = CheckReport(Spool())
    lines = CountingLines(stream)
    reader = csv.DictReader(lines)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        report.bad.append(BadRow(1, f"header lacks column(s) {', '.join(missing)}; "
                                    f"known columns: {', '.join(COLUMNS)}"))
        return report
    unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
    if unknown:
        report.bad.append(BadRow(1, f"unknown column(s) {', '.join(unknown)}"))
        return report
    seen = SeenBefore(size_hint // _ROW_BYTES_GUESS)
    maybe_dup: list[tuple[str, int]] = []
    for n, row in enumerate(reader, 1):
        line = reader.line_num
        problems: list[str] = []
        rec = _row(row, default_region, problems)
        if problems:
            report.bad.append(BadRow(line, "; ".join(problems)))
        else:
            assert rec is not None
            if seen.maybe_seen_then_add(rec[0]):
                maybe_dup.append((rec[0], line))
            report.spool.add((line, *rec))
            report.good += 1
        if progress and n % 1000 == 0:
            progress(n, lines.chars)
    if maybe_dup:
        _confirm_duplicates(report, maybe_dup)
    return report


def _confirm_duplicates(report: CheckReport, maybe: list[tuple[str, int]]) -> None:
    first = first_lines({k for k, _ in maybe},
                        ((r[1], r[0]) for b in report.spool.batches() for r in b))
    for key, line in maybe:
        if first[key] < line:
            report.bad.append(BadRow(line, f"account {key} already on line {first[key]}"))
            report.skip_lines.add(line)
            report.good -= 1
    report.bad.sort(key=lambda b: b.line)


def _row(row: dict[str | Any, str | Any], region: str, problems: list[str]
         ) -> tuple[Any, ...] | None:
    """One CSV row as a spooled tuple (without its line), or None with ``problems``."""
    g = {k: (v or "").strip() for k, v in row.items() if k is not None and
         isinstance(v, str)}
    bad = problems.append
    for col, value in g.items():
        # pin_hash is hex and may hold long digit runs by chance; phones are numbers.
        if col not in ("phones", "pin_hash") and looks_like_pan(value):
            bad(f"{col} looks like a card number; only a processor token and the last "
                "four digits may be imported")
    for col in REQUIRED:
        if not g.get(col):
            bad(f"{col} is empty")
    number = g.get("account_number", "")
    if number and not _ACCOUNT_NUMBER.fullmatch(number):
        bad("account_number: use up to 32 letters, digits or dashes")
    zip_code = g.get("zip", "")
    if zip_code and not _ZIP.fullmatch(zip_code):
        bad(f"zip {zip_code!r} is not a US ZIP code (12345 or 12345-6789)")
    tz = g.get("time_zone") or "America/New_York"
    if not _zone_ok(tz):
        bad(f"time_zone {tz!r} is not an IANA zone like America/Chicago")
    pin_hash = g.get("pin_hash") or None
    pin = g.get("pin")
    if pin:
        if not _PIN.fullmatch(pin):
            bad("pin must be 4 to 8 digits")
    elif pin_hash and not pin_hash.startswith("scrypt$"):
        bad("pin_hash is not one this program exported")
    phones = []
    for raw in filter(None, (p.strip() for p in g.get("phones", "").split(";"))):
        e164 = _e164(raw, region)
        if e164 is None:
            bad(f"phone {raw!r} is not a valid number")
        else:
            phones.append(e164)
    balance = 0
    raw_bal = g.get("balance", "")
    if raw_bal:
        try:
            sign = -1 if raw_bal.startswith("-") else 1  # a credit balance
            balance = sign * parse_text(raw_bal.lstrip("-"))
        except AmountError as exc:
            bad(f"balance {raw_bal!r}: {exc}")
    currency = (g.get("currency") or "USD").upper()
    if not _CURRENCY.fullmatch(currency):
        bad(f"currency {currency!r} is not an ISO 4217 code")
    due = g.get("due_date") or None
    if due:
        try:
            date.fromisoformat(due)
        except ValueError:
            bad(f"due_date {due!r} is not YYYY-MM-DD")
    card: tuple[Any, ...] = (None,) * 6
    if g.get("card_token"):
        m = _CARD_EXP.fullmatch(g.get("card_exp", ""))
        if not m or not 1 <= int(m.group(1)) <= 12:
            bad("card_exp must be MM/YYYY")
        if not _LAST4.fullmatch(g.get("card_last4", "")):
            bad("card_last4 must be exactly 4 digits")
        if m:
            card = (g["card_token"], g.get("card_customer") or None,
                    g.get("card_brand") or "card", g.get("card_last4"), int(m.group(1)),
                    int(m.group(2)))
    opt = g.get("sms_opt_in", "").lower()
    if opt not in ("", "yes", "no", "true", "false", "1", "0"):
        bad("sms_opt_in must be yes or no")
    if problems:
        return None
    if pin:
        pin_hash = hash_pin(pin)  # slow on purpose: only once the row is known good
    return (number, g["name"], g.get("language") or "en", tz, zip_code, pin_hash, balance,
            currency, due, 1 if opt in ("yes", "true", "1") else 0, *card, ";".join(phones))


_ACCOUNT_NUMBER = re.compile(r"[A-Za-z0-9-]{1,32}")
_ZIP = re.compile(r"\d{5}(-\d{4})?")
_PIN = re.compile(r"\d{4,8}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_CARD_EXP = re.compile(r"(\d{1,2})/(\d{4})")
_LAST4 = re.compile(r"\d{4}")
_NANP_E164 = re.compile(r"\+1[2-9]\d{9}")
_ZONES: dict[str, bool] = {}
# Area code -> a NANP region a number of it was last valid in (US, CA, ...): valid for any
# region means valid, and trying that one region is half the cost of finding it.
_NANP_REGION: dict[str, str] = {}


def _zone_ok(tz: str) -> bool:
    ok = _ZONES.get(tz)
    if ok is None:
        try:
            ZoneInfo(tz)
            ok = True
        except (ZoneInfoNotFoundError, ValueError):
            ok = False
        if len(_ZONES) < 1000:
            _ZONES[tz] = ok
    return ok


def _e164(raw: str, region: str) -> str | None:
    """to_e164, skipping the parse for a North American number already in E.164 form
    (the usual case in a billing export; parsing is most of a row's validation time)."""
    if _NANP_E164.fullmatch(raw):
        num = phonenumbers.PhoneNumber(country_code=1, national_number=int(raw[2:]))
        known = _NANP_REGION.get(raw[2:5])
        if known and phonenumbers.is_valid_number_for_region(num, known):
            return raw
        if phonenumbers.is_valid_number(num):
            found = phonenumbers.region_code_for_number(num)
            if found and len(_NANP_REGION) < 1000:
                _NANP_REGION[raw[2:5]] = found
            return raw
    return to_e164(raw, region)


async def apply(db: Database, report: CheckReport, actor: str = "cli",
                progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Pass 2: write the spooled rows batch by batch; returns (created, updated)."""
    created = updated = done = 0
    for rows in report.spool.batches():
        if report.skip_lines:
            rows = [r for r in rows if r[0] not in report.skip_lines]
        c, u = await _apply_batch(db, rows)
        created, updated, done = created + c, updated + u, done + len(rows)
        if progress:
            progress(done)
    async with db.write_session() as s:
        audit.record(s, actor, "accounts.imported", None, created=created, updated=updated)
    return created, updated


async def import_records(db: Database, records: Iterable[Record], actor: str = "cli",
                         progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write already validated records (the same batched apply); returns (created,
    updated)."""
    with Spool() as spool:
        for r in records:
            card = ((r.card.token, r.card.customer, r.card.brand, r.card.last4,
                     r.card.exp_month, r.card.exp_year) if r.card else (None,) * 6)
            spool.add((r.line, r.account_number, r.name, r.language, r.time_zone,
                       r.zip_code, r.pin_hash, r.balance_minor, r.currency,
                       r.due_date.isoformat() if r.due_date else None,
                       1 if r.sms_opt_in else 0, *card, ";".join(r.phones)))
        report = CheckReport(spool, spool.rows)
        return await apply(db, report, actor, progress)


async def _apply_batch(db: Database, rows: list[tuple[Any, ...]]) -> tuple[int, int]:
    """One transaction: the batch's accounts, their phones, cards and open statements."""
    phones = [(r[1], p) for r in rows if r[_N_STAGE] for p in r[_N_STAGE].split(";")]
    async with bulk.batch(db) as b:
        now, today = b.timestamp(datetime.now(UTC)), b.day(date.today())
        await b.stage("stage_accounts", [*_STAGE_ACCOUNTS, ("account_id", "BIGINT"),
                                         ("card_new", "BOOLEAN")],
                      [(*r[:_N_STAGE], None, None) for r in rows])
        await b.stage("stage_phones", _STAGE_PHONES, phones)
        existing = await b.scalar(
            "SELECT count(*) FROM stage_accounts s JOIN accounts a "
            "ON a.account_number = s.account_number")
        await b.execute(f"""
            INSERT INTO accounts (account_number, name, language, time_zone, zip_code,
                pin_hash, balance_minor, currency, sms_opt_in, failed_attempts, created_at,
                updated_at)
            SELECT account_number, name, language, time_zone, zip_code, pin_hash,
                balance_minor, currency, sms_opt_in, 0, {now}, {now}
            FROM stage_accounts WHERE true
            ON CONFLICT (account_number) DO UPDATE SET name = excluded.name,
                language = excluded.language, time_zone = excluded.time_zone,
                zip_code = excluded.zip_code, pin_hash = excluded.pin_hash,
                balance_minor = excluded.balance_minor, currency = excluded.currency,
                sms_opt_in = excluded.sms_opt_in, updated_at = excluded.updated_at""")
        await b.execute("""
            UPDATE stage_accounts SET account_id = (SELECT a.id FROM accounts a
                WHERE a.account_number = stage_accounts.account_number)""")
        if phones:
            await b.execute("""
                INSERT INTO phone_numbers (e164) SELECT DISTINCT e164 FROM stage_phones
                WHERE true ON CONFLICT (e164) DO NOTHING""")
        if existing:  # the file's phones replace the account's
            await b.execute("""
                DELETE FROM account_phones
                WHERE account_id IN (SELECT account_id FROM stage_accounts)""")
        if phones:
            await b.execute("""
                INSERT INTO account_phones (account_id, phone_id)
                SELECT DISTINCT s.account_id, p.id FROM stage_phones sp
                JOIN stage_accounts s ON s.account_number = sp.account_number
                JOIN phone_numbers p ON p.e164 = sp.e164
                WHERE true ON CONFLICT DO NOTHING""")
        await _apply_cards(b, now)
        await _apply_statements(b, today)
    return len(rows) - existing, existing


async def _apply_cards(b: bulk.Batch, now: str) -> None:
    """The file's card becomes the default unless the account's card on file (default_card:
    the newest default, else the newest card) already has its token."""
    changed = await b.execute(f"""
        UPDATE stage_accounts SET card_new = {b.true}
        WHERE card_token IS NOT NULL AND coalesce((
            SELECT pm.token FROM payment_methods pm
            WHERE pm.account_id = stage_accounts.account_id
            ORDER BY pm.is_default DESC, pm.id DESC LIMIT 1), '') <> card_token""")
    if not changed:
        return
    await b.execute(f"""
        UPDATE payment_methods SET is_default = {b.false}
        WHERE is_default AND account_id IN (
            SELECT account_id FROM stage_accounts WHERE card_new = {b.true})""")
    await b.execute(f"""
        INSERT INTO payment_methods (account_id, processor, token, processor_customer,
            brand, last4, exp_month, exp_year, is_default, created_at)
        SELECT account_id, 'sandbox', card_token, card_customer, card_brand, card_last4,
            card_exp_month, card_exp_year, {b.true}, {now}
        FROM stage_accounts WHERE card_new = {b.true}""")


async def _apply_statements(b: bulk.Batch, today: str) -> None:
    """A due_date opens a statement for the balance, replacing the account's open ones; a
    rerun finds the same open statement and leaves it."""
    same = """st.account_id = s.account_id AND st.status = 'open'
              AND st.due_date = s.due_date AND st.amount_due_minor = s.balance_minor
              AND st.currency = s.currency"""
    await b.execute(f"""
        DELETE FROM statements WHERE status = 'open' AND account_id IN (
            SELECT account_id FROM stage_accounts WHERE due_date IS NOT NULL)
        AND NOT EXISTS (SELECT 1 FROM stage_accounts s, statements st
                        WHERE st.id = statements.id AND {same})""")
    await b.execute(f"""
        INSERT INTO statements (account_id, amount_due_minor, currency, statement_date,
            due_date, status)
        SELECT s.account_id, s.balance_minor, s.currency, {today}, s.due_date, 'open'
        FROM stage_accounts s WHERE s.due_date IS NOT NULL
        AND NOT EXISTS (SELECT 1 FROM statements st WHERE {same})""")


async def export_rows(db: Database) -> AsyncIterator[dict[str, str]]:
    """Every account as an import row, in account-number order, streamed from the
    database in chunks (memory stays flat)."""
    async with db.session() as s:
        result = await s.stream(select(Account).options(
            selectinload(Account.phones), selectinload(Account.payment_methods),
            selectinload(Account.statements)).order_by(Account.account_number)
            .execution_options(yield_per=1000))
        # The session's identity map holds loaded objects weakly: read ones are freed.
        async for a in result.scalars():
            yield _export_row(a)


def _export_row(a: Account) -> dict[str, str]:
    card = default_card(a)
    due = min((st.due_date for st in a.statements if st.status == "open"), default=None)
    return {
        "account_number": a.account_number, "name": a.name, "language": a.language,
        "time_zone": a.time_zone, "zip": a.zip_code, "pin": "",
        "pin_hash": a.pin_hash or "", "phones": ";".join(sorted(p.e164 for p in a.phones)),
        "balance": ("-" if a.balance_minor < 0 else "") + to_text(abs(a.balance_minor)),
        "currency": a.currency, "due_date": due.isoformat() if due else "",
        "card_token": card.token if card else "",
        "card_customer": (card.processor_customer or "") if card else "",
        "card_brand": card.brand if card else "", "card_last4": card.last4 if card else "",
        "card_exp": f"{card.exp_month:02d}/{card.exp_year}" if card else "",
        "sms_opt_in": "yes" if a.sms_opt_in else "no"}
