"""Compare two encoders on one BEIR folder query by query, and each one's agreement with the teacher.

43 judged queries (MS MARCO 5k) cannot separate models whose nDCG@10 differ by a point, so a
decision between two builds reads the paired per-query difference with a bootstrap interval, and
the mean cosine of each build's vectors to the teacher's on the same passages and queries (what
distillation optimises, measured on text it never saw). Never used for training.

Usage::

    python -m albatross.training.compare --data <BEIR folder> \
        --a indexer/models/albatross-albert-small --b /tmp/candidate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from albatross.evaluation.metrics import paired_bootstrap
from albatross.training.quick_eval import BeirSet, Embedder, load_beir, load_embedder, per_query_metrics


def mean_cosine(x: np.ndarray, y: np.ndarray) -> float:
    """Mean row-wise cosine of two arrays of unit vectors."""
    return float(np.mean(np.sum(x * y, axis=1)))


def _embed_both(embed: Embedder, data: BeirSet) -> tuple[np.ndarray, np.ndarray]:
    return embed(data.doc_texts), embed(data.query_texts)


def compare(data: BeirSet, a: str, b: str, max_length: int = 256) -> dict:
    """Paired nDCG@10 / Recall@100 of models ``a`` and ``b`` and their mean cosine to the teacher."""
    teacher_docs, teacher_queries = _embed_both(load_embedder("teacher", None, None, max_length), data)
    metrics, agreement = {}, {}
    for ref in (a, b):
        docs, queries = _embed_both(load_embedder(ref, None, None, max_length), data)
        metrics[ref] = per_query_metrics(data, docs, queries)
        agreement[ref] = {"passages": mean_cosine(docs, teacher_docs),
                          "queries": mean_cosine(queries, teacher_queries)}
    return {
        "queries": len(data.query_ids),
        "passages": len(data.doc_ids),
        "cosine_to_teacher": agreement,
        **{name: paired_bootstrap(metrics[a][:, k], metrics[b][:, k]).__dict__
           for k, name in enumerate(("ndcg@10", "recall@100"))},
    }


def main(argv: list[str] | None = None) -> None:
    """Print the comparison of ``--a`` and ``--b`` as JSON (``b - a`` in the differences)."""
    parser = argparse.ArgumentParser(prog="python -m albatross.training.compare")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--a", required=True, help="model folder (the reference)")
    parser.add_argument("--b", required=True, help="model folder (the candidate)")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(json.dumps(compare(load_beir(args.data), args.a, args.b, args.max_length), indent=2))


if __name__ == "__main__":
    main()
