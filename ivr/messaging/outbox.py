"""The outbox: every outbound text is stored before it is sent, and sent by a durable job.

    outbox = Outbox(db, sender="+15550100000")

    # Inside your own transaction (Database.run body): the business write, the message and
    # its send job commit together or not at all.
    mid = outbox.queue_in(tx, "+15551234567", body, kind="receipt",
                          dedupe_key=f"receipt:{payment_id}", account_id=..., payment_id=...)
    outbox.notify()          # after the commit: wake this process's worker (optional)

    mid = await outbox.queue(to, body, kind=..., dedupe_key=...)   # its own transaction

``queue_in``/``queue`` return the new message's id, or None when nothing will be sent:

- ``dedupe_key`` was used before (a rerun, a redelivered webhook): no second message;
  :meth:`Outbox.by_key` finds the first one;
- the number has opted out (ivr/messaging/optouts.py): the message is stored as
  ``refused`` (error_code ``opted_out``) so people can see why, and no job is made. The one
  exception is ``kind=STOP_CONFIRMATION`` (:data:`STOP_CONFIRMATION`), the single "you are
  unsubscribed" reply; give it a dedupe key per opt-out (``stop:<inbound id>``) so it goes
  once.

``run_at`` holds a message until then (quiet hours); ``from_`` overrides the sender;
``in_reply_to`` is the inbound message a reply answers (the inbox finds replies by it);
``statement_id`` ties a bill notice to its statement.

Kinds used so far: receipt, notice, reply, help, stop, survey (free text, 24 chars).

Status callbacks (http webhooks, AMI) go to :meth:`Outbox.record_status` (or
``record_status_in`` in a transaction): each is stored as its own ``message_events`` row,
duplicates and late ones included, and moves the message's state only forward
(ivr/storage/messages.py: STATE_RANK), so "delivered" is never overwritten by a late
"sent". A message is found by ``message_id`` (put it in the status-callback URL: a
callback can arrive before the send's answer has given us the provider's id) or by
(provider, provider_id). Error 21610 in a callback opts out that message's recipient only.

The ``sms.send`` job (:data:`SEND_JOB`, payload ``{"message_id": id}``, dedupe key
``sms:<id>``) is run by ivr/messaging/sending.py.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ivr.jobs.queue import defer_in
from ivr.messaging import optouts
from ivr.messaging.segments import count
from ivr.messaging.transports.base import OPTED_OUT
from ivr.storage.db import Database
from ivr.storage.messages import STATE_RANK, Message, MessageEvent
from ivr.storage.tx import Tx

log = logging.getLogger(__name__)

SEND_JOB = "sms.send"
SEND_ATTEMPTS = 6  # ivr/messaging/sending.py: SEND_RETRY has the same number
STOP_CONFIRMATION = "stop"  # the one kind that may reach a number that opted out
ERROR_TEXT_MAX = 255

# What providers call their statuses -> our state. Unknown statuses are kept as events
# and move nothing.
PROVIDER_STATUS = {
    "accepted": "sending", "scheduled": "sending", "queued": "sending",
    "sending": "sending", "sent": "sent", "delivered": "delivered", "read": "delivered",
    "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
}

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone=True columns; they were stored as UTC.
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def send_key(message_id: int) -> str:
    return f"sms:{message_id}"


@dataclass(frozen=True)
class MessageView:
    id: int
    direction: str
    to: str
    from_: str
    body: str
    segments: int
    encoding: str
    state: str
    kind: str
    provider: str | None
    provider_id: str | None
    account_id: int | None
    payment_id: int | None
    statement_id: int | None
    in_reply_to: int | None
    dedupe_key: str | None
    error_code: str | None
    error_text: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: Any) -> MessageView:
        return cls(id=r.id, direction=r.direction, to=r.to_number, from_=r.from_number,
                   body=r.body, segments=r.segments, encoding=r.encoding, state=r.state,
                   kind=r.kind, provider=r.provider, provider_id=r.provider_id,
                   account_id=r.account_id, payment_id=r.payment_id,
                   statement_id=r.statement_id, in_reply_to=r.in_reply_to,
                   dedupe_key=r.dedupe_key, error_code=r.error_code, error_text=r.error_text,
                   created_at=_aware(r.created_at), updated_at=_aware(r.updated_at))


@dataclass(frozen=True)
class EventView:
    id: int
    message_id: int
    status: str
    provider_code: str | None
    raw: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class StatusResult:
    message_id: int
    state: str  # the message's state after this status
    moved: bool  # False: a duplicate, a late one, or one we don't map


# ---- statements ------------------------------------------------------------------------------

_INSERT_KEYED = {
    "sqlite": sqlite_insert(Message).on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(Message.id),
    "postgresql": pg_insert(Message).on_conflict_do_nothing(index_elements=["dedupe_key"])
    .returning(Message.id),
}
_EVENT = insert(MessageEvent)
_ONE = select(Message).where(Message.id == bindparam("p_id"))
_BY_KEY = select(Message).where(Message.dedupe_key == bindparam("p_key"))
_BY_PROVIDER = select(Message).where(Message.provider == bindparam("p_provider"),
                                     Message.provider_id == bindparam("p_provider_id"))
_SET_PROVIDER = (update(Message)
                 .where(Message.id == bindparam("p_id"), Message.provider_id.is_(None))
                 .values(provider=bindparam("p_provider"),
                         provider_id=bindparam("p_provider_id"),
                         updated_at=bindparam("p_now")))


def _advance_stmt(to: str) -> Any:
    lower = tuple(s for s, rank in STATE_RANK.items()
                  if rank < STATE_RANK[to] and (s in ("received", "handled"))
                  == (to in ("received", "handled")))
    return (update(Message).where(Message.id == bindparam("p_id"), Message.state.in_(lower))
            .values(state=to, updated_at=bindparam("p_now")))


# One conditional UPDATE per target state: "move to X if the state ranks below X" is one
# statement, so two callbacks racing can't both win or move it back.
_ADVANCE = {state: _advance_stmt(state) for state, rank in STATE_RANK.items() if rank > 0}
_ADVANCE_ERROR = {state: stmt.values(error_code=bindparam("p_code"),
                                     error_text=bindparam("p_text"))
                  for state, stmt in _ADVANCE.items()}


def event_in(tx: Tx, message_id: int, status: str, *, code: str | None = None,
             raw: dict[str, Any] | None = None, at: datetime | None = None) -> None:
    tx.execute(_EVENT, {"message_id": message_id, "status": status[:24],
                        "provider_code": code, "raw": raw or {},
                        "at": (at or _utcnow()).astimezone(UTC)})


def advance_in(tx: Tx, message_id: int, state: str, now: datetime | None = None,
               error_code: str | None = None, error_text: str | None = None) -> bool:
    """Move the message to ``state`` if that is forward; True if it moved."""
    if state not in _ADVANCE:
        return False
    params: dict[str, Any] = {"p_id": message_id, "p_now": (now or _utcnow()).astimezone(UTC)}
    stmt = _ADVANCE[state]
    if error_code is not None or error_text is not None:
        stmt = _ADVANCE_ERROR[state]
        params |= {"p_code": error_code, "p_text": (error_text or "")[:ERROR_TEXT_MAX] or None}
    return tx.execute(stmt, params).rowcount == 1


def set_provider_in(tx: Tx, message_id: int, provider: str, provider_id: str,
                    now: datetime | None = None) -> bool:
    """Note the provider's id for the message, unless it has one (a callback came first)."""
    return tx.execute(_SET_PROVIDER, {"p_id": message_id, "p_provider": provider,
                                      "p_provider_id": provider_id,
                                      "p_now": (now or _utcnow()).astimezone(UTC)}
                      ).rowcount == 1


