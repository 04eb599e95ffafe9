"""import_row_errors: an import's failed rows in rows of their own, not one ever longer JSON list

Revision ID: d0e1c0de0019
Revises: c9d0c0de0018
Create Date: 2026-12-08 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d0e1c0de0019"
down_revision: str | None = "c9d0c0de0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Move every job's listed errors into the new table import_row_errors and drop import_jobs.errors.

    The column goes first (SQLite rebuilds the table to drop it, which rows referring to it would stop).
    """
    jobs = sa.table("import_jobs", sa.column("id", sa.Integer()), sa.column("errors", sa.JSON()))
    listed = list(op.get_bind().execute(sa.select(jobs.c.id, jobs.c.errors).order_by(jobs.c.id)))
    with op.batch_alter_table("import_jobs") as batch:
        batch.drop_column("errors")
    errors = op.create_table(
        "import_row_errors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("row", sa.Integer(), nullable=True),
        sa.Column("ref", sa.String(length=64), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["import_jobs.id"], name=op.f("fk_import_row_errors_job_id_import_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_row_errors")),
    )
    op.create_index(op.f("ix_import_row_errors_job_id"), "import_row_errors", ["job_id"], unique=False)
    moved = [
        {"job_id": job_id, "row": _row(item.get("row")), "ref": "", "error": str(item.get("error", ""))[:500]}
        for job_id, items in listed
        for item in items or []
        if isinstance(item, dict)
    ]
    if moved:
        op.bulk_insert(errors, moved)


def _row(value: object) -> int | None:
    """A stored line number as an int (the JSON may hold it as text), else None."""
    try:
        return int(value) if value is not None else None  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def downgrade() -> None:
    """Put the errors back into import_jobs.errors as a JSON list, after dropping import_row_errors."""
    errors = sa.table(
        "import_row_errors",
        sa.column("id", sa.Integer()),
        sa.column("job_id", sa.Integer()),
        sa.column("row", sa.Integer()),
        sa.column("error", sa.String()),
    )
    bind = op.get_bind()
    listed: dict[int, list[dict[str, object]]] = {}
    for job_id, row, error in bind.execute(
        sa.select(errors.c.job_id, errors.c.row, errors.c.error).order_by(errors.c.id)
    ):
        listed.setdefault(job_id, []).append({"row": row, "error": error})
    op.drop_index(op.f("ix_import_row_errors_job_id"), table_name="import_row_errors")
    op.drop_table("import_row_errors")
    with op.batch_alter_table("import_jobs") as batch:
        batch.add_column(sa.Column("errors", sa.JSON(), nullable=True))
    jobs = sa.table("import_jobs", sa.column("id", sa.Integer()), sa.column("errors", sa.JSON()))
    bind.execute(jobs.update().values(errors=[]))
    for job_id, items in listed.items():
        bind.execute(jobs.update().where(jobs.c.id == job_id).values(errors=items))
    with op.batch_alter_table("import_jobs") as batch:
        batch.alter_column("errors", existing_type=sa.JSON(), nullable=False)
