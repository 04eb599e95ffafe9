"""import_jobs, dispatch_training_jobs: claimed by a worker, with a heartbeat, resumed after a crash

Revision ID: c9d0c0de0018
Revises: b8c9c0de0017
Create Date: 2026-12-07 16:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import xihu.core.db

revision: str = "c9d0c0de0018"
down_revision: str | None = "b8c9c0de0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("import_jobs", "dispatch_training_jobs")
# what the models page showed as failed before workers resumed jobs (its JOB_STALE_AFTER)
STALE_BEFORE = timedelta(minutes=15)


def upgrade() -> None:
    """Add claimed_by, heartbeat_at and attempts. Unfinished jobs have no heartbeat, so workers resume them;
    except retraining runs older than 15 minutes, which the page already showed as failed: they are marked
    failed, not started days after the admin was told to start again."""
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("claimed_by", sa.String(length=64), nullable=False, server_default=""))
            batch.add_column(
                sa.Column("heartbeat_at", xihu.core.db.UTCDateTime(timezone=True), nullable=True)
            )
            batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        with op.batch_alter_table(
            table
        ) as batch:  # the defaults only filled existing rows; the ORM sets them
            batch.alter_column("claimed_by", server_default=None)
            batch.alter_column("attempts", server_default=None)
    jobs = sa.table(
        "dispatch_training_jobs",
        sa.column("status", sa.String()),
        sa.column("error", sa.String()),
        sa.column("created_at", xihu.core.db.UTCDateTime()),
        sa.column("finished_at", xihu.core.db.UTCDateTime()),
    )
    now = datetime.now(UTC)
    op.execute(
        jobs.update()
        .where(jobs.c.status.in_(("queued", "running")), jobs.c.created_at < now - STALE_BEFORE)
        .values(status="failed", error="训练中断（服务重启或进程退出），请重新发起", finished_at=now)
    )


def downgrade() -> None:
    """Drop the claim columns."""
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("attempts")
            batch.drop_column("heartbeat_at")
            batch.drop_column("claimed_by")
