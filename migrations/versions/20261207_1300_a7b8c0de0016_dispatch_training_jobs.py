"""dispatch_training_jobs: retraining runs in the background, with their state

Revision ID: a7b8c0de0016
Revises: f6a7c0de0015
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import xihu.core.db

revision: str = "a7b8c0de0016"
down_revision: str | None = "f6a7c0de0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create dispatch_training_jobs."""
    op.create_table(
        "dispatch_training_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", xihu.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", xihu.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.String(length=40), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["users.id"], name=op.f("fk_dispatch_training_jobs_created_by_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_training_jobs")),
    )


def downgrade() -> None:
    """Drop dispatch_training_jobs."""
    op.drop_table("dispatch_training_jobs")
