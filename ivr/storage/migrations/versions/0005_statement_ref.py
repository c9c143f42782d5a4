"""statements.statement_ref: the billing system's statement id, unique, so a statements
feed imported twice (or resent) adds nothing the second time

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("statements", sa.Column("statement_ref", sa.String(length=64),
                                          nullable=True))
    # Statements opened by the accounts import have none; NULLs never collide.
    op.create_index("uq_statements_statement_ref", "statements", ["statement_ref"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_statements_statement_ref", "statements")
    with op.batch_alter_table("statements", schema=None) as batch_op:
        batch_op.drop_column("statement_ref")
