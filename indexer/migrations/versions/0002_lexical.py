"""Collections gain their lexical spec (analyser and default fusion) as JSON.

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
    # Existing collections get "{}", which reads back as the defaults (English, the default fusion). A plain
    # ADD COLUMN, not a batch copy: recreating the table on SQLite would lose its AUTOINCREMENT,
    # and a dropped collection's id could come back.
    op.add_column(
        "collections", sa.Column("lexical", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
    )


def downgrade() -> None:
    op.drop_column("collections", "lexical")
