"""The refunds table: money given back on an approved payment, one row per request.

A refund is stored ``pending`` with its idempotency key and committed before the gateway is
asked (ivr.services.refunds), so a crash or a timeout leaves a row the reconciler settles;
the key is what makes the gateway refund once however often the request is repeated.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from ivr.storage.models import Base, BigId, utcnow

REFUND_STATES = ("pending", "succeeded", "failed", "unknown")
# States whose amount counts against what is left to refund (it may still go through).
REFUND_HOLDING_STATES = ("pending", "succeeded", "unknown")


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_refunds_amount_positive"),
        CheckConstraint(f"state IN {REFUND_STATES}", name="ck_refunds_state"),
        Index("ix_refunds_state_updated", "state", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(10), default="pending")
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    processor_reference: Mapped[str | None] = mapped_column(String(255))
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    actor: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
