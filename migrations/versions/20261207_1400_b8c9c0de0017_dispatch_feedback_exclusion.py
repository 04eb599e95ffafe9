"""dispatch_feedback: an admin may exclude a wrong correction from training

Revision ID: b8c9c0de0017
Revises: a7b8c0de0016
Create Date: 2026-12-07 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import xihu.core.db

revision: str = "b8c9c0de0017"
down_revision: str | None = "a7b8c0de0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add excluded_at, excluded_by and excluded_reason to dispatch_feedback (existing rows: not excluded)."""
    with op.batch_alter_table("dispatch_feedback") as batch:
        batch.add_column(sa.Column("excluded_at", xihu.core.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("excluded_by", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("excluded_reason", sa.String(length=200), nullable=True))


def downgrade() -> None:
    """Drop the exclusion columns."""
    with op.batch_alter_table("dispatch_feedback") as batch:
        batch.drop_column("excluded_reason")
        batch.drop_column("excluded_by")
        batch.drop_column("excluded_at")
