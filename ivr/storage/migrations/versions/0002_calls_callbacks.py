"""calls and callbacks: the phone side's call records and promised callbacks

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Same as models.BigId: SQLite only auto-increments INTEGER PRIMARY KEY.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("id", ID, nullable=False),
        sa.Column("uniqueid", sa.String(length=64), nullable=False),
        sa.Column("ani", sa.String(length=32), nullable=True),
        sa.Column("attestation", sa.String(length=2), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("verified_how", sa.String(length=8), nullable=False),
        sa.Column("account_id", ID, nullable=True),
        sa.Column("path", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("payment_id", ID, nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Integer(), nullable=True),
        sa.CheckConstraint("verified_how IN ('none', 'ani', 'zip', 'pin')",
                           name="ck_calls_verified_how"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.create_index("ix_calls_started", ["started_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_uniqueid"), ["uniqueid"], unique=False)
        batch_op.create_index(batch_op.f("ix_calls_account_id"), ["account_id"], unique=False)

    op.create_table(
        "callbacks",
        sa.Column("id", ID, nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("account_id", ID, nullable=True),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("call_uniqueid", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'placing', 'placed', 'failed', 'cancelled')",
            name="ck_callbacks_status"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index("ix_callbacks_status_due", ["status", "due_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_callbacks_status_due")
    op.drop_table("callbacks")
    with op.batch_alter_table("calls", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calls_account_id"))
        batch_op.drop_index(batch_op.f("ix_calls_uniqueid"))
        batch_op.drop_index("ix_calls_started")
    op.drop_table("calls")
