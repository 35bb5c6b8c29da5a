"""documents.unknown_share: how much of a document its model could not read (indexer.vocabulary).

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
    # Documents written before this revision were never measured: 0, "readable", until re-embedded.
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("unknown_share", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("unknown_share")
