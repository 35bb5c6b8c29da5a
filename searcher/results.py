"""Chunk hits folded into document hits (pure functions, no I/O).

The index ranks chunks; a user asks for documents. A document is represented by its best chunk and
scores what that chunk scores. Because several of the top chunks can belong to one document, the
index is asked for more chunks than documents wanted (``chunk_fetch_size``) and asked again, for
more, when folding leaves fewer than ``k`` documents (``should_fetch_more``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from indexer.records import StoredChunk

# Chunks fetched per wanted document on the first try. Documents of a few chunks rarely put more
# than a handful of them in one top list, so 4x usually leaves k documents after folding.
OVERFETCH_FACTOR = 4


@dataclass(frozen=True)
class LegHit:
    """What one leg of a search (``"dense"`` or ``"lexical"``) said of a document: its score there
    (cosine / inner product, or BM25) and its 1-based rank in that leg's list."""

    leg: str
    score: float
    rank: int


@dataclass(frozen=True)
class Hit:
    """One document in a search answer, represented by its best-scoring chunk.

    ``start``/``end`` are character offsets of that chunk in the document text.
    """

    external_id: str
    score: float
    title: str
    text: str
    start: int
    end: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    legs: tuple[LegHit, ...] = ()


@dataclass(frozen=True)
class Ranking:
    """One query's documents, best first, and the version of the whitening map the dense index
    ranked them in (0: no map, or a lexical ranking, which no map touches). A router merges only
    rankings of one version: cosines of two maps are not comparable."""

    hits: list[Hit]
    whitening_version: int = 0


def chunk_fetch_size(k: int, available: int, factor: int = OVERFETCH_FACTOR) -> int:
    """How many chunks to ask the index for so that ``k`` documents likely survive folding."""
    return max(0, min(available, k * factor))


def should_fetch_more(documents_found: int, k: int, fetched: int, returned: int, available: int) -> bool:
    """Whether to ask the index again, for more chunks.

    Only when folding left fewer than ``k`` documents, the index filled the whole request (so it may
    have more) and asking for more can return more than ``fetched`` chunks.
    """
    return documents_found < k and returned >= fetched and fetched < available


def fold_chunk_hits(
    scores: Sequence[float],
    chunk_ids: Sequence[int],
    chunks: Mapping[int, StoredChunk],
    k: int,
    leg: str = "dense",
) -> list[Hit]:
    """The best ``k`` documents of a ranked list of chunk hits.

    ``scores``/``chunk_ids``: one entry per chunk, best first (the index's order is kept, so this
    works for any metric). ``chunks``: what the store knows of those chunks; ids it does not know
    (deleted since the index answered) and ``-1`` padding are skipped. Each document appears once,
    with its first (best) chunk; ``leg`` names the index that ranked them, in ``Hit.legs``.
    """
    hits: list[Hit] = []
    seen: set[str] = set()
    for score, chunk_id in zip(scores, chunk_ids, strict=True):
        if len(hits) == k:
            break
        chunk = chunks.get(int(chunk_id))
        if chunk is None or chunk.external_id in seen:
            continue
        seen.add(chunk.external_id)
        hits.append(
            Hit(
                external_id=chunk.external_id,
                score=float(score),
                title=chunk.title,
                text=chunk.text,
                start=chunk.start,
                end=chunk.end,
                metadata=chunk.metadata,
                legs=(LegHit(leg, float(score), len(hits) + 1),),
            )
        )
    return hits
