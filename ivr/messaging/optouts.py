"""The numbers that must get no more texts: ``OptOuts(db)``.

    opt_out_in(tx, number, source, message_id=None) -> bool   # True: newly opted out
    opt_in_in(tx, number, source) -> bool                     # True: was opted out
    is_opted_out_in(tx, number) -> bool
    await OptOuts(db).opt_out(...) / opt_in(...) / is_opted_out(number) / list()

``source`` is ``keyword`` (STOP and its kin), ``free_text`` ("please stop texting me"),
``provider`` (error 21610 on a send or in a status callback) or ``operator``. Each change
is appended to the audit log in the same transaction (actions ``sms.opt_out`` and
``sms.opt_in``, subject ``number:<E.164>``), so opting in again (START, UNSTOP) deletes the
row and the history stays. Only the number given is touched: a provider's 21610 for one
recipient says nothing about the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ivr.storage import audit
from ivr.storage.db import Database
from ivr.storage.messages import OptOut
from ivr.storage.tx import Tx

_INSERT = {
    "sqlite": sqlite_insert(OptOut).on_conflict_do_nothing(index_elements=["number"])
    .returning(OptOut.id),
    "postgresql": pg_insert(OptOut).on_conflict_do_nothing(index_elements=["number"])
    .returning(OptOut.id),
}
_IS = select(OptOut.id).where(OptOut.number == bindparam("p_number"))
_DELETE = delete(OptOut).where(OptOut.number == bindparam("p_number"))


@dataclass(frozen=True)
class OptOutView:
    number: str
    opted_out_at: datetime
    source: str
    message_id: int | None


def opt_out_in(tx: Tx, number: str, source: str, message_id: int | None = None,
               at: datetime | None = None) -> bool:
    row = tx.execute(_INSERT[tx.dialect], {
        "number": number, "source": source, "message_id": message_id,
        "opted_out_at": (at or datetime.now(UTC)).astimezone(UTC)}).first()
    if row is None:
        return False
    audit.append(tx, "sms", "sms.opt_out", f"number:{number}", source=source,
                 message_id=message_id)
    return True


def opt_in_in(tx: Tx, number: str, source: str, message_id: int | None = None) -> bool:
    if tx.execute(_DELETE, {"p_number": number}).rowcount == 0:
        return False
    audit.append(tx, "sms", "sms.opt_in", f"number:{number}", source=source,
                 message_id=message_id)
    return True


def is_opted_out_in(tx: Tx, number: str) -> bool:
    return tx.execute(_IS, {"p_number": number}).first() is not None


class OptOuts:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def opt_out(self, number: str, source: str, message_id: int | None = None) -> bool:
        return await self.db.run(lambda tx: opt_out_in(tx, number, source, message_id))

    async def opt_in(self, number: str, source: str, message_id: int | None = None) -> bool:
        return await self.db.run(lambda tx: opt_in_in(tx, number, source, message_id))

    async def is_opted_out(self, number: str) -> bool:
        return await self.db.run(lambda tx: is_opted_out_in(tx, number), write=False)

    async def list(self, limit: int = 100) -> list[OptOutView]:
        q = select(OptOut).order_by(OptOut.opted_out_at.desc()).limit(limit)
        async with self.db.session() as s:
            return [OptOutView(o.number, o.opted_out_at.replace(tzinfo=UTC)
                               if o.opted_out_at.tzinfo is None else o.opted_out_at,
                               o.source, o.message_id)
                    for o in (await s.execute(q)).scalars()]
