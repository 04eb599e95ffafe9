"""appeals: a unit's and an area's appeals newest first (lead unit, street, community; with created_at, id)

A scoped list (a unit's inbox, a street's) reads each way into the scope in its own index's order and stops
at the page; a unit's co-handled appeals are found by (unit_id, role). The new indexes replace the
single-column ones on street_id, community_id and appeal_units.unit_id, whose lookups they also serve.

Revision ID: d4e5c0de0013
Revises: c3d4c0de0012
Create Date: 2026-12-07 01:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d4e5c0de0013"
down_revision: str | None = "c3d4c0de0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the scope indexes; drop the single-column ones they replace."""
    op.create_index("ix_appeals_lead_created", "appeals", ["lead_unit_id", "created_at", "id"])
    op.create_index("ix_appeals_street_created", "appeals", ["street_id", "created_at", "id"])
    op.create_index("ix_appeals_community_created", "appeals", ["community_id", "created_at", "id"])
    op.drop_index("ix_appeals_street_id", table_name="appeals")
    op.drop_index("ix_appeals_community_id", table_name="appeals")
    op.create_index("ix_appeal_units_unit_role", "appeal_units", ["unit_id", "role"])
    op.drop_index("ix_appeal_units_unit_id", table_name="appeal_units")


def downgrade() -> None:
    """Back to the single-column unit, street and community indexes."""
    op.create_index("ix_appeal_units_unit_id", "appeal_units", ["unit_id"])
    op.drop_index("ix_appeal_units_unit_role", table_name="appeal_units")
    op.create_index("ix_appeals_street_id", "appeals", ["street_id"])
    op.create_index("ix_appeals_community_id", "appeals", ["community_id"])
    op.drop_index("ix_appeals_community_created", table_name="appeals")
    op.drop_index("ix_appeals_street_created", table_name="appeals")
    op.drop_index("ix_appeals_lead_created", table_name="appeals")
