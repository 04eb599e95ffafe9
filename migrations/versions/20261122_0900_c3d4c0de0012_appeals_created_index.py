"""appeals: an index in the lists' order (newest first), so that a page of a large inbox reads 20 rows

Without it, a unit with tens of thousands of open appeals had every one of them fetched and sorted to show
the newest twenty (about 17 ms of PostgreSQL per inbox view at 15,000 open appeals).

Revision ID: c3d4c0de0012
Revises: b2c3c0de0011
Create Date: 2026-11-22 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c3d4c0de0012"
down_revision: str | None = "b2c3c0de0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ix_appeals_created_id."""
    op.create_index("ix_appeals_created_id", "appeals", ["created_at", "id"])


def downgrade() -> None:
    """Drop ix_appeals_created_id."""
    op.drop_index("ix_appeals_created_id", table_name="appeals")
