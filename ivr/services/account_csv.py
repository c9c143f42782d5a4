"""Accounts in and out as CSV. Export writes exactly what import accepts.

Columns (header required, order free): account_number, name, zip (required); language,
time_zone, pin (plain digits, hashed on import) or pin_hash (as exported), phones
(``;``-separated, any format phonenumbers understands), balance ("84.17"), currency, due_date
(YYYY-MM-DD, opens a statement for the balance), card_token, card_customer, card_brand,
card_last4, card_exp (MM/YYYY), sms_opt_in (yes/no).

Never a card number: a value that looks like one is a bad row, and it is not echoed back.
Import is all-or-nothing in one transaction; existing accounts (by number) are updated.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import IO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select
from sqlalchemy.orm import selectinload

from ivr.money import AmountError, parse_text, to_text
from ivr.phone import to_e164
from ivr.services.accounts import default_card, hash_pin
from ivr.storage import audit
from ivr.storage.db import Database
from ivr.storage.models import Account, PaymentMethod, PhoneNumber, Statement, looks_like_pan

COLUMNS = ["account_number", "name", "language", "time_zone", "zip", "pin", "pin_hash",
           "phones", "balance", "currency", "due_date", "card_token", "card_customer",
           "card_brand", "card_last4", "card_exp", "sms_opt_in"]
REQUIRED = ("account_number", "name", "zip")


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


@dataclass
class BadRow:
    line: int
    reason: str


@dataclass
class ParseReport:
    records: list[Record] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)


def parse(stream: IO[str], default_region: str = "US",
          progress: Callable[[int], None] | None = None) -> ParseReport:
    """Validate every row; collect all problems, with the file's line numbers."""
    report = ParseReport()
    reader = csv.DictReader(stream)
    missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
    if missing:
        report.bad.append(BadRow(1, f"header lacks column(s) {', '.join(missing)}; "
                                    f"known columns: {', '.join(COLUMNS)}"))
        return report
    unknown = [c for c in reader.fieldnames or [] if c not in COLUMNS]
    if unknown:
        report.bad.append(BadRow(1, f"unknown column(s) {', '.join(unknown)}"))
        return report
    seen: dict[str, int] = {}
    for n, row in enumerate(reader, 1):
        line = reader.line_num
        try:
            rec = _record(row, line, default_region)
        except ValueError as exc:
            report.bad.append(BadRow(line, str(exc)))
        else:
            if rec.account_number in seen:
                report.bad.append(BadRow(line, f"account {rec.account_number} already on "
                                               f"line {seen[rec.account_number]}"))
            else:
                seen[rec.account_number] = line
                report.records.append(rec)
        if progress:
            progress(n)
    return report


def _record(row: dict[str, str | None], line: int, region: str) -> Record:
    g = {k: (v or "").strip() for k, v in row.items() if k is not None}
    for col, value in g.items():
        # pin_hash is hex and may hold long digit runs by chance; phones are numbers.
        if looks_like_pan(value) and col not in ("phones", "pin_hash"):
            raise ValueError(f"{col} looks like a card number; only a processor token and "
                             "the last four digits may be imported")
    for col in REQUIRED:
        if not g.get(col):
            raise ValueError(f"{col} is empty")
    if not re.fullmatch(r"[A-Za-z0-9-]{1,32}", g["account_number"]):
        raise ValueError("account_number: use up to 32 letters, digits or dashes")
    if not re.fullmatch(r"\d{5}(-\d{4})?", g["zip"]):
        raise ValueError(f"zip {g['zip']!r} is not a US ZIP code (12345 or 12345-6789)")
    tz = g.get("time_zone") or "America/New_York"
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time_zone {tz!r} is not an IANA zone like America/Chicago"
                         ) from None
    pin_hash = g.get("pin_hash") or None
    if g.get("pin"):
        if not re.fullmatch(r"\d{4,8}", g["pin"]):
            raise ValueError("pin must be 4 to 8 digits")
        pin_hash = hash_pin(g["pin"])
    elif pin_hash and not pin_hash.startswith("scrypt$"):
        raise ValueError("pin_hash is not one this program exported")
    phones = []
    for raw in filter(None, (p.strip() for p in g.get("phones", "").split(";"))):
        e164 = to_e164(raw, region)
        if e164 is None:
            raise ValueError(f"phone {raw!r} is not a valid number")
        phones.append(e164)
    try:
        raw_bal = g.get("balance", "")
        sign = -1 if raw_bal.startswith("-") else 1  # a credit balance
        balance = sign * parse_text(raw_bal.lstrip("-")) if raw_bal else 0
    except AmountError as exc:
        raise ValueError(f"balance {g['balance']!r}: {exc}") from None
    currency = (g.get("currency") or "USD").upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code")
    due = None
    if g.get("due_date"):
        try:
            due = date.fromisoformat(g["due_date"])
        except ValueError:
            raise ValueError(f"due_date {g['due_date']!r} is not YYYY-MM-DD") from None
    card = None
    if g.get("card_token"):
        m = re.fullmatch(r"(\d{1,2})/(\d{4})", g.get("card_exp", ""))
        if not m or not 1 <= int(m.group(1)) <= 12:
            raise ValueError("card_exp must be MM/YYYY")
        if not re.fullmatch(r"\d{4}", g.get("card_last4", "")):
            raise ValueError("card_last4 must be exactly 4 digits")
        card = Card(g["card_token"], g.get("card_customer") or None,
                    g.get("card_brand") or "card", g["card_last4"], int(m.group(1)),
                    int(m.group(2)))
    opt = g.get("sms_opt_in", "").lower()
    if opt not in ("", "yes", "no", "true", "false", "1", "0"):
        raise ValueError("sms_opt_in must be yes or no")
    return Record(line, g["account_number"], g["name"], g.get("language") or "en", tz,
                  g["zip"], pin_hash, phones, balance, currency, due, card,
                  opt in ("yes", "true", "1"))


