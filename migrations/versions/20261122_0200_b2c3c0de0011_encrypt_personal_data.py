"""encrypt appeals' citizen name and phone at rest (AES-GCM, core.crypto); drop the phone index

Revision ID: b2c3c0de0011
Revises: a1b2c0de0010
Create Date: 2026-11-22 02:00:00

The columns are widened to hold the ciphertext, and every existing row is encrypted in batches with the
current key (XIHU_PII_KEY, or the demo key in the data directory). No query filters on the phone, and a
ciphertext cannot be looked up by equality anyway, so its index goes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from xihu.core import crypto

revision: str = "b2c3c0de0011"
down_revision: str | None = "a1b2c0de0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["citizen_name", "citizen_phone"]
# the raw stored text, without the ORM's decrypting type
appeals = sa.table("appeals", sa.column("id", sa.Integer), *[sa.column(c, sa.String) for c in COLUMNS])


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("appeals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_appeals_citizen_phone"))
        batch_op.alter_column(
            "citizen_name",
            existing_type=sa.String(length=32),
            type_=sa.String(length=255),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "citizen_phone",
            existing_type=sa.String(length=20),
            type_=sa.String(length=255),
            existing_nullable=True,
        )
    # the key is asked for at the first row to encrypt: a new, empty database needs none to be set up
    crypto.rewrite_columns(
        op.get_bind(),
        appeals,
        COLUMNS,
        lambda value, context: (
            None if crypto.is_encrypted(value) else crypto.active().encrypt(value, context)
        ),
    )


def downgrade() -> None:
    """Revert this revision (decrypts every row: needs the keys that encrypted them)."""
    ring = crypto.active()
    crypto.rewrite_columns(
        op.get_bind(),
        appeals,
        COLUMNS,
        lambda value, context: ring.decrypt(value, context) if crypto.is_encrypted(value) else None,
    )
    with op.batch_alter_table("appeals", schema=None) as batch_op:
        batch_op.alter_column(
            "citizen_phone",
            existing_type=sa.String(length=255),
            type_=sa.String(length=20),
            existing_nullable=True,
        )
        batch_op.alter_column(
            "citizen_name",
            existing_type=sa.String(length=255),
            type_=sa.String(length=32),
            existing_nullable=True,
        )
        batch_op.create_index(batch_op.f("ix_appeals_citizen_phone"), ["citizen_phone"], unique=False)
