"""analysis month rollups: each day rollup's twin by calendar month, and a day x community rollup

All are filled from the existing day rows (the community one from the area rollup), so no recount is needed.

Revision ID: a1b2c0de0010
Revises: f9a1c0de0009
Create Date: 2026-11-22 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a1b2c0de0010"
down_revision: str | None = "f9a1c0de0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MEASURES = (
    "received",
    "open",
    "completed",
    "complete_due",
    "completed_on_time",
    "sign_due",
    "signed_on_time",
    "rated",
    "satisfied",
    "unsatisfied",
)
# month table -> (day table, key columns after the date, indexes as (name, columns))
TABLES: dict[str, tuple[str, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]] = {
    "analysis_rollup_district_month": ("analysis_rollup_district", ("category", "channel"), ()),
    "analysis_rollup_area_month": (
        "analysis_rollup_area",
        ("category", "street_id", "community_id", "channel"),
        (
            ("ix_analysis_rollup_area_month_community_month", ("community_id", "month")),
            ("ix_analysis_rollup_area_month_street_month", ("street_id", "month")),
        ),
    ),
    "analysis_rollup_street_month": (
        "analysis_rollup_street",
        ("category", "street_id", "channel"),
        (("ix_analysis_rollup_street_month_street_month", ("street_id", "month")),),
    ),
    "analysis_rollup_street_total_month": ("analysis_rollup_street_day", ("street_id",), ()),
    "analysis_rollup_community_total_month": (
        "analysis_rollup_community_day",
        ("street_id", "community_id"),
        (),
    ),
    "analysis_rollup_unit_month": (
        "analysis_rollup_unit",
        ("unit_id", "category"),
        (("ix_analysis_rollup_unit_month_unit_month", ("unit_id", "month")),),
    ),
}


def _key_column(name: str) -> sa.Column:  # type: ignore[type-arg]
    if name == "category":
        return sa.Column(name, sa.String(length=32), nullable=False)
    if name == "channel":
        return sa.Column(name, sa.String(length=16), nullable=False)
    return sa.Column(name, sa.Integer(), nullable=False)


def _sums() -> str:
    return ", ".join(f"SUM({m})" for m in MEASURES)


def _community_day() -> None:
    """Day x community counts: the area rollup's rows summed over category and channel."""
    op.create_table(
        "analysis_rollup_community_day",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("street_id", sa.Integer(), nullable=False),
        sa.Column("community_id", sa.Integer(), nullable=False),
        *[sa.Column(m, sa.Integer(), nullable=False) for m in MEASURES],
        sa.PrimaryKeyConstraint(
            "day", "street_id", "community_id", name=op.f("pk_analysis_rollup_community_day")
        ),
    )
    with op.batch_alter_table("analysis_rollup_community_day", schema=None) as batch_op:
        batch_op.create_index(
            "ix_analysis_rollup_community_day_community_day", ["community_id", "day"], unique=False
        )
    op.execute(
        f"INSERT INTO analysis_rollup_community_day (day, street_id, community_id, {', '.join(MEASURES)}) "
        f"SELECT day, street_id, community_id, {_sums()} FROM analysis_rollup_area "
        "GROUP BY day, street_id, community_id ORDER BY day"
    )


def upgrade() -> None:
    """Apply this revision."""
    _community_day()
    postgres = op.get_bind().dialect.name == "postgresql"
    month = "CAST(date_trunc('month', day) AS date)" if postgres else "date(day, 'start of month')"
    for table, (day_table, keys, indexes) in TABLES.items():
        op.create_table(
            table,
            sa.Column("month", sa.Date(), nullable=False),
            *[_key_column(k) for k in keys],
            *[sa.Column(m, sa.Integer(), nullable=False) for m in MEASURES],
            sa.PrimaryKeyConstraint("month", *keys, name=op.f(f"pk_{table}")),
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, cols in indexes:
                batch_op.create_index(name, list(cols), unique=False)
        # Existing day rows are summed into months once; from now on the upkeep writes both.
        cols = ", ".join(keys)
        op.execute(
            f"INSERT INTO {table} (month, {cols}, {', '.join(MEASURES)}) "
            f"SELECT {month}, {cols}, {_sums()} FROM {day_table} GROUP BY {month}, {cols}"
        )


def downgrade() -> None:
    """Revert this revision."""
    for table, (_, _, indexes) in reversed(TABLES.items()):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in indexes:
                batch_op.drop_index(name)
        op.drop_table(table)
    with op.batch_alter_table("analysis_rollup_community_day", schema=None) as batch_op:
        batch_op.drop_index("ix_analysis_rollup_community_day_community_day")
    op.drop_table("analysis_rollup_community_day")
