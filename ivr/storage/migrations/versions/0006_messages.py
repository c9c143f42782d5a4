"""messages, message_events, opt_outs: the SMS outbox and inbox, every status callback as
its own event, and the numbers that said STOP

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Same as models.BigId: SQLite only auto-increments INTEGER PRIMARY KEY.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

STATES = ("('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'refused', "
          "'received', 'handled')")


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", ID, nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("to_number", sa.String(length=16), nullable=False),
        sa.Column("from_number", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_id", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("account_id", ID, nullable=True),
        sa.Column("payment_id", ID, nullable=True),
        sa.Column("statement_id", ID, nullable=True),
        sa.Column("in_reply_to", ID, nullable=True),
        sa.Column("dedupe_key", sa.String(length=200), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_text", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("direction IN ('out', 'in')", name="ck_messages_direction"),
        sa.CheckConstraint(f"state IN {STATES}", name="ck_messages_state"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"]),
        sa.ForeignKeyConstraint(["payment_id"], ["payments.id"]),
        sa.ForeignKeyConstraint(["statement_id"], ["statements.id"]),
        sa.ForeignKeyConstraint(["in_reply_to"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key"),
        sa.UniqueConstraint("provider", "provider_id", name="uq_messages_provider_id"),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_to_created", ["to_number", "created_at"])
        batch_op.create_index("ix_messages_from_created", ["from_number", "created_at"])
        batch_op.create_index("ix_messages_account_kind",
                              ["account_id", "kind", "created_at"])
        batch_op.create_index("ix_messages_in_reply_to", ["in_reply_to"])
    op.create_table(
        "message_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("provider_code", sa.String(length=32), nullable=True),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.create_index("ix_message_events_message", ["message_id", "id"])
    op.create_table(
        "opt_outs",
        sa.Column("id", ID, nullable=False),
        sa.Column("number", sa.String(length=16), nullable=False),
        sa.Column("opted_out_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=12), nullable=False),
        sa.Column("message_id", ID, nullable=True),
        sa.CheckConstraint("source IN ('keyword', 'free_text', 'provider', 'operator')",
                           name="ck_opt_outs_source"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("number"),
    )


def downgrade() -> None:
    op.drop_table("opt_outs")
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.drop_index("ix_message_events_message")
    op.drop_table("message_events")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        for name in ("ix_messages_in_reply_to", "ix_messages_account_kind",
                     "ix_messages_from_created", "ix_messages_to_created"):
            batch_op.drop_index(name)
    op.drop_table("messages")
