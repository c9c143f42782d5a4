"""Account look-ups (by E.164 number or account number), statements, cards on file and
caller verification (ZIP or PIN) with a lockout after repeated failures."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, and_, bindparam, select
from sqlalchemy.orm import aliased

from ivr.storage import audit
from ivr.storage.db import Database
from ivr.storage.models import (
    Account,
    PaymentMethod,
    PhoneNumber,
    Statement,
    account_phones,
)

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_pin(pin: str) -> str:
    """scrypt with a random salt, stored as ``scrypt$n$r$p$salt$hash`` (hex)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_pin(pin: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), dklen=32,
                             n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    if dt is None:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def local_today(time_zone: str, now: datetime | None = None) -> date:
    try:
        tz = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    return (now or datetime.now(UTC)).astimezone(tz).date()


@dataclass(frozen=True)
class CardView:
    id: int
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    expired: bool


@dataclass(frozen=True)
class StatementView:
    id: int
    amount_due_minor: int
    currency: str
    statement_date: date
    due_date: date
    status: str


@dataclass(frozen=True)
class AccountView:
    id: int
    account_number: str
    name: str
    language: str
    time_zone: str
    balance_minor: int
    currency: str
    sms_opt_in: bool
    locked_until: datetime | None
    card: CardView | None  # the default card on file, if any
    next_due: date | None  # due date of the oldest open statement
    past_due: bool
    phones: tuple[str, ...]
    has_pin: bool  # a PIN is set: the call may ask it instead of the ZIP (call.verify_with)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    locked: bool = False
    locked_until: datetime | None = None
    attempts_left: int = 0


def default_card(account: Account) -> PaymentMethod | None:
    cards = [c for c in account.payment_methods if c.is_default] or list(account.payment_methods)
    return max(cards, key=lambda c: c.id) if cards else None


def view(account: Account, now: datetime | None = None) -> AccountView:
    today = local_today(account.time_zone, now)
    card = default_card(account)
    open_st = [s for s in account.statements if s.status == "open"]
    next_due = min((s.due_date for s in open_st), default=None)
    return AccountView(
        id=account.id, account_number=account.account_number, name=account.name,
        language=account.language, time_zone=account.time_zone,
        balance_minor=account.balance_minor, currency=account.currency,
        sms_opt_in=account.sms_opt_in, locked_until=as_utc(account.locked_until),
        card=CardView(card.id, card.brand, card.last4, card.exp_month, card.exp_year,
                      card.expired(today)) if card else None,
        next_due=next_due,
        past_due=bool(next_due and next_due < today and account.balance_minor > 0),
        phones=tuple(sorted(p.e164 for p in account.phones)),
        has_pin=account.pin_hash is not None)


# What the call flow needs about an account, in ONE statement (the ORM's selectinload took
# four): the account, each card, each open statement's due date and each phone, joined, so
# an account has cards x open statements x phones rows (usually one); whether a PIN is set
# rides along as a column (never the hash itself). Built once: a reused
# statement object keeps its cache key, so SQLAlchemy does not rebuild it per call.
_OwnPhone, _OwnLink = aliased(PhoneNumber), account_phones.alias("own_link")
_VIEW_COLS = (Account.id, Account.account_number, Account.name, Account.language,
              Account.time_zone, Account.balance_minor, Account.currency, Account.sms_opt_in,
              Account.locked_until, PaymentMethod.id, PaymentMethod.brand, PaymentMethod.last4,
              PaymentMethod.exp_month, PaymentMethod.exp_year, PaymentMethod.is_default,
              Statement.due_date, _OwnPhone.e164, Account.pin_hash.is_not(None))


def _view_query() -> Select:  # type args differ between SQLAlchemy 2.0 and 2.1
    return (select(*_VIEW_COLS)
            .outerjoin(PaymentMethod, PaymentMethod.account_id == Account.id)
            .outerjoin(Statement, and_(Statement.account_id == Account.id,
                                       Statement.status == "open"))
            .outerjoin(_OwnLink, _OwnLink.c.account_id == Account.id)
            .outerjoin(_OwnPhone, _OwnPhone.id == _OwnLink.c.phone_id))


_BY_ID = _view_query().where(Account.id == bindparam("account_id"))
_BY_NUMBER = _view_query().where(Account.account_number == bindparam("number"))
_BY_PHONE = (_view_query()
             .join(account_phones, account_phones.c.account_id == Account.id)
             .join(PhoneNumber, PhoneNumber.id == account_phones.c.phone_id)
             .where(PhoneNumber.e164 == bindparam("e164"))
             .order_by(Account.account_number))


