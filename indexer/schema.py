"""SQL tables of the store: the source of truth for collections, documents, chunks and the change log.

The FAISS index is derived from ``chunks`` (its ids are ``chunks.id``) and kept fresh by replaying
``changes``. The alembic revision in ``indexer/migrations`` creates exactly these tables; a change
here needs a new revision there.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from indexer.records import NO_MODEL, CollectionInfo, CollectionSpec, PoolingMode

# SQLite only gives AUTOINCREMENT (ids never reused) to a column declared exactly INTEGER PRIMARY KEY;
# its INTEGER is 64-bit anyway. PostgreSQL gets a BIGINT identity, whose sequence never goes back.
ChunkId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL so that filters can use jsonb_typeof and, later, a GIN index.
MetadataJSON = JSON().with_variant(JSONB(), "postgresql")

# How ``chunks.vector`` is stored, per ``collections.vector_dtype``; always float32 in memory.
VECTOR_DTYPES = {"float32": np.float32, "float16": np.float16}

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class CollectionRow(Base):
    """One collection = one embedding space; ``last_sequence`` is the head of its change log."""

    __tablename__ = "collections"
    # Never reuse a dropped collection's id: snapshots and live indexes are keyed by it.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    model: Mapped[str] = mapped_column(Text)
    model_revision: Mapped[str] = mapped_column(String(128))
    tokenizer_hash: Mapped[str] = mapped_column(String(128))
    pooling: Mapped[str] = mapped_column(String(16))
    layers: Mapped[list[int]] = mapped_column(JSON)
    max_length: Mapped[int] = mapped_column(Integer)
    window: Mapped[int] = mapped_column(Integer)
    overlap: Mapped[int] = mapped_column(Integer)
    normalize: Mapped[bool] = mapped_column(Boolean)
    use_whitening: Mapped[bool] = mapped_column(Boolean, default=False)
    dimension: Mapped[int] = mapped_column(Integer)
    index_spec: Mapped[str] = mapped_column(String(256))
    vector_dtype: Mapped[str] = mapped_column(String(16))
    classifier: Mapped[str] = mapped_column(Text, server_default="")
    classifier_revision: Mapped[str] = mapped_column(String(128), server_default="")
    label_field: Mapped[str] = mapped_column(String(128), server_default="label")
    score_field: Mapped[str] = mapped_column(String(128), server_default="label_score")
    whitening: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    last_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class DocumentRow(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("collection_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(512))
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    # ``metadata`` is reserved by the declarative base; the SQL column keeps the domain name.
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", MetadataJSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    updated_sequence: Mapped[int] = mapped_column(BigInteger)
    # Share of the text's characters in unknown pieces of the model's vocabulary (indexer.vocabulary).
    unknown_share: Mapped[float] = mapped_column(Float, server_default="0")


class ChunkRow(Base):
    """A token window and its vector. ``id`` is the FAISS id: autoincrement, never reused."""

    __tablename__ = "chunks"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(ChunkId, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    ordinal: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    # float32 or float16 bytes, as the collection's ``vector_dtype`` says.
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class ChangeRow(Base):
    """The change log: gap-free ``sequence`` per collection. ``chunk_id`` has no foreign key on
    purpose: a REMOVE names a chunk that no longer exists."""

    __tablename__ = "changes"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    op: Mapped[str] = mapped_column(String(8))
    chunk_id: Mapped[int] = mapped_column(BigInteger)


# -- rows <-> records --------------------------------------------------------------------------


def _spec_of(row: CollectionRow) -> CollectionSpec:
    return CollectionSpec(
        model=row.model,
        pooling=PoolingMode(row.pooling),
        layers=tuple(row.layers),
        max_length=row.max_length,
        window=row.window,
        overlap=row.overlap,
        normalize=row.normalize,
        index_spec=row.index_spec,
        vector_dtype=row.vector_dtype,
        whitening=row.use_whitening,
        # Only a collection without a model was given its dimension; a model's is the model's.
        dimension=row.dimension if row.model == NO_MODEL else None,
        classifier=row.classifier,
        label_field=row.label_field,
        score_field=row.score_field,
    )


def collection_info(row: CollectionRow) -> CollectionInfo:
    """The record of a collection row."""
    return CollectionInfo(
        id=row.id,
        name=row.name,
        spec=_spec_of(row),
        dimension=row.dimension,
        model_revision=row.model_revision,
        tokenizer_hash=row.tokenizer_hash,
        classifier_revision=row.classifier_revision,
    )


def encode_vectors(vectors: np.ndarray, dtype: str) -> list[bytes]:
    """float32 (n, d) -> one ``chunks.vector`` blob per row in ``dtype``; ValueError when a
    value does not fit (float16 overflows past 65504)."""
    with np.errstate(over="ignore"):  # overflow is reported below, as a domain error
        stored = np.ascontiguousarray(vectors, dtype=VECTOR_DTYPES[dtype])
    if not np.isfinite(stored).all():
        raise ValueError(f"vectors overflow {dtype}")
    return [row.tobytes() for row in stored]


def decode_vectors(blobs: Sequence[bytes], dimension: int, dtype: str) -> np.ndarray:
    """Stored vector blobs -> float32 (len(blobs), dimension)."""
    if not blobs:
        return np.zeros((0, dimension), dtype=np.float32)
    flat = np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPES[dtype])
    return flat.reshape(len(blobs), dimension).astype(np.float32)
