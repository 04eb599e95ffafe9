"""routing tasks: appeals acknowledged before routing (XIHU_DEFER_TO_WORKERS)

Revision ID: e8a1c0de0008
Revises: d7a1c0de0007
Create Date: 2026-11-21 23:43:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import xihu.core.db

revision: str = "e8a1c0de0008"
down_revision: str | None = "d7a1c0de0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "routing_tasks",
        sa.Column("appeal_id", sa.Integer(), nullable=False),
        sa.Column("queued_at", xihu.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(["appeal_id"], ["appeals.id"], name=op.f("fk_routing_tasks_appeal_id_appeals")),
        sa.PrimaryKeyConstraint("appeal_id", name=op.f("pk_routing_tasks")),
    )
    with op.batch_alter_table("routing_tasks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_routing_tasks_queued_at"), ["queued_at"], unique=False)


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("routing_tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_routing_tasks_queued_at"))
    op.drop_table("routing_tasks")
