"""``collections.metadata_version``: counts metadata-only updates, which write no change-log
entry, so that (``last_sequence``, ``metadata_version``) changes whenever the documents a filter
matches may have changed. Searchers key their cache of filtered chunk ids on it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("metadata_version", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("metadata_version")
