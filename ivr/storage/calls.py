"""Tables of the phone side: one row per call, and callbacks promised to callers.

Kept apart from models.py (accounts and money) but on the same declarative Base, so one
metadata and one migration history cover both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.storage.models import Base, BigId, utcnow

VERIFIED_HOW = ("none", "ani", "zip", "pin")
CALLBACK_STATES = ("pending", "placing", "placed", "failed", "cancelled")


class CallRecord(Base):
    """Every call: who, how they were verified, where they went, how it ended.

    No keypad input is stored here (the path holds step names and menu keys only).
    """

    __tablename__ = "calls"
    __table_args__ = (
        CheckConstraint(f"verified_how IN {VERIFIED_HOW}", name="ck_calls_verified_how"),
        Index("ix_calls_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Not unique: Asterisk may run the AGI twice on one channel (a retry after a failure).
    uniqueid: Mapped[str] = mapped_column(String(64), index=True)
    ani: Mapped[str | None] = mapped_column(String(32))  # E.164, or None when withheld
    attestation: Mapped[str | None] = mapped_column(String(2))
    language: Mapped[str] = mapped_column(String(8), default="en")
    verified_how: Mapped[str] = mapped_column(String(8), default="none")
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    path: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[str | None] = mapped_column(String(32))
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_s: Mapped[int | None] = mapped_column(Integer)


class Callback(Base):
    """A call we promised to place, at ``due_at`` (the next opening) or later."""

    __tablename__ = "callbacks"
    __table_args__ = (
        CheckConstraint(f"status IN {CALLBACK_STATES}", name="ck_callbacks_status"),
        Index("ix_callbacks_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(16))  # E.164
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    language: Mapped[str] = mapped_column(String(8), default="en")
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    call_uniqueid: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
