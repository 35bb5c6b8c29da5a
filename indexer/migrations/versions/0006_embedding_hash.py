"""What a document's vectors are made of, apart from its metadata: ``documents.embedding_hash``
(``Document.embedding_hash``), so an upsert that changes only the metadata keeps the vectors.

Existing rows get NULL rather than a backfill: the stored vector of a collection without a model
is normalised (and maybe float16), so its hash cannot be recomputed, and hashing every row would
hold up the first start of a large store. A NULL is never equal to a new version's hash, so such
a document is re-embedded on its first change, as before, and has a hash from then on.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.add_column(sa.Column("embedding_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch:
        batch.drop_column("embedding_hash")
