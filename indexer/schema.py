"""SQL tables of the store: the source of truth for collections, documents, chunks and the change log.

The FAISS index is derived from ``chunks`` (its ids are ``chunks.id``) and kept fresh by replaying
``changes``. The alembic revision in ``indexer/migrations`` creates exactly these tables; a change
here needs a new revision there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from indexer.records import CollectionInfo
from indexer.spec import VectorDtype, column_name, example, field_info, from_stored, is_sequence, spec_fields

# SQLite only gives AUTOINCREMENT (ids never reused) to a column declared exactly INTEGER PRIMARY KEY;
# its INTEGER is 64-bit anyway. PostgreSQL gets a BIGINT identity, whose sequence never goes back.
ChunkId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL so that filters can use jsonb_typeof and, later, a GIN index.
MetadataJSON = JSON().with_variant(JSONB(), "postgresql")

# How ``chunks.vector`` is stored, per ``collections.vector_dtype``; always float32 in memory.
VECTOR_DTYPES = {VectorDtype.FLOAT32: np.float32, VectorDtype.FLOAT16: np.float16}

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _spec_column(spec_field: dataclasses.Field[Any]) -> Column[Any]:
    """The column of one spec field, typed by an example value (see ``indexer.spec``)."""
    info = field_info(spec_field)
    if isinstance(example(spec_field), bool):
        kind: Any = Boolean()
    elif isinstance(example(spec_field), int):
        kind = Integer()
    elif isinstance(example(spec_field), float):
        kind = Float()
    elif is_sequence(spec_field):
        kind = JSON()
    else:
        kind = String(info.max_chars) if info.max_chars else Text()
    return Column(column_name(spec_field), kind, nullable=False)


class CollectionRow(Base):
    """One collection = one embedding space; ``last_sequence`` is the head of its change log.

    Its spec columns come from the declaration of ``CollectionSpec``; the rest describe the
    space the encoder turned out to make (dimension, revision, tokenizer) and the log head.
    """

    __table__ = Table(
        "collections",
        Base.metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("name", String(128), nullable=False, unique=True),
        *(_spec_column(spec_field) for spec_field in spec_fields()),
        Column("model_revision", String(128), nullable=False),
        Column("tokenizer_hash", String(128), nullable=False),
        Column("classifier_revision", String(128), nullable=False, server_default=""),
        Column("dimension", Integer, nullable=False),
        Column("whitening", LargeBinary, nullable=True),
        # 0 until a whitening is fitted, then one more at every refit; indexes rebuild when it moves.
        Column("whitening_version", Integer, nullable=False, default=0, server_default="0"),
        Column("whitening_fitted_on", BigInteger, nullable=True),
        Column("last_sequence", BigInteger, nullable=False, default=0),
        # One more at every metadata-only update: with ``last_sequence`` (every add and remove),
        # it names a state of which documents a filter matches (``Store.filter_version``).
        Column("metadata_version", BigInteger, nullable=False, default=0, server_default="0"),
        # Changes at or below this sequence may have been pruned (``Store.prune_log``): a reader
        # behind it cannot replay and rebuilds from the chunks instead.
        Column("log_floor", BigInteger, nullable=False, default=0, server_default="0"),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # Never reuse a dropped collection's id: snapshots and live indexes are keyed by it.
        sqlite_autoincrement=True,
    )


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
    # ``Document.embedding_hash``: NULL for a document written before revision 0006.
    embedding_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
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


class LogReaderRow(Base):
    """A searcher tailing a collection's change log, and the oldest sequence it may still need
    to replay (its newest snapshot's, or what it has applied when it has no snapshot)."""

    __tablename__ = "log_readers"

    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True
    )
    reader: Mapped[str] = mapped_column(String(256), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    # Seconds since the epoch, by the reader's clock: readers silent past a TTL stop pinning the log.
    seen_at: Mapped[float] = mapped_column(Float)


# -- rows <-> records --------------------------------------------------------------------------


def collection_info(row: CollectionRow) -> CollectionInfo:
    """The record of a collection row."""
    return CollectionInfo(
        id=row.id,
        name=row.name,
        spec=from_stored(row),
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
