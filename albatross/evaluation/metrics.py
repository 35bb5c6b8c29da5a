"""Retrieval metrics over a ranked list of document ids and graded judgments (pure functions),
and the paired comparison of two systems' per-query scores.

``ranking`` is best first; ``judged`` maps document id -> grade (0 = not relevant).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


def dcg(gains: Sequence[float]) -> float:
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))


def ndcg_at(ranking: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k with graded gains (the grade itself) and the log2 discount, as trec_eval computes it."""
    ideal = dcg(sorted((g for g in judged.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([max(judged.get(doc, 0), 0) for doc in ranking[:k]]) / ideal


def recall_at(ranking: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float:
    relevant = {doc for doc, grade in judged.items() if grade > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def mrr_at(ranking: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    for rank, doc in enumerate(ranking[:k], start=1):
        if judged.get(doc, 0) > 0:
            return 1.0 / rank
    return 0.0


def per_query_ndcg(
    rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]], k: int = 10
) -> dict[str, float]:
    """nDCG@k of every judged query (a missing ranking scores 0): for paired comparisons."""
    judged = [qid for qid in qrels if any(grade > 0 for grade in qrels[qid].values())]
    return {qid: ndcg_at(rankings.get(qid, []), qrels[qid], k) for qid in judged}


def mean_metrics(
    rankings: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """nDCG@10, Recall@100 and MRR@10 averaged over every judged query (a missing ranking scores 0)."""
    judged = [qid for qid in qrels if any(grade > 0 for grade in qrels[qid].values())]
    if not judged:
        return {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "queries": 0}
    totals = {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    for qid in judged:
        ranking = rankings.get(qid, [])
        totals["ndcg@10"] += ndcg_at(ranking, qrels[qid], 10)
        totals["recall@100"] += recall_at(ranking, qrels[qid], 100)
        totals["mrr@10"] += mrr_at(ranking, qrels[qid], 10)
    return {**{name: value / len(judged) for name, value in totals.items()}, "queries": len(judged)}


@dataclass(frozen=True)
class Paired:
    """Mean of ``b - a`` over queries, its bootstrap 95% interval, and how often each side won."""

    a: float
    b: float
    difference: float
    low: float
    high: float
    b_better: int
    a_better: int


def paired_bootstrap(a: np.ndarray, b: np.ndarray, rounds: int = 10_000, seed: int = 0) -> Paired:
    """Paired comparison of per-query scores ``a`` and ``b`` (same queries, same order)."""
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equal, non-empty 1-d score arrays, got {a.shape} and {b.shape}")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(rounds, len(diff)))].mean(axis=1)
    return Paired(
        a=float(a.mean()),
        b=float(b.mean()),
        difference=float(diff.mean()),
        low=float(np.percentile(means, 2.5)),
        high=float(np.percentile(means, 97.5)),
        b_better=int((diff > 0).sum()),
        a_better=int((diff < 0).sum()),
    )