def _views(rows: Any, now: datetime | None = None) -> list[AccountView]:
    """AccountViews from _view_query rows, in the order accounts first appear."""
    seen: dict[int, list[Any]] = {}
    for r in rows:
        seen.setdefault(r[0], []).append(r)
    out = []
    for group in seen.values():
        a = group[0]
        today = local_today(a[4], now)
        cards = {r[9]: r for r in group if r[9] is not None}
        # default_card()'s rule: the newest default card, else the newest card.
        pick = [c for c in cards.values() if c[14]] or list(cards.values())
        c = max(pick, key=lambda c: c[9]) if pick else None
        next_due = min((r[15] for r in group if r[15] is not None), default=None)
        out.append(AccountView(
            id=a[0], account_number=a[1], name=a[2], language=a[3], time_zone=a[4],
            balance_minor=a[5], currency=a[6], sms_opt_in=a[7], locked_until=as_utc(a[8]),
            card=CardView(c[9], c[10], c[11], c[12], c[13],
                          (c[13], c[12]) < (today.year, today.month)) if c else None,
            next_due=next_due,
            past_due=bool(next_due and next_due < today and a[5] > 0),
            phones=tuple(sorted({r[16] for r in group if r[16] is not None})),
            has_pin=bool(a[17])))
    return out


class AccountService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_phone(self, e164: str) -> list[AccountView]:
        """Every account this number belongs to (one number may pay for several)."""
        return await self._look_up(_BY_PHONE, {"e164": e164})

    async def by_number(self, account_number: str) -> AccountView | None:
        found = await self._look_up(_BY_NUMBER, {"number": account_number.strip()})
        return found[0] if found else None

    async def get(self, account_id: int) -> AccountView | None:
        found = await self._look_up(_BY_ID, {"account_id": account_id})
        return found[0] if found else None

    async def _look_up(self, query: Select, params: dict[str, Any]) -> list[AccountView]:
        rows = await self.db.run(lambda tx: tx.execute(query, params).all(), write=False)
        return _views(rows)

    async def statements(self, account_id: int, open_only: bool = False
                         ) -> list[StatementView]:
        async with self.db.session() as s:
            q = select(Statement).where(Statement.account_id == account_id)
            if open_only:
                q = q.where(Statement.status == "open")
            rows = (await s.execute(q.order_by(Statement.due_date))).scalars().all()
            return [StatementView(r.id, r.amount_due_minor, r.currency, r.statement_date,
                                  r.due_date, r.status) for r in rows]

    async def verify(self, account_id: int, *, zip_code: str | None = None,
                     pin: str | None = None, max_failures: int, lockout_minutes: int,
                     actor: str = "ivr", now: datetime | None = None) -> VerifyResult:
        """Check a ZIP code or PIN. After ``max_failures`` misses in a row the account is
        locked for ``lockout_minutes`` (PCI DSS 8.3.4: at most 10 tries, at least 30 min).
        While locked nothing is checked, so guessing during a lockout learns nothing."""
        if (zip_code is None) == (pin is None):
            raise ValueError("give exactly one of zip_code or pin")
        now = now or datetime.now(UTC)
        subject = f"account:{account_id}"
        async with self.db.account_tx(account_id) as (s, acct):
            until = as_utc(acct.locked_until)
            if until and until > now:
                audit.record(s, actor, "verify.refused_locked", subject)
                return VerifyResult(False, locked=True, locked_until=until)
            if pin is not None:
                ok = check_pin(pin, acct.pin_hash)
            else:
                ok = hmac.compare_digest((zip_code or "").strip()[:5].encode(),
                                         acct.zip_code.strip()[:5].encode())
            what = "pin" if pin is not None else "zip"
            if ok:
                acct.failed_attempts = 0
                acct.locked_until = None
                audit.record(s, actor, "verify.ok", subject, method=what)
                return VerifyResult(True)
            acct.failed_attempts += 1
            if acct.failed_attempts >= max_failures:
                acct.failed_attempts = 0
                acct.locked_until = now + timedelta(minutes=lockout_minutes)
                audit.record(s, actor, "verify.locked", subject, method=what,
                             minutes=lockout_minutes)
                return VerifyResult(False, locked=True, locked_until=acct.locked_until)
            audit.record(s, actor, "verify.failed", subject, method=what)
            return VerifyResult(False, attempts_left=max_failures - acct.failed_attempts)

    async def set_sms_opt_in(self, account_id: int, opt_in: bool, actor: str = "sms") -> None:
        async with self.db.account_tx(account_id) as (s, acct):
            acct.sms_opt_in = opt_in
            acct.sms_opt_in_at = datetime.now(UTC)
            audit.record(s, actor, "sms.opt_in" if opt_in else "sms.opt_out",
                         f"account:{account_id}")
