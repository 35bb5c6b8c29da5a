"""Initial schema: collections, documents, chunks (ids never reused), change log.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_METADATA = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("model_revision", sa.String(128), nullable=False),
        sa.Column("tokenizer_hash", sa.String(128), nullable=False),
        sa.Column("pooling", sa.String(16), nullable=False),
        sa.Column("layers", sa.JSON(), nullable=False),
        sa.Column("max_length", sa.Integer(), nullable=False),
        sa.Column("window", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("normalize", sa.Boolean(), nullable=False),
        sa.Column("use_whitening", sa.Boolean(), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("index_spec", sa.String(256), nullable=False),
        sa.Column("vector_dtype", sa.String(16), nullable=False),
        sa.Column("whitening", sa.LargeBinary(), nullable=True),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collections"),
        sa.UniqueConstraint("name", name="uq_collections_name"),
        # A recreated collection must not inherit a dropped one's id (snapshots are keyed by it).
        sqlite_autoincrement=True,
    )
    op.create_table(
        "documents",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(512), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("metadata", _METADATA, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("updated_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_documents"),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name="fk_documents_collection_id_collections",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("collection_id", "external_id", name="uq_documents_collection_id"),
    )
    op.create_index("ix_documents_collection_id", "documents", ["collection_id"])
    op.create_table(
        "chunks",
        sa.Column("id", _ROW_ID, primary_key=True, autoincrement=True),
        sa.Column("document_id", _ROW_ID, nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("start", sa.Integer(), nullable=False),
        sa.Column("end", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chunks"),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name="fk_chunks_document_id_documents",
            ondelete="CASCADE",
        ),
        # Chunk ids are FAISS ids: SQLite must never hand out a deleted id again.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_chunks_document_id", "chunks", ["document_id"])
    op.create_table(
        "changes",
        sa.Column("collection_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("chunk_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("collection_id", "sequence", name="pk_changes"),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name="fk_changes_collection_id_collections",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("changes")
    op.drop_index("ix_chunks_document_id", table_name="chunks")
    op.drop_table("chunks")
    op.drop_index("ix_documents_collection_id", table_name="documents")
    op.drop_table("documents")
    op.drop_table("collections")
