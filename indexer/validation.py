"""Validation of one incoming document, shared by the file readers and the gRPC Upsert path.

Each check names the record and the field, so a user can find and fix the input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from indexer.errors import InvalidDocument
from indexer.records import Document


@dataclass(frozen=True)
class DocumentLimits:
    """Bounds that keep one record from exhausting memory or the encoder."""

    max_id_chars: int = 512
    max_title_chars: int = 4_096
    max_text_chars: int = 1_000_000
    max_metadata_bytes: int = 65_536
    max_metadata_depth: int = 8


def _check_string(value: object, *, record: str, field: str, limit: int, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidDocument(
            f"field {field!r} must be a string, got {type(value).__name__}", record=record, field=field
        )
    if required and not value.strip():
        raise InvalidDocument(f"field {field!r} is empty", record=record, field=field)
    if len(value) > limit:
        raise InvalidDocument(
            f"field {field!r} has {len(value)} characters, more than the limit of {limit}",
            record=record,
            field=field,
        )
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL, and no real document needs one.
        raise InvalidDocument(f"field {field!r} contains a NUL character", record=record, field=field)
    if _has_lone_surrogate(value):
        raise InvalidDocument(f"field {field!r} is not valid UTF-8 text", record=record, field=field)
    return value


def _has_lone_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _metadata_depth(value: Any, depth: int = 0) -> int:
    if isinstance(value, Mapping):
        return max((_metadata_depth(v, depth + 1) for v in value.values()), default=depth + 1)
    if isinstance(value, list):
        return max((_metadata_depth(v, depth + 1) for v in value), default=depth + 1)
    return depth


def _check_metadata(value: object, *, record: str, limits: DocumentLimits) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidDocument(
            f"field 'metadata' must be an object, got {type(value).__name__}",
            record=record,
            field="metadata",
        )
    if _metadata_depth(value) > limits.max_metadata_depth:
        raise InvalidDocument(
            f"field 'metadata' is nested deeper than {limits.max_metadata_depth} levels",
            record=record,
            field="metadata",
        )
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDocument(
            f"field 'metadata' is not JSON-serialisable ({exc})", record=record, field="metadata"
        ) from exc
    if len(encoded.encode("utf-8", errors="surrogatepass")) > limits.max_metadata_bytes:
        raise InvalidDocument(
            f"field 'metadata' is larger than {limits.max_metadata_bytes} bytes",
            record=record,
            field="metadata",
        )
    if "\\u0000" in encoded or _has_lone_surrogate(encoded):
        raise InvalidDocument(
            "field 'metadata' contains a NUL character or invalid UTF-8", record=record, field="metadata"
        )
    return dict(value)


def check_vector(value: object, *, record: str, dimension: int | None = None) -> tuple[float, ...] | None:
    """A document's own vector: a non-empty list of finite numbers, not all zero (a zero vector
    is as near to every query as to none), of ``dimension`` values when that is given."""
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, list | tuple) or not value:
        raise InvalidDocument(
            f"field 'vector' must be a non-empty array of numbers, got {type(value).__name__}",
            record=record,
            field="vector",
        )
    for position, number in enumerate(value):
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise InvalidDocument(
                f"field 'vector'[{position}] must be a number, got {type(number).__name__}",
                record=record,
                field="vector",
            )
        if not math.isfinite(number):
            raise InvalidDocument(
                f"field 'vector'[{position}] is {number}: NaN and infinity are not vectors",
                record=record,
                field="vector",
            )
    if dimension is not None and len(value) != dimension:
        raise InvalidDocument(
            f"field 'vector' has {len(value)} values, the collection takes {dimension}",
            record=record,
            field="vector",
        )
    if not any(value):
        raise InvalidDocument("field 'vector' is all zeros", record=record, field="vector")
    return tuple(float(number) for number in value)


TAKES_NO_VECTORS = (
    "field 'vector': this collection embeds its text with its own model and takes no outside "
    "vectors; bring vectors to a collection created with --model none --dimension N"
)


def vector_for_collection(
    value: object, *, record: str, dimension: int | None
) -> tuple[float, ...] | None:
    """A document's vector checked against its collection: ``dimension`` None means the collection
    has a model (no vector allowed), N means it has none (a vector of N values required)."""
    if dimension is None:
        if value is not None:
            raise InvalidDocument(TAKES_NO_VECTORS, record=record, field="vector")
        return None
    if value is None:
        raise InvalidDocument(
            "missing field 'vector': a collection without a model takes one vector per document",
            record=record,
            field="vector",
        )
    vector = check_vector(value, record=record, dimension=dimension)
    with np.errstate(over="ignore"):
        if not np.isfinite(np.asarray(vector, dtype=np.float32)).all():
            raise InvalidDocument(
                "field 'vector' holds a value beyond float32's range", record=record, field="vector"
            )
    return vector


def validate_document(
    external_id: object,
    text: object,
    title: object = None,
    metadata: object = None,
    *,
    record: str,
    limits: DocumentLimits | None = None,
    vector: object = None,
) -> Document:
    """Build a ``Document`` from raw fields, or raise ``InvalidDocument`` naming what was wrong."""
    limits = limits or DocumentLimits()
    if isinstance(external_id, int) and not isinstance(external_id, bool):
        external_id = str(external_id)
    if isinstance(external_id, float) and math.isfinite(external_id) and external_id.is_integer():
        external_id = str(int(external_id))
    doc_id = _check_string(external_id, record=record, field="id", limit=limits.max_id_chars, required=True)
    return Document(
        external_id=doc_id,
        text=_check_string(text, record=record, field="text", limit=limits.max_text_chars, required=True),
        title=_check_string(
            title, record=record, field="title", limit=limits.max_title_chars, required=False
        ),
        metadata=_check_metadata(metadata, record=record, limits=limits),
        vector=check_vector(vector, record=record),
    )
