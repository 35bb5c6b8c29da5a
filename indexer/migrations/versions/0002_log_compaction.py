"""Change-log compaction: the pruned-through floor of each collection and the readers that pin it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("log_floor", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "log_readers",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("reader", sa.String(256), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("seen_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "reader", name="pk_log_readers"),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            ondelete="CASCADE",
            name="fk_log_readers_collection_id_collections",
        ),
    )


def downgrade() -> None:
    op.drop_table("log_readers")
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("log_floor")
