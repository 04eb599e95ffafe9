"""dispatch_decisions: the rule that named the unit, and a time index (the 权责清单 page counts each rule's
last 30 days of decisions)

Revision ID: e1f2c0de0020
Revises: d0e1c0de0019
Create Date: 2026-12-08 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e1f2c0de0020"
down_revision: str | None = "d0e1c0de0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add rule_id (earlier decisions did not record their rule: it stays empty) and index created_at."""
    with op.batch_alter_table("dispatch_decisions") as batch:
        batch.add_column(sa.Column("rule_id", sa.Integer(), nullable=True))
        batch.create_index("ix_dispatch_decisions_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    """Drop the index and the column."""
    with op.batch_alter_table("dispatch_decisions") as batch:
        batch.drop_index("ix_dispatch_decisions_created_at")
        batch.drop_column("rule_id")
