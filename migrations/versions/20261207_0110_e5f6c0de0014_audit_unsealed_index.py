"""audit_log: a partial index of the unsealed rows, the sealer's queue

The sealer asks for the oldest unsealed rows (seq IS NULL) by id; without this index PostgreSQL walked the
primary key past every sealed row first (36 ms a round with 150,000 rows under bench/load.py).

Revision ID: e5f6c0de0014
Revises: d4e5c0de0013
Create Date: 2026-12-07 01:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e5f6c0de0014"
down_revision: str | None = "d4e5c0de0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ix_audit_log_unsealed."""
    op.create_index(
        "ix_audit_log_unsealed",
        "audit_log",
        ["id"],
        postgresql_where=sa.text("seq IS NULL"),
        sqlite_where=sa.text("seq IS NULL"),
    )


def downgrade() -> None:
    """Drop ix_audit_log_unsealed."""
    op.drop_index("ix_audit_log_unsealed", table_name="audit_log")
