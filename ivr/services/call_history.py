"""Reading the call records back, for an operator (`ivr calls list|show`).

The records are written by :mod:`ivr.services.calls`; this module only reads them, so the
call path's writer stays as small as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from ivr.storage.calls import CallRecord
from ivr.storage.db import Database
from ivr.storage.models import Account, Payment


@dataclass(frozen=True)
class CallView:
    id: int
    uniqueid: str
    ani: str | None
    attestation: str | None
    language: str
    verified_how: str
    account_number: str | None
    path: list[str]
    outcome: str | None
    payment_id: int | None
    payment_state: str | None
    details: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    duration_s: int | None


def _aware(at: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes for timezone=True columns; they were stored as UTC.
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


_COLUMNS = (CallRecord, Account.account_number, Payment.state)


def _query() -> Any:
    return (select(*_COLUMNS)
            .outerjoin(Account, Account.id == CallRecord.account_id)
            .outerjoin(Payment, Payment.id == CallRecord.payment_id))


def _view(c: CallRecord, account_number: str | None, payment_state: str | None) -> CallView:
    return CallView(c.id, c.uniqueid, c.ani, c.attestation, c.language, c.verified_how,
                    account_number, list(c.path or []), c.outcome, c.payment_id,
                    payment_state, dict(c.details or {}), _aware(c.started_at) or c.started_at,
                    _aware(c.ended_at), c.duration_s)


async def list_calls(db: Database, *, account_number: str | None = None,
                     number: str | None = None, since: datetime | None = None,
                     limit: int = 50) -> list[CallView]:
    """Calls, newest first; ``number`` is the caller's number (E.164)."""
    q = _query()
    if account_number:
        q = q.where(Account.account_number == account_number)
    if number:
        q = q.where(CallRecord.ani == number)
    if since is not None:
        q = q.where(CallRecord.started_at >= since.astimezone(UTC))
    q = q.order_by(CallRecord.started_at.desc(), CallRecord.id.desc()).limit(limit)
    async with db.session() as s:
        return [_view(*row) for row in (await s.execute(q)).all()]


async def get_calls(db: Database, ref: str) -> list[CallView]:
    """The call with this record id, or every record of this Asterisk uniqueid (the AGI may
    run twice on one channel)."""
    q = _query()
    if ref.isdigit():
        q = q.where(CallRecord.id == int(ref))
    else:
        q = q.where(CallRecord.uniqueid == ref)
    async with db.session() as s:
        rows = (await s.execute(q.order_by(CallRecord.id))).all()
        if not rows and ref.isdigit():
            rows = (await s.execute(_query().where(CallRecord.uniqueid == ref))).all()
        return [_view(*row) for row in rows]
