"""Collections gain their lexical spec fields: the analyser and the default fusion.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs with constant defaults (existing collections: English, convex at 0.3), not a
    # batch copy: recreating the table on SQLite would lose its AUTOINCREMENT.
    op.add_column("collections", sa.Column("lexical_analyzer", sa.String(16), nullable=False, server_default="english"))
    op.add_column("collections", sa.Column("fusion", sa.String(16), nullable=False, server_default="convex"))
    op.add_column("collections", sa.Column("rrf_k", sa.Integer(), nullable=False, server_default="60"))
    op.add_column("collections", sa.Column("dense_weight", sa.Float(), nullable=False, server_default="0.3"))


def downgrade() -> None:
    for column in ("dense_weight", "rrf_k", "fusion", "lexical_analyzer"):
        op.drop_column("collections", column)