def get_in(tx: Tx, message_id: int) -> MessageView | None:
    row = tx.execute(_ONE, {"p_id": message_id}).first()
    return MessageView.of(row) if row else None


class Outbox:
    """See the module docstring. ``sender`` is the default From number (``[sms] sender``)."""

    def __init__(self, db: Database, *, sender: str, clock: Clock = _utcnow,
                 max_attempts: int = SEND_ATTEMPTS) -> None:
        self.db = db
        self.sender = sender
        self.clock = clock
        self.max_attempts = max_attempts
        # Set by the composition root to the worker's wake(): a queued text goes out now
        # rather than at the next poll.
        self.on_queued: Callable[[], None] | None = None

    def notify(self) -> None:
        if self.on_queued is not None:
            self.on_queued()

    # ---- queueing ------------------------------------------------------------------------

    def queue_in(self, tx: Tx, to: str, body: str, *, kind: str, dedupe_key: str | None,
                 account_id: int | None = None, payment_id: int | None = None,
                 statement_id: int | None = None, in_reply_to: int | None = None,
                 run_at: datetime | None = None, from_: str | None = None) -> int | None:
        seg = count(body)
        now = self.clock().astimezone(UTC)
        refused = kind != STOP_CONFIRMATION and optouts.is_opted_out_in(tx, to)
        row = tx.execute(_INSERT_KEYED[tx.dialect], {
            "direction": "out", "channel": "sms", "to_number": to,
            "from_number": from_ or self.sender, "body": body, "segments": seg.parts,
            "encoding": seg.encoding, "state": "refused" if refused else "queued",
            "kind": kind, "account_id": account_id, "payment_id": payment_id,
            "statement_id": statement_id, "in_reply_to": in_reply_to,
            "dedupe_key": dedupe_key, "error_code": "opted_out" if refused else None,
            "error_text": "the number has opted out of texts" if refused else None,
            "created_at": now, "updated_at": now}).first()
        if row is None:
            return None  # this dedupe key has its message already
        mid = int(row[0])
        if refused:
            event_in(tx, mid, "refused", raw={"reason": "opted_out"}, at=now)
            log.info("sms %d (%s) not queued: %s has opted out", mid, kind, to)
            return None
        event_in(tx, mid, "queued", at=now)
        defer_in(tx, SEND_JOB, {"message_id": mid}, run_at=run_at or now,
                 dedupe_key=send_key(mid), max_attempts=self.max_attempts)
        return mid

    async def queue(self, to: str, body: str, *, kind: str, dedupe_key: str | None,
                    account_id: int | None = None, payment_id: int | None = None,
                    statement_id: int | None = None, in_reply_to: int | None = None,
                    run_at: datetime | None = None, from_: str | None = None) -> int | None:
        mid = await self.db.run(lambda tx: self.queue_in(
            tx, to, body, kind=kind, dedupe_key=dedupe_key, account_id=account_id,
            payment_id=payment_id, statement_id=statement_id, in_reply_to=in_reply_to,
            run_at=run_at, from_=from_))
        if mid is not None:
            self.notify()
        return mid

    # ---- status callbacks ------------------------------------------------------------------

    def record_status_in(self, tx: Tx, *, status: str, provider: str | None = None,
                         provider_id: str | None = None, message_id: int | None = None,
                         code: str | None = None, raw: dict[str, Any] | None = None
                         ) -> StatusResult | None:
        """Store one status report and move the state forward; None: no such message."""
        if message_id is not None:
            row = tx.execute(_ONE, {"p_id": message_id}).first()
        elif provider is not None and provider_id is not None:
            row = tx.execute(_BY_PROVIDER, {"p_provider": provider,
                                            "p_provider_id": provider_id}).first()
        else:
            raise ValueError("give message_id, or provider and provider_id")
        if row is None:
            return None
        now = self.clock().astimezone(UTC)
        if provider is not None and provider_id is not None and row.provider_id is None:
            set_provider_in(tx, row.id, provider, provider_id, now)
        event_in(tx, row.id, status, code=code, raw=raw, at=now)
        if code == OPTED_OUT:
            optouts.opt_out_in(tx, row.to_number, "provider", row.id, at=now)
        state = PROVIDER_STATUS.get(status.lower())
        moved = state is not None and advance_in(
            tx, row.id, state, now, error_code=code if code else None,
            error_text=(raw or {}).get("error_message") if code else None)
        return StatusResult(row.id, state if moved and state else row.state, moved)

    async def record_status(self, *, status: str, provider: str | None = None,
                            provider_id: str | None = None, message_id: int | None = None,
                            code: str | None = None, raw: dict[str, Any] | None = None
                            ) -> StatusResult | None:
        return await self.db.run(lambda tx: self.record_status_in(
            tx, status=status, provider=provider, provider_id=provider_id,
            message_id=message_id, code=code, raw=raw))

    # ---- reading ---------------------------------------------------------------------------

    async def get(self, message_id: int) -> MessageView | None:
        return await self.db.run(lambda tx: get_in(tx, message_id), write=False)

    async def by_key(self, dedupe_key: str) -> MessageView | None:
        def body(tx: Tx) -> MessageView | None:
            row = tx.execute(_BY_KEY, {"p_key": dedupe_key}).first()
            return MessageView.of(row) if row else None

        return await self.db.run(body, write=False)

    async def list(self, *, to: str | None = None, direction: str | None = None,
                   kind: str | None = None, limit: int = 50) -> list[MessageView]:
        """Messages, newest first (``to`` matches either end of the conversation)."""
        q = select(Message).order_by(Message.id.desc()).limit(limit)
        if to:
            q = q.where((Message.to_number == to) | (Message.from_number == to))
        if direction:
            q = q.where(Message.direction == direction)
        if kind:
            q = q.where(Message.kind == kind)
        async with self.db.session() as s:
            return [MessageView.of(m) for m in (await s.execute(q)).scalars()]

    async def events(self, message_id: int) -> builtins.list[EventView]:
        q = (select(MessageEvent).where(MessageEvent.message_id == message_id)
             .order_by(MessageEvent.id))
        async with self.db.session() as s:
            return [EventView(e.id, e.message_id, e.status, e.provider_code, e.raw or {},
                              _aware(e.at)) for e in (await s.execute(q)).scalars()]
