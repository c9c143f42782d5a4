"""Text messages, their events and the opt-out list (ivr/messaging/ reads and writes them).

``messages`` holds every text in both directions. Outbound ones are stored before they are
sent (the ``sms.send`` job sends them); inbound ones are stored once under
(provider, provider_id), which is also how a status callback finds its message. A message's
``state`` only moves forward in :data:`STATE_RANK`; every send attempt and every status
callback is kept as its own row in ``message_events``, so nothing a provider said is lost
even when it no longer moves the state.

``opt_outs`` has one row per number that said STOP (or that the provider reports as opted
out, error 21610); opting in again deletes the row, and the audit log keeps the history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ivr.storage.models import Base, BigId, utcnow

DIRECTIONS = ("out", "in")
# out: queued -> sending -> sent -> delivered | undelivered | failed; refused: never sent
# (the number had opted out when it was due). in: received -> handled (its replies queued).
OUT_STATES = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "refused")
IN_STATES = ("received", "handled")
MESSAGE_STATES = OUT_STATES + IN_STATES
# A state is replaced only by one of a higher rank: a late "sent" never overwrites
# "delivered", and the first final state stays (a provider that says "delivered" and then
# "undelivered" for one message is recorded in message_events, not believed twice).
STATE_RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "undelivered": 3,
              "failed": 3, "refused": 3, "received": 0, "handled": 1}
FINAL_STATES = frozenset(s for s, rank in STATE_RANK.items() if rank == 3)
OPT_OUT_SOURCES = ("keyword", "free_text", "provider", "operator")


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(f"direction IN {DIRECTIONS}", name="ck_messages_direction"),
        CheckConstraint(f"state IN {MESSAGE_STATES}", name="ck_messages_state"),
        UniqueConstraint("provider", "provider_id", name="uq_messages_provider_id"),
        Index("ix_messages_to_created", "to_number", "created_at"),
        Index("ix_messages_from_created", "from_number", "created_at"),
        Index("ix_messages_account_kind", "account_id", "kind", "created_at"),
        Index("ix_messages_in_reply_to", "in_reply_to"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))
    channel: Mapped[str] = mapped_column(String(8), default="sms")
    to_number: Mapped[str] = mapped_column(String(16))  # E.164
    from_number: Mapped[str] = mapped_column(String(16))  # E.164 (or a short code)
    body: Mapped[str] = mapped_column(Text)
    segments: Mapped[int] = mapped_column(Integer, default=1)
    encoding: Mapped[str] = mapped_column(String(8), default="GSM-7")
    state: Mapped[str] = mapped_column(String(12))
    # The transport that sent it (outbound) or delivered it (inbound), and its id there.
    provider: Mapped[str | None] = mapped_column(String(32))
    provider_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(24))  # receipt, notice, reply, help, inbound...
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    statement_id: Mapped[int | None] = mapped_column(ForeignKey("statements.id"))
    in_reply_to: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_text: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class MessageEvent(Base):
    """One thing that happened to a message: a send attempt, its outcome, a status
    callback (duplicates and late ones included), an opt-out it caused."""

    __tablename__ = "message_events"
    __table_args__ = (Index("ix_message_events_message", "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(24))
    provider_code: Mapped[str | None] = mapped_column(String(32))
    raw: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OptOut(Base):
    __tablename__ = "opt_outs"
    __table_args__ = (
        CheckConstraint(f"source IN {OPT_OUT_SOURCES}", name="ck_opt_outs_source"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(16), unique=True)  # E.164
    opted_out_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    source: Mapped[str] = mapped_column(String(12))
    # The inbound message that asked (a STOP), or the outbound one the provider refused.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
