"""analysis rollup queue: appeals whose rollups the workers update (XIHU_DEFER_TO_WORKERS)

Revision ID: f9a1c0de0009
Revises: e8a1c0de0008
Create Date: 2026-11-22 00:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import xihu.core.db

revision: str = "f9a1c0de0009"
down_revision: str | None = "e8a1c0de0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "analysis_rollup_queue",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("appeal_id", sa.Integer(), nullable=False),
        sa.Column("queued_at", xihu.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_rollup_queue")),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("analysis_rollup_queue")
