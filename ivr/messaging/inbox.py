"""The inbox: each inbound text is stored once, under the provider's id for it.

    inbox = Inbox(db)
    acc = await inbox.accept(InboundSms(provider="http", provider_id="SM123",
                                        from_="+15551234567", to="+15550100000",
                                        body="PAY", received_at=now))
    acc.message_id     # our id for it (the same on every redelivery)
    acc.first_time     # False: the provider delivered it again (a webhook retry)
    acc.handled        # True: its reply handler has finished; answer with acc.reply_ids
    acc.reply_ids      # the outbound messages queued in reply (in_reply_to = message_id)

    # What a webhook or `ivr sms receive` does: accept, run the handler once, answer.
    acc = await inbox.handle(sms, reply)      # reply(InboundMessage) queues replies

:meth:`Inbox.handle` runs ``reply`` only while the message is not ``handled``, then marks
it ``handled``, so a redelivery after that is answered with the stored replies and causes
no new action. A redelivery that arrives while the first delivery's handler is still
running (or after it crashed half way) runs the handler again: handlers must be
idempotent by key. Replies are queued with ``in_reply_to=message.id`` and a dedupe key made
from the inbound id (``reply:<id>``, ``stop:<id>``), and a charge uses the inbound id in its
payment key, so the second run adds nothing.

Numbers: ``from_`` and ``to`` are stored as given (the transport normalises to E.164).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ivr.messaging.outbox import MessageView, advance_in, event_in, get_in
from ivr.messaging.segments import count
from ivr.storage.db import Database
from ivr.storage.messages import Message
from ivr.storage.tx import Tx

INBOUND_KIND = "inbound"
InboundMessage = MessageView  # what a reply handler gets: the stored inbound message
ReplyHandler = Callable[[InboundMessage], Awaitable[object]]


@dataclass(frozen=True)
class InboundSms:
    provider: str  # the transport's name ("outbox", "http", "asterisk")
    provider_id: str  # its id for this message (MessageSid); a redelivery repeats it
    from_: str
    to: str
    body: str
    received_at: datetime | None = None
    raw: dict[str, Any] = field(default_factory=dict)  # the provider's fields, as sent


@dataclass(frozen=True)
class Accepted:
    message_id: int
    first_time: bool
    reply_ids: tuple[int, ...]
    handled: bool


_INSERT = {
    "sqlite": sqlite_insert(Message).on_conflict_do_nothing(
        index_elements=["provider", "provider_id"]).returning(Message.id),
    "postgresql": pg_insert(Message).on_conflict_do_nothing(
        index_elements=["provider", "provider_id"]).returning(Message.id),
}
_FIND = select(Message.id, Message.state).where(
    Message.provider == bindparam("p_provider"), Message.provider_id == bindparam("p_pid"))
_REPLIES = (select(Message.id).where(Message.in_reply_to == bindparam("p_id"))
            .order_by(Message.id))


def _replies(tx: Tx, message_id: int) -> tuple[int, ...]:
    return tuple(r[0] for r in tx.execute(_REPLIES, {"p_id": message_id}).all())


class Inbox:
    def __init__(self, db: Database, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.clock = clock or (lambda: datetime.now(UTC))

    def accept_in(self, tx: Tx, sms: InboundSms) -> Accepted:
        at = (sms.received_at or self.clock()).astimezone(UTC)
        seg = count(sms.body)
        row = tx.execute(_INSERT[tx.dialect], {
            "direction": "in", "channel": "sms", "to_number": sms.to,
            "from_number": sms.from_, "body": sms.body, "segments": seg.parts,
            "encoding": seg.encoding, "state": "received", "provider": sms.provider,
            "provider_id": sms.provider_id, "kind": INBOUND_KIND, "created_at": at,
            "updated_at": at}).first()
        if row is not None:
            event_in(tx, int(row[0]), "received", raw=sms.raw, at=at)
            return Accepted(int(row[0]), True, (), False)
        mid, state = tx.execute(_FIND, {"p_provider": sms.provider,
                                        "p_pid": sms.provider_id}).one()
        event_in(tx, mid, "redelivered", raw=sms.raw, at=self.clock())
        return Accepted(mid, False, _replies(tx, mid), state == "handled")

    async def accept(self, sms: InboundSms) -> Accepted:
        return await self.db.run(lambda tx: self.accept_in(tx, sms))

    async def mark_handled(self, message_id: int) -> tuple[int, ...]:
        """The handler is done: later redeliveries get these replies. The reply ids."""
        def body(tx: Tx) -> tuple[int, ...]:
            advance_in(tx, message_id, "handled", self.clock())
            return _replies(tx, message_id)

        return await self.db.run(body)

    async def handle(self, sms: InboundSms, reply: ReplyHandler) -> Accepted:
        acc = await self.accept(sms)
        if acc.handled:
            return acc
        msg = await self.db.run(lambda tx: get_in(tx, acc.message_id), write=False)
        assert msg is not None
        await reply(msg)
        return Accepted(acc.message_id, acc.first_time, await self.mark_handled(acc.message_id),
                        True)
