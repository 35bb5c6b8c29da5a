"""``albatross eval``: retrieval quality of encoders on a BEIR-layout dataset, beside BM25.

Each model gets a throwaway collection in a temporary workspace (the user's data is never
touched): the corpus is ingested through the real ingestion path (so docs/s is the real
figure), every judged query is embedded and searched through the real index, and chunk hits
are folded into documents as the searcher does. The same collection's lexical index (the
engine and analyser that serve ``--mode lexical``) gives the lexical row, and both lists fused
as a served hybrid search fuses them give the hybrid rows.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from albatross.evaluation.beir import BeirDataset, corpus_rows, passage_text
from albatross.evaluation.bm25 import BM25
from albatross.evaluation.metrics import mean_metrics, paired_bootstrap, per_query_ndcg
from indexer.config import AppConfig, IngestConfig, StoreConfig
from indexer.lexical_sync import SyncedLexicalIndex
from indexer.readers import read_path
from indexer.records import CollectionSpec, Fusion, FusionMethod
from indexer.sync import SyncedIndex
from indexer.workspace import Workspace
from searcher.fusion import fuse
from searcher.results import OVERFETCH_FACTOR, Hit, fold_chunk_hits
from searcher.search import HYBRID_CANDIDATES

DEPTH = 100  # Recall@100 needs 100 documents per query
# Each leg contributes what a served hybrid search of k = DEPTH takes from it.
LEG_DEPTH = max(DEPTH, HYBRID_CANDIDATES)
Rankings = dict[str, list[str]]
# The fusions every eval measures beside the collection's default: fusing costs no encoding, and
# the default must stay the one the measurement picks (docs/OPERATIONS.md).
EVAL_FUSIONS = (
    Fusion(FusionMethod.ADAPTIVE, dense_weight=0.75),
    Fusion(FusionMethod.RRF, rrf_k=60),
    Fusion(FusionMethod.CONVEX, dense_weight=0.3),
    Fusion(FusionMethod.CONVEX, dense_weight=0.5),
    Fusion(FusionMethod.CONVEX, dense_weight=0.7),
)


@dataclass(frozen=True)
class EvalRow:
    system: str
    ndcg_at_10: float
    recall_at_100: float
    mrr_at_10: float
    queries: int
    docs_per_second: float | None
    index_seconds: float


def bm25_row(dataset: BeirDataset) -> tuple[EvalRow, dict[str, list[str]]]:
    started = time.perf_counter()
    documents = ((row["_id"], passage_text(row)) for row in corpus_rows(dataset.corpus))
    index = BM25(documents)
    seconds = time.perf_counter() - started
    rankings = {q.query_id: list(index.search(q.text, DEPTH)) for q in dataset.judged_queries()}
    return _row("BM25 (k1=0.9, b=0.4)", mean_metrics(rankings, dataset.qrels), None, seconds), rankings


def _row(system: str, metrics: dict[str, float], docs_per_second: float | None, seconds: float) -> EvalRow:
    return EvalRow(
        system=system,
        ndcg_at_10=metrics["ndcg@10"],
        recall_at_100=metrics["recall@100"],
        mrr_at_10=metrics["mrr@10"],
        queries=int(metrics["queries"]),
        docs_per_second=docs_per_second,
        index_seconds=seconds,
    )


def _folded(
    workspace: Workspace, query_ids: list[str], scores: np.ndarray, ids: np.ndarray, leg: str
) -> dict[str, list[Hit]]:
    chunks = workspace.store.chunks_by_id(sorted({int(i) for i in ids.ravel() if i >= 0}))
    return {
        query_id: fold_chunk_hits(list(row_scores), list(row_ids), chunks, LEG_DEPTH, leg)
        for query_id, row_scores, row_ids in zip(query_ids, scores, ids, strict=True)
    }


def leg_hits(
    workspace: Workspace, collection: str, dataset: BeirDataset
) -> tuple[dict[str, list[Hit]], dict[str, list[Hit]]]:
    """(dense, lexical) top-``LEG_DEPTH`` documents per judged query, through the collection's
    vector index and its lexical index, folded as the searcher folds them."""
    info = workspace.catalog.get(collection)
    queries = dataset.judged_queries()
    query_ids, texts = [q.query_id for q in queries], [q.text for q in queries]
    vectors = workspace.catalog.encoder_for(info).encode(texts)
    snapshot_dir = workspace.config.store.snapshot_dir
    index = SyncedIndex.open(workspace.store, info, snapshot_dir)
    dense = _folded(workspace, query_ids, *index.search(vectors, LEG_DEPTH * OVERFETCH_FACTOR), "dense")
    lexical_index = SyncedLexicalIndex.open(workspace.store, info, snapshot_dir)
    try:
        found = lexical_index.search(texts, LEG_DEPTH * OVERFETCH_FACTOR)
    finally:
        lexical_index.close()
    return dense, _folded(workspace, query_ids, *found, "lexical")


def ranked_ids(hits: dict[str, list[Hit]], depth: int = DEPTH) -> Rankings:
    return {query_id: [hit.external_id for hit in found[:depth]] for query_id, found in hits.items()}


def fused_rankings(
    dense: dict[str, list[Hit]], lexical: dict[str, list[Hit]], fusion: Fusion, texts: dict[str, str]
) -> Rankings:
    """Both legs' lists fused per query (``texts``: query id -> its text) as a served hybrid
    search of k = ``DEPTH`` fuses them."""
    return {
        query_id: [
            hit.external_id
            for hit in fuse(dense[query_id], lexical[query_id], fusion, DEPTH, query=texts[query_id])
        ]
        for query_id in dense
    }


def fusion_name(fusion: Fusion) -> str:
    if fusion.method is FusionMethod.RRF:
        return f"rrf k={fusion.rrf_k}"
    if fusion.method is FusionMethod.ADAPTIVE:
        return f"adaptive w={fusion.dense_weight:g}/{1 - fusion.dense_weight:g}"
    return f"convex w={fusion.dense_weight:g}"


@dataclass(frozen=True)
class SystemRuns:
    """One encoder's eval: its dense row, the lexical row, and one hybrid row per fusion, each
    with the rankings it was measured on (for paired comparisons)."""

    dense: tuple[EvalRow, Rankings]
    lexical: tuple[EvalRow, Rankings]
    hybrid: list[tuple[EvalRow, Rankings]]


def encoder_rows(
    base: AppConfig,
    dataset: BeirDataset,
    system: str,
    spec: CollectionSpec,
    progress: Callable[[int], None] | None = None,
    fusions: Sequence[Fusion] = (),
) -> SystemRuns:
    with tempfile.TemporaryDirectory(prefix="albatross-eval-") as folder:
        config = replace(
            base,
            store=StoreConfig(data_dir=Path(folder)),
            ingest=IngestConfig(docs_per_transaction=base.ingest.docs_per_transaction, progress=False),
        )
        workspace = Workspace.open(config)
        try:
            workspace.catalog.create("eval", spec)
            summary = workspace.ingestor.ingest("eval", read_path(str(dataset.corpus)), on_progress=progress)
            dense, lexical = leg_hits(workspace, "eval", dataset)
        finally:
            workspace.close()
    rate, seconds = summary.docs_per_second, summary.seconds
    dense_ids, lexical_ids = ranked_ids(dense), ranked_ids(lexical)
    analyzer = spec.lexical_analyzer.value
    default_fusion = Fusion.of(spec)
    hybrid = []
    texts = {q.query_id: q.text for q in dataset.judged_queries()}
    for fusion in dict.fromkeys((default_fusion, *fusions)):
        ids = fused_rankings(dense, lexical, fusion, texts)
        default = " default" if fusion == default_fusion else ""
        name = f"{system} + hybrid ({fusion_name(fusion)}{default})"
        hybrid.append((_row(name, mean_metrics(ids, dataset.qrels), None, seconds), ids))
    return SystemRuns(
        dense=(_row(system, mean_metrics(dense_ids, dataset.qrels), rate, seconds), dense_ids),
        lexical=(
            _row(
                f"lexical (Tantivy BM25, {analyzer})", mean_metrics(lexical_ids, dataset.qrels), None, seconds
            ),
            lexical_ids,
        ),
        hybrid=hybrid,
    )


def paired_lines(
    baseline: tuple[EvalRow, Rankings], others: Sequence[tuple[EvalRow, Rankings]], dataset: BeirDataset
) -> list[str]:
    """Per-query nDCG@10 differences of each of ``others`` against ``baseline``: mean, bootstrap
    95% interval, queries won and lost (43 queries cannot separate systems a point apart)."""
    base_row, base_ids = baseline
    base = per_query_ndcg(base_ids, dataset.qrels)
    lines = [f"paired nDCG@10 differences vs {base_row.system!r} (mean [95% bootstrap], won/lost):"]
    for row, ids in others:
        other = per_query_ndcg(ids, dataset.qrels)
        keys = sorted(base)
        paired = paired_bootstrap(np.array([base[q] for q in keys]), np.array([other[q] for q in keys]))
        lines.append(
            f"  {row.system[:60]:<60} {paired.difference:+.4f} [{paired.low:+.4f}, {paired.high:+.4f}] "
            f"{paired.b_better}/{paired.a_better}"
        )
    return lines


def format_table(rows: Sequence[EvalRow], dataset: str) -> str:
    header = f"{'system':<48} {'nDCG@10':>8} {'R@100':>7} {'MRR@10':>7} {'docs/s':>8}"
    lines = [
        f"dataset: {dataset} ({rows[0].queries if rows else 0} judged queries)",
        header,
        "-" * len(header),
    ]
    for row in rows:
        rate = f"{row.docs_per_second:8.1f}" if row.docs_per_second is not None else f"{'-':>8}"
        lines.append(
            f"{row.system[:48]:<48} {row.ndcg_at_10:8.4f} {row.recall_at_100:7.4f} {row.mrr_at_10:7.4f} {rate}"
        )
    return "\n".join(lines)


def rows_to_json(rows: Sequence[EvalRow], dataset: str) -> str:
    return json.dumps({"dataset": dataset, "results": [asdict(row) for row in rows]}, indent=2)
