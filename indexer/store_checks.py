"""The store's own checks on what it is asked to write: the last guard behind the edge.

Documents are validated where they enter (``indexer.validation``, used by the readers and
``searcher.convert``) and specs when they are built (``indexer.spec``); these checks hold what a
caller of the store could still get wrong (docs/ARCHITECTURE.md, "A document's way in"), and fail
the whole write naming the record and field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexer.errors import InvalidArgument, InvalidDocument
from indexer.records import Document, EncodedDocument
from indexer.schema import encode_vectors
from indexer.spec import check_dimension

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def check_new_collection(name: str, dimension: int) -> None:
    """The last guard before a collection row is written (the spec checked itself when built)."""
    if not isinstance(name, str) or not COLLECTION_NAME.match(name):
        raise InvalidArgument(f"collection name {name!r} must match {COLLECTION_NAME.pattern}", field="name")
    check_dimension(dimension)


def vector_blobs(doc: EncodedDocument, dimension: int, dtype: str) -> list[bytes]:
    """Validate ``doc.vectors`` (float32 (len(chunks), dimension), finite); one blob per chunk."""
    record = doc.document.external_id
    vectors = doc.vectors
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
        got = (
            f"{vectors.dtype} {vectors.shape}" if isinstance(vectors, np.ndarray) else type(vectors).__name__
        )
        raise InvalidDocument(
            f"vectors must be a 2-D float32 array, got {got}", record=record, field="vectors"
        )
    if vectors.shape != (len(doc.chunks), dimension):
        raise InvalidDocument(
            f"vectors have shape {vectors.shape}, expected ({len(doc.chunks)}, {dimension}): "
            "one row per chunk, the collection's dimension",
            record=record,
            field="vectors",
        )
    if not np.isfinite(vectors).all():
        raise InvalidDocument("vectors contain NaN or infinite values", record=record, field="vectors")
    try:
        return encode_vectors(vectors, dtype)
    except ValueError as exc:  # finite in float32, out of range in float16
        raise InvalidDocument(str(exc), record=record, field="vectors") from exc


def document_metadata(doc: Document) -> dict[str, Any]:
    """Checks that do not need the collection; returns the metadata as plain JSON-ready dict."""
    external_id = doc.external_id
    if not isinstance(external_id, str) or not external_id:
        raise InvalidDocument(
            "external_id must be a non-empty string", record=repr(external_id), field="external_id"
        )
    metadata = dict(doc.metadata)
    try:
        # allow_nan=False: PostgreSQL's jsonb rejects NaN, so SQLite must not accept it either.
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDocument(
            f"metadata is not JSON-serialisable: {exc}", record=external_id, field="metadata"
        ) from exc
    return metadata


def check_unique_ids(external_ids: Sequence[str]) -> None:
    seen: set[str] = set()
    for external_id in external_ids:
        if external_id in seen:
            raise InvalidDocument(
                "appears twice in one write; send each document once",
                record=external_id,
                field="external_id",
            )
        seen.add(external_id)
