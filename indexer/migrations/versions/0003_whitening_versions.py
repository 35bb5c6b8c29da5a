"""Whitening refits: a version per fitted map and the sample size it was fitted on.

Vectors of whitening collections are now stored unwhitened and whitened at index time
(``indexer.whitening``). A collection that whitened before this revision holds vectors already
whitened by its map, which stays as version 0 (never applied again): its queries are no longer
whitened to match, so such a collection must be re-ingested (docs/OPERATIONS.md, "Whitening").

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.add_column(sa.Column("whitening_version", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("whitening_fitted_on", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        batch.drop_column("whitening_fitted_on")
        batch.drop_column("whitening_version")
