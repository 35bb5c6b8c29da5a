"""``albatross eval``: retrieval quality of encoders on a BEIR-layout dataset, beside BM25.

Each model gets a throwaway collection in a temporary workspace (the user's data is never
touched): the corpus is ingested through the real ingestion path (so docs/s is the real
figure), every judged query is embedded and searched through the real index, and chunk hits
are folded into documents as the searcher does.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from albatross.evaluation.beir import BeirDataset
from albatross.evaluation.bm25 import BM25
from albatross.evaluation.metrics import mean_metrics
from indexer.config import AppConfig, IngestConfig, StoreConfig
from indexer.readers import read_path
from indexer.records import CollectionSpec
from indexer.sync import SyncedIndex
from indexer.workspace import Workspace
from searcher.results import OVERFETCH_FACTOR, fold_chunk_hits

DEPTH = 100  # Recall@100 needs 100 documents per query


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
    documents = (
        (row["_id"], f"{row.get('title') or ''} {row['text']}") for row in _corpus_rows(dataset.corpus)
    )
    index = BM25(documents)
    seconds = time.perf_counter() - started
    rankings = {q.query_id: list(index.search(q.text, DEPTH)) for q in dataset.judged_queries()}
    return _row("BM25 (k1=0.9, b=0.4)", mean_metrics(rankings, dataset.qrels), None, seconds), rankings


def _corpus_rows(corpus: Path):  # type: ignore[no-untyped-def]
    with corpus.open(encoding="utf-8") as stream:
        for line in stream:
            if line.strip():
                yield json.loads(line)


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


def encoder_rankings(workspace: Workspace, collection: str, dataset: BeirDataset) -> dict[str, list[str]]:
    """Top-``DEPTH`` document ids per judged query, through the collection's index."""
    info = workspace.catalog.get(collection)
    queries = dataset.judged_queries()
    vectors = workspace.catalog.encoder_for(info).encode([q.text for q in queries])
    index = SyncedIndex.open(workspace.store, info, workspace.config.store.snapshot_dir)
    scores, ids = index.search(vectors, DEPTH * OVERFETCH_FACTOR)
    rankings = {}
    for query, row_scores, row_ids in zip(queries, scores, ids, strict=True):
        chunks = workspace.store.chunks_by_id([int(i) for i in row_ids if i >= 0])
        hits = fold_chunk_hits(list(row_scores), list(row_ids), chunks, DEPTH)
        rankings[query.query_id] = [hit.external_id for hit in hits]
    return rankings


def encoder_row(
    base: AppConfig,
    dataset: BeirDataset,
    system: str,
    spec: CollectionSpec,
    progress: Callable[[int], None] | None = None,
) -> tuple[EvalRow, dict[str, list[str]]]:
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
            rankings = encoder_rankings(workspace, "eval", dataset)
        finally:
            workspace.close()
    metrics = mean_metrics(rankings, dataset.qrels)
    return _row(system, metrics, summary.docs_per_second, summary.seconds), rankings


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
