"""What ingestion learns beyond vectors: how much of a document its model could not read
(``documents.unknown_share``, indexer.vocabulary) and the classifier that labels a collection's
documents (``collections.classifier`` and its revision and field names, indexer.classifier).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_CLASSIFIER_COLUMNS = (
    ("classifier", sa.Text(), ""),
    ("classifier_revision", sa.String(128), ""),
    ("label_field", sa.String(128), "label"),
    ("score_field", sa.String(128), "label_score"),
)


def upgrade() -> None:
    # Documents written before this revision were never measured: 0, "readable", until re-embedded.
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("unknown_share", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("collections") as batch:
        for name, column_type, default in _CLASSIFIER_COLUMNS:
            batch.add_column(sa.Column(name, column_type, nullable=False, server_default=default))


def downgrade() -> None:
    with op.batch_alter_table("collections") as batch:
        for name, _, _ in _CLASSIFIER_COLUMNS:
            batch.drop_column(name)
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("unknown_share")
