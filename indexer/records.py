"""Plain domain records shared by the indexer and the searcher.

No I/O here: these are the shapes that cross module boundaries. Vectors travel beside them as
``float32 (n, d)`` NumPy arrays.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class PoolingMode(enum.StrEnum):
    """How token embeddings become one vector (see ``indexer.pooling``)."""

    MEAN = "mean"
    MAX = "max"
    CLS = "cls"
    MEAN_MAX = "mean_max"


class ChangeOp(enum.StrEnum):
    """One entry of the change log: a chunk vector appeared in or left a collection."""

    ADD = "add"
    REMOVE = "remove"


# The model of a collection that embeds nothing: it stores the vectors its documents bring.
NO_MODEL = "none"


@dataclass(frozen=True)
class Document:
    """One input document as a user gave it. ``metadata`` must be JSON-serialisable; ``vector``
    is set only for a collection without a model (``NO_MODEL``), which stores it as given."""

    external_id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    vector: tuple[float, ...] | None = None

    def content_hash(self) -> str:
        """SHA-256 of everything that shapes the vectors or what search returns.

        Unchanged documents (same hash) are not re-embedded on upsert. A document without a
        vector hashes as it always has, so existing collections keep their hashes.
        """
        fields: list[Any] = [self.title, self.text, self.metadata]
        if self.vector is not None:
            fields.append(list(self.vector))
        canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """One token window of a document. ``start``/``end`` are character offsets into ``Document.text``."""

    ordinal: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class EncodedDocument:
    """A document ready to be written: its chunks and one unit vector per chunk.

    ``vectors``: float32 (len(chunks), d). ``unknown_share``: how much of the text the model
    could not read (``indexer.vocabulary``).
    """

    document: Document
    content_hash: str
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray
    unknown_share: float = 0.0


@dataclass(frozen=True)
class CollectionSpec:
    """How a collection's vectors are made and indexed. Fixed at creation: one collection = one space.

    ``overlap`` is the number of tokens two consecutive windows share (what Hugging Face calls
    ``stride``). ``max_length`` caps one forward pass; it leaves room beyond ``window`` for the
    title that prefixes every chunk.
    """

    model: str
    pooling: PoolingMode = PoolingMode.MEAN
    layers: tuple[int, ...] = (-1,)
    max_length: int = 512
    window: int = 256
    overlap: int = 64
    normalize: bool = True
    index_spec: str = "Flat"
    vector_dtype: str = "float32"
    whitening: bool = False
    # The vector length. Required with ``model=NO_MODEL``; with a model it is the model's
    # (None takes it, a number is checked against it).
    dimension: int | None = None
    # A sequence classifier (local folder or cached id) that labels every document at ingest:
    # metadata ``label_field`` gets the label, ``score_field`` its probability (indexer.classifier).
    classifier: str = ""
    label_field: str = "label"
    score_field: str = "label_score"

    @property
    def takes_vectors(self) -> bool:
        """True for a collection that stores its documents' own vectors and embeds nothing."""
        return self.model == NO_MODEL


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as recorded in SQL, with the facts of its embedding space."""

    id: int
    name: str
    spec: CollectionSpec
    dimension: int
    model_revision: str
    tokenizer_hash: str
    classifier_revision: str = ""


@dataclass(frozen=True)
class CollectionStats:
    """``mostly_unknown``: documents mostly outside the model's vocabulary (``indexer.vocabulary``)."""

    documents: int
    chunks: int
    last_sequence: int
    mostly_unknown: int = 0


@dataclass(frozen=True)
class Change:
    """One change-log entry. ``sequence`` increases by one per entry within a collection."""

    sequence: int
    op: ChangeOp
    chunk_id: int


@dataclass(frozen=True)
class WriteResult:
    """What one committed write transaction did. ``skipped`` were unchanged (same content hash)."""

    written: tuple[str, ...]
    skipped: tuple[str, ...]
    last_sequence: int


@dataclass(frozen=True)
class DeleteResult:
    deleted: tuple[str, ...]
    missing: tuple[str, ...]
    last_sequence: int


@dataclass(frozen=True)
class StoredChunk:
    """A chunk with what search results need about its document."""

    chunk_id: int
    external_id: str
    title: str
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class StoredDocument:
    external_id: str
    title: str
    text: str
    metadata: Mapping[str, Any]
    content_hash: str
    chunk_count: int


@dataclass(frozen=True)
class Range:
    """Bounds on a numeric metadata field; ``None`` means unbounded."""

    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


Scalar = str | float | int | bool


@dataclass(frozen=True)
class Condition:
    """One metadata condition; exactly one of ``equals``, ``one_of`` and ``range`` is set."""

    field: str
    equals: Scalar | None = None
    one_of: tuple[Scalar, ...] | None = None
    range: Range | None = None


@dataclass(frozen=True)
class MetadataFilter:
    """A conjunction of conditions on top-level metadata fields."""

    conditions: tuple[Condition, ...] = ()