async def import_records(db: Database, records: Iterable[Record], actor: str = "cli",
                         progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write all records in ONE transaction; returns (created, updated)."""
    created = updated = 0
    async with db.write_session() as s:
        phone_ids: dict[str, PhoneNumber] = {}
        for n, rec in enumerate(records, 1):
            acct = (await s.execute(select(Account).where(
                Account.account_number == rec.account_number).options(
                selectinload(Account.phones), selectinload(Account.payment_methods)))
            ).scalar_one_or_none()
            if acct is None:
                acct = Account(account_number=rec.account_number, phones=[],
                               payment_methods=[])
                s.add(acct)
                created += 1
            else:
                updated += 1
            acct.name, acct.language, acct.time_zone = rec.name, rec.language, rec.time_zone
            acct.zip_code, acct.pin_hash = rec.zip_code, rec.pin_hash
            acct.balance_minor, acct.currency = rec.balance_minor, rec.currency
            acct.sms_opt_in = rec.sms_opt_in
            phones = []
            for e164 in rec.phones:
                ph = phone_ids.get(e164) or (await s.execute(select(PhoneNumber).where(
                    PhoneNumber.e164 == e164))).scalar_one_or_none()
                if ph is None:
                    ph = PhoneNumber(e164=e164)
                    s.add(ph)
                phone_ids[e164] = ph
                phones.append(ph)
            acct.phones = phones
            await s.flush()
            if rec.card:
                cur = default_card(acct)
                if cur is None or cur.token != rec.card.token:
                    for old in acct.payment_methods:
                        old.is_default = False
                    s.add(PaymentMethod(
                        account_id=acct.id, token=rec.card.token,
                        processor_customer=rec.card.customer, brand=rec.card.brand,
                        last4=rec.card.last4, exp_month=rec.card.exp_month,
                        exp_year=rec.card.exp_year, is_default=True))
            if rec.due_date:
                await s.execute(delete(Statement).where(Statement.account_id == acct.id,
                                                        Statement.status == "open"))
                s.add(Statement(account_id=acct.id, amount_due_minor=rec.balance_minor,
                                currency=rec.currency, statement_date=date.today(),
                                due_date=rec.due_date))
            if progress:
                progress(n)
        audit.record(s, actor, "accounts.imported", None, created=created, updated=updated)
    return created, updated


async def export_rows(db: Database) -> Iterator[dict[str, str]]:
    async with db.session() as s:
        accounts = (await s.execute(select(Account).options(
            selectinload(Account.phones), selectinload(Account.payment_methods),
            selectinload(Account.statements)).order_by(Account.account_number))
        ).scalars().all()
    rows = []
    for a in accounts:
        card = default_card(a)
        due = min((st.due_date for st in a.statements if st.status == "open"), default=None)
        rows.append({
            "account_number": a.account_number, "name": a.name, "language": a.language,
            "time_zone": a.time_zone, "zip": a.zip_code, "pin": "",
            "pin_hash": a.pin_hash or "", "phones": ";".join(sorted(p.e164 for p in a.phones)),
            "balance": ("-" if a.balance_minor < 0 else "") + to_text(abs(a.balance_minor)),
            "currency": a.currency, "due_date": due.isoformat() if due else "",
            "card_token": card.token if card else "",
            "card_customer": (card.processor_customer or "") if card else "",
            "card_brand": card.brand if card else "", "card_last4": card.last4 if card else "",
            "card_exp": f"{card.exp_month:02d}/{card.exp_year}" if card else "",
            "sms_opt_in": "yes" if a.sms_opt_in else "no"})
    return iter(rows)
