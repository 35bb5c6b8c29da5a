"""A collection out as JSONL: ids, text, metadata and one vector per document.

What ``indexer.readers`` reads back, so vectors move between collections and deployments: a
line ingests into a collection created with ``--model none --dimension D`` of the same ``D``.
A document embedded as several chunks exports the mean of its chunk vectors, L2-normalised when
its collection normalises (a vectors-only collection holds one vector per document, and the mean
of one chunk is that chunk).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from indexer.records import StoredDocument


def document_vector(vectors: np.ndarray, *, normalize: bool) -> np.ndarray:
    """vectors: float32 (chunks, d), chunks >= 1 -> float32 (d,)."""
    mean = vectors.mean(axis=0, dtype=np.float64)
    if normalize:
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
    return mean.astype(np.float32)


def export_record(document: StoredDocument, vectors: np.ndarray, *, normalize: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"_id": document.external_id, "title": document.title, "text": document.text}
    record["metadata"] = dict(document.metadata)
    if len(vectors):
        # float32 -> Python float is exact, so the vector reads back bit for bit.
        record["vector"] = document_vector(vectors, normalize=normalize).tolist()
    return record


def export_lines(documents: Iterable[tuple[StoredDocument, np.ndarray]], *, normalize: bool) -> Iterator[str]:
    for document, vectors in documents:
        yield json.dumps(export_record(document, vectors, normalize=normalize), ensure_ascii=False) + "\n"
