"""Two ranked lists of documents, one from each leg of a hybrid search, fused into one (pure).

- **Reciprocal rank fusion** (Cormack, Clarke and Büttcher, 2009): a document scores
  ``sum over legs of 1 / (rrf_k + rank)``, rank 1-based, absent legs adding nothing. Scores are
  ignored, so BM25's unbounded scale and cosine's [-1, 1] never need reconciling; ``rrf_k = 60``
  is the paper's constant and the default of Elasticsearch, Qdrant and Milvus.
- **Convex combination** of min-max normalised scores: ``w * dense + (1 - w) * lexical``, each leg's
  scores rescaled to [0, 1] over its own list (a document a leg did not return gets 0 there), as
  Weaviate's ``relativeScoreFusion`` and Vespa's ``normalize_linear`` do.
- **Adaptive**: the convex combination with ``w = dense_weight`` for an ordinary query and
  ``w = 1 - dense_weight`` for an exact-term lookup (``searcher.exact_terms``): one fixed weight
  cannot serve both, since an encoder's top hits for a string it has never seen are noise.

Ties are broken by the best rank any leg gave, then by id, so a fused list is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from indexer.records import Fusion, FusionMethod
from searcher.exact_terms import is_exact_term_lookup
from searcher.results import Hit


def rrf_scores(rankings: Sequence[Sequence[str]], rrf_k: int) -> dict[str, float]:
    """Ids best first, one list per leg -> fused score of every id seen."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (rrf_k + rank)
    return fused


def min_max(scores: Sequence[float]) -> list[float]:
    """Scores rescaled to [0, 1]; a list of equal scores (or of one) becomes all ones."""
    if not scores:
        return []
    low, high = min(scores), max(scores)
    if high == low:
        return [1.0] * len(scores)
    return [(score - low) / (high - low) for score in scores]


def convex_scores(
    scored: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float]
) -> dict[str, float]:
    """(id, score) lists, one per leg, and a weight per leg -> fused score of every id seen."""
    fused: dict[str, float] = {}
    for pairs, weight in zip(scored, weights, strict=True):
        for (key, _), normalised in zip(pairs, min_max([score for _, score in pairs]), strict=True):
            fused[key] = fused.get(key, 0.0) + weight * normalised
    return fused


def dense_share(fusion: Fusion, query: str) -> float:
    """The dense side's weight of a convex or adaptive fusion for ``query``."""
    if fusion.method is FusionMethod.ADAPTIVE and is_exact_term_lookup(query):
        return 1.0 - fusion.dense_weight
    return fusion.dense_weight


def fuse(dense: Sequence[Hit], lexical: Sequence[Hit], fusion: Fusion, k: int, *, query: str) -> list[Hit]:
    """The top ``k`` of two hit lists (each best first, one hit per document) for ``query`` (the
    text both legs searched); a fused hit's ``score`` is the fused one and its ``legs`` say what
    each leg that found it scored."""
    if fusion.method is FusionMethod.RRF:
        fused = rrf_scores([[h.external_id for h in dense], [h.external_id for h in lexical]], fusion.rrf_k)
    else:
        weight = dense_share(fusion, query)
        fused = convex_scores(
            [[(h.external_id, h.score) for h in dense], [(h.external_id, h.score) for h in lexical]],
            [weight, 1.0 - weight],
        )
    found: dict[str, list[Hit]] = {}
    for hit in (*dense, *lexical):
        found.setdefault(hit.external_id, []).append(hit)
    order = sorted(fused, key=lambda key: (-fused[key], _best_rank(found[key]), key))
    return [_merged(found[key], fused[key]) for key in order[:k]]


def _best_rank(hits: Sequence[Hit]) -> int:
    return min(leg.rank for hit in hits for leg in hit.legs)


def _merged(hits: Sequence[Hit], score: float) -> Hit:
    """One document's hits from several legs -> one hit: the first leg's chunk (dense when it
    found the document), every leg's score."""
    return replace(hits[0], score=score, legs=tuple(leg for hit in hits for leg in hit.legs))


@dataclass(frozen=True)
class FusionRequest:
    """What one request asked of the fusion; unset fields (None) take the collection's default."""

    method: FusionMethod | None = None
    rrf_k: int | None = None
    dense_weight: float | None = None

    def resolve(self, default: Fusion) -> Fusion:
        """The fusion to use; ``InvalidArgument`` naming the field when a value is out of range."""
        return Fusion(
            method=self.method or default.method,
            rrf_k=default.rrf_k if self.rrf_k is None else self.rrf_k,
            dense_weight=default.dense_weight if self.dense_weight is None else self.dense_weight,
        )
