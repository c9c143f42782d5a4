"""The data model. Money is BigInteger minor units beside an ISO 4217 currency, never floats.

Card data: only a processor token, brand, last four digits and expiry are ever stored (PCI DSS
3.3.1/3.4.1). Every string column of :class:`PaymentMethod` is checked for anything that looks
like a card number and refused, so a mistake upstream cannot put a PAN into the database.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")

PAYMENT_STATES = ("pending", "approved", "declined", "failed", "unknown", "refunded")
CHANNELS = ("ivr", "sms", "agent")
STATEMENT_STATES = ("open", "paid", "closed")

# 13-19 digits, optionally split by spaces or dashes: the shape of a primary account number.
_PAN_LIKE = re.compile(r"(?:\d[ -]?){12,18}\d")


class CardDataRefused(ValueError):
    """Something that looks like a card number was offered to the model."""


def looks_like_pan(value: str | None) -> bool:
    return bool(value) and _PAN_LIKE.search(value) is not None  # type: ignore[arg-type]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


account_phones = Table(
    "account_phones", Base.metadata,
    Column("account_id", ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    Column("phone_id", ForeignKey("phone_numbers.id", ondelete="CASCADE"), primary_key=True),
)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("failed_attempts >= 0", name="ck_accounts_failed_attempts"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_number: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(8), default="en")
    time_zone: Mapped[str] = mapped_column(String(64), default="America/New_York")
    zip_code: Mapped[str] = mapped_column(String(10))
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    # The balance moves only in the transaction that settles the payment moving it.
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    sms_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    sms_opt_in_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)

    phones: Mapped[list[PhoneNumber]] = relationship(
        secondary=account_phones, back_populates="accounts")
    statements: Mapped[list[Statement]] = relationship(back_populates="account",
                                                       order_by="Statement.due_date")
    payment_methods: Mapped[list[PaymentMethod]] = relationship(back_populates="account")


class PhoneNumber(Base):
    __tablename__ = "phone_numbers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    e164: Mapped[str] = mapped_column(String(16), unique=True)
    accounts: Mapped[list[Account]] = relationship(
        secondary=account_phones, back_populates="phones")

    @validates("e164")
    def _check_e164(self, key: str, value: str) -> str:
        if not re.fullmatch(r"\+[1-9]\d{6,14}", value or ""):
            raise ValueError(f"{value!r} is not an E.164 number (like +15551234567)")
        return value


class Statement(Base):
    __tablename__ = "statements"
    __table_args__ = (
        CheckConstraint(f"status IN {STATEMENT_STATES}", name="ck_statements_status"),
        Index("uq_statements_statement_ref", "statement_ref", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            index=True)
    amount_due_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    statement_date: Mapped[date] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="open")
    # The billing system's statement id (the statements feed); None for other statements.
    statement_ref: Mapped[str | None] = mapped_column(String(64))

    account: Mapped[Account] = relationship(back_populates="statements")


class PaymentMethod(Base):
    __tablename__ = "payment_methods"
    __table_args__ = (
        CheckConstraint("exp_month BETWEEN 1 AND 12", name="ck_pm_exp_month"),
        CheckConstraint("length(last4) = 4", name="ck_pm_last4"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"),
                                            index=True)
    processor: Mapped[str] = mapped_column(String(20), default="sandbox")
    # The processor's token for the card (Stripe: pm_...); the customer id it belongs to.
    token: Mapped[str] = mapped_column(String(255))
    processor_customer: Mapped[str | None] = mapped_column(String(255))
    brand: Mapped[str] = mapped_column(String(20))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int] = mapped_column(Integer)
    exp_year: Mapped[int] = mapped_column(Integer)
    is_default: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    account: Mapped[Account] = relationship(back_populates="payment_methods")

    @validates("token", "processor_customer", "brand", "processor")
    def _no_pan(self, key: str, value: str | None) -> str | None:
        if looks_like_pan(value):
            raise CardDataRefused(f"payment_methods.{key} looks like a card number; store "
                                  "the processor's token, never the card number")
        return value

    @validates("last4")
    def _check_last4(self, key: str, value: str) -> str:
        if not re.fullmatch(r"\d{4}", value or ""):
            raise CardDataRefused("last4 must be exactly the last four digits of the card")
        return value

    def expired(self, today: date) -> bool:
        """A card is good through the last day of its expiry month."""
        return (self.exp_year, self.exp_month) < (today.year, today.month)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="ck_payments_amount_positive"),
        CheckConstraint(f"state IN {PAYMENT_STATES}", name="ck_payments_state"),
        CheckConstraint(f"channel IN {CHANNELS}", name="ck_payments_channel"),
        Index("ix_payments_state_updated", "state", "updated_at"),
        Index("ix_payments_account_created", "account_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    state: Mapped[str] = mapped_column(String(10), default="pending")
    # Ours, unique forever: the processor may forget keys after a day, we never do.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    gateway: Mapped[str] = mapped_column(String(20))
    processor_reference: Mapped[str | None] = mapped_column(String(255))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    decline_reason: Mapped[str | None] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(10))
    source_id: Mapped[str | None] = mapped_column(String(128))  # call uniqueid or message id
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)


class AuditEntry(Base):
    """Append-only: the ORM refuses updates and deletes, and database triggers do too."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(64))  # "ivr", "sms", "agent:alice", "cli"
    action: Mapped[str] = mapped_column(String(64))  # "payment.approved", "verify.locked"
    subject: Mapped[str | None] = mapped_column(String(64))  # "account:12", "payment:7"
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class AuditLogIsAppendOnly(RuntimeError):
    pass


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _refuse_audit_change(mapper: Any, connection: Any, target: AuditEntry) -> None:
    raise AuditLogIsAppendOnly("audit_log is append-only")


@event.listens_for(PaymentMethod, "before_insert")
@event.listens_for(PaymentMethod, "before_update")
def _recheck_card(mapper: Any, connection: Any, target: PaymentMethod) -> None:
    # Validators run on attribute set; this also covers constructor kwargs bypassed by
    # bulk paths or set before validation was attached.
    for key in ("token", "processor_customer", "brand", "processor"):
        if looks_like_pan(getattr(target, key)):
            raise CardDataRefused(f"payment_methods.{key} looks like a card number")
