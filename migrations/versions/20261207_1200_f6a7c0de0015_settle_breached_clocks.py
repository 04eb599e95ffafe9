"""deadlines: settle breached clocks whose step has since been done or is no longer owed

A breached clock now stays pending (lists show it overdue) until its step is met or the clock is cancelled,
and `sla.meet` / `sla.cancel_all` stamp breached clocks too. Clocks breached before this change were never
stamped, so they would all read as overdue: those whose appeal has moved past the step, or that a later clock
of the same kind replaced (returned and dispatched again), are marked cancelled. When the step was done was
not recorded, so the breach time stands in for it; met_at stays empty rather than invented.

Revision ID: f6a7c0de0015
Revises: e5f6c0de0014
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f6a7c0de0015"
down_revision: str | None = "e5f6c0de0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# states in which each clock's step is still owed
_OWED = {
    "sign": ("dispatched",),
    "handle": ("dispatched", "signed"),
    "complete": ("dispatched", "signed", "handling"),
}


def _owed(kind: str, states: tuple[str, ...]) -> str:
    return f"(deadlines.kind = '{kind}' AND a.state IN ({', '.join(repr(s) for s in states)}))"


# a module constant, so that tests run the very statement on both backends
SETTLE = (
    "UPDATE deadlines SET cancelled_at = breached_at"
    " WHERE breached_at IS NOT NULL AND met_at IS NULL AND cancelled_at IS NULL AND ("
    " EXISTS (SELECT 1 FROM deadlines later WHERE later.appeal_id = deadlines.appeal_id"
    " AND later.kind = deadlines.kind AND later.id > deadlines.id)"
    " OR NOT EXISTS (SELECT 1 FROM appeals a WHERE a.id = deadlines.appeal_id AND ("
    + " OR ".join(_owed(kind, states) for kind, states in _OWED.items())
    + ")))"
)


def upgrade() -> None:
    """Mark settled breached clocks cancelled."""
    op.execute(sa.text(SETTLE))


def downgrade() -> None:
    """Nothing to undo: the older code never reads cancelled_at of a breached clock."""
