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

from indexer.errors import InvalidArgument


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


class LexicalAnalyzer(enum.StrEnum):
    """How text becomes terms for the lexical index (see ``indexer.lexical``).

    ``english``: words lowercased, English stop words dropped, Snowball (Porter 2) stems;
    ``simple``: words lowercased, nothing dropped nor stemmed (any alphabetic language, identifiers);
    ``cjk``: character unigrams and bigrams, for Chinese, Japanese and Korean, which have no spaces.
    """

    ENGLISH = "english"
    SIMPLE = "simple"
    CJK = "cjk"


class SearchMode(enum.StrEnum):
    """Which legs answer a query: the vector index, the lexical index, or both fused."""

    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


class FusionMethod(enum.StrEnum):
    """How a hybrid search merges its two ranked lists (see ``searcher.fusion``)."""

    RRF = "rrf"
    CONVEX = "convex"


@dataclass(frozen=True)
class Fusion:
    """A fusion and its parameters: ``rrf_k`` is RRF's rank constant; ``dense_weight`` is the
    dense side's share of a convex combination of min-max normalised scores."""

    # The default is what measured best here: on msmarco-5k with the shipped model, convex at 0.3
    # 0.743 nDCG@10, RRF 0.738, convex 0.5 0.737, 0.7 0.719 (dense 0.667, lexical 0.729); and on
    # identifier lookups only a lexical-leaning convex fusion keeps the passage first (RRF lets
    # the encoder's unrelated top hits tie it). Re-measure when the default model changes:
    # docs/OPERATIONS.md "Lexical and hybrid search".
    method: FusionMethod = FusionMethod.CONVEX
    rrf_k: int = 60
    dense_weight: float = 0.3

    def __post_init__(self) -> None:
        if not 1 <= self.rrf_k <= 100_000:
            raise InvalidArgument(
                f"fusion.rrf_k must be between 1 and 100000, got {self.rrf_k}", field="fusion.rrf_k"
            )
        if not 0.0 <= self.dense_weight <= 1.0:
            raise InvalidArgument(
                f"fusion.dense_weight must be between 0 and 1, got {self.dense_weight}",
                field="fusion.dense_weight",
            )


@dataclass(frozen=True)
class LexicalSpec:
    """A collection's lexical index: its analyser (fixed at creation: the terms in the index and
    in a query must come out of the same analyser) and the fusion hybrid searches use by default."""

    analyzer: LexicalAnalyzer = LexicalAnalyzer.ENGLISH
    fusion: Fusion = field(default_factory=Fusion)


@dataclass(frozen=True)
class Document:
    """One input document as a user gave it. ``metadata`` must be JSON-serialisable."""

    external_id: str
    text: str
    title: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def content_hash(self) -> str:
        """SHA-256 of everything that shapes the vectors or what search returns.

        Unchanged documents (same hash) are not re-embedded on upsert.
        """
        canonical = json.dumps([self.title, self.text, self.metadata], sort_keys=True, ensure_ascii=False)
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

    ``vectors``: float32 (len(chunks), d).
    """

    document: Document
    content_hash: str
    chunks: tuple[Chunk, ...]
    vectors: np.ndarray


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
    lexical: LexicalSpec = field(default_factory=LexicalSpec)


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as recorded in SQL, with the facts of its embedding space."""

    id: int
    name: str
    spec: CollectionSpec
    dimension: int
    model_revision: str
    tokenizer_hash: str


@dataclass(frozen=True)
class CollectionStats:
    documents: int
    chunks: int
    last_sequence: int


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
