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

# Declared in indexer.spec and re-exported: every record module user finds them here.
from indexer.spec import NO_MODEL as NO_MODEL
from indexer.spec import CollectionSpec as CollectionSpec
from indexer.spec import FusionMethod as FusionMethod
from indexer.spec import LexicalAnalyzer as LexicalAnalyzer
from indexer.spec import PoolingMode as PoolingMode
from indexer.spec import VectorDtype as VectorDtype
from indexer.spec import spec_default


class ChangeOp(enum.StrEnum):
    """One entry of the change log: a chunk vector appeared in or left a collection."""

    ADD = "add"
    REMOVE = "remove"


class SearchMode(enum.StrEnum):
    """Which legs answer a query: the vector index, the lexical index, or both fused."""

    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"


@dataclass(frozen=True)
class Fusion:
    """A fusion and its parameters: ``rrf_k`` is RRF's rank constant; ``dense_weight`` is the
    dense side's share of a convex combination of min-max normalised scores (``adaptive``: its
    share for ordinary queries, ``1 - dense_weight`` for exact-term lookups). A collection's
    default is in its spec (``fusion``, ``rrf_k``, ``dense_weight``: ``Fusion.of``); the defaults
    here are the spec's own."""

    method: FusionMethod = spec_default("fusion")
    rrf_k: int = spec_default("rrf_k")
    dense_weight: float = spec_default("dense_weight")

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

    @classmethod
    def of(cls, spec: CollectionSpec) -> Fusion:
        """The default fusion of a collection."""
        return cls(FusionMethod(spec.fusion), spec.rrf_k, spec.dense_weight)


class DocumentStatus(enum.StrEnum):
    """What an upsert did with one document; the proto's ``DOCUMENT_STATUS_<NAME>`` and the
    ingest metrics' ``outcome`` label are named after these."""

    WRITTEN = "written"
    UNCHANGED = "unchanged"  # same content hash as the stored version: not re-embedded
    # Only the metadata differs from the stored version (same embedding hash): the metadata was
    # replaced, the chunks, vectors and classifier label were kept.
    METADATA_UPDATED = "metadata_updated"
    REJECTED = "rejected"


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
        return _digest([self.title, self.text, self.metadata], self.vector)

    def embedding_hash(self) -> str:
        """SHA-256 of what the chunks, vectors, lexical body and classifier label are made of:
        the title, the text and a given vector, never the metadata. Two versions with the same
        embedding hash differ at most in metadata, so the stored vectors still fit the new one."""
        return _digest([self.title, self.text], self.vector)


def _digest(fields: list[Any], vector: tuple[float, ...] | None) -> str:
    if vector is not None:
        fields = [*fields, list(vector)]
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
class MetadataUpdate:
    """A stored document whose new version differs only in metadata: its row takes the new
    metadata and content hash, its chunks and vectors stay, and so do the ``kept_fields`` of its
    stored metadata (a classifier's label and score: derived from the text, which did not change).
    ``embedding_hash`` is the one the stored version must still have when the update commits."""

    document: Document
    content_hash: str
    embedding_hash: str
    kept_fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredHashes:
    """What an upsert compares a new version against; ``embedding`` is None for a document
    written before the store recorded it (its first change re-embeds it)."""

    content: str
    embedding: str | None


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
class StoredWhitening:
    """A collection's fitted whitening: ``blob`` (``Whitening.to_bytes``), fitted on ``fitted_on``
    stored vectors; ``version`` counts the fits (1 for the first)."""

    version: int
    fitted_on: int
    blob: bytes


@dataclass(frozen=True)
class IndexFacts:
    """What a searcher checks at every poll: the pruned log floor and the whitening version."""

    log_floor: int
    whitening_version: int


@dataclass(frozen=True)
class Compaction:
    """What ``Store.prune_log`` did: entries at or below ``floor`` are gone, ``removed`` of them now."""

    floor: int
    removed: int


@dataclass(frozen=True)
class WriteResult:
    """What one committed write transaction did. ``skipped`` were unchanged (same content hash);
    ``metadata_updated`` took new metadata and kept their vectors; ``stale`` were metadata
    updates not applied because the stored version's embedding hash changed since they were
    prepared (another writer changed the text): they need embedding."""

    written: tuple[str, ...]
    skipped: tuple[str, ...]
    last_sequence: int
    metadata_updated: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()


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
