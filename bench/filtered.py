"""Filtered search at 100%, 10%, 1% and 0.1% selectivity beside unfiltered search: p50/p99 latency
and filtered recall@10 against exact filtered search, for Flat, HNSW and the README's large spec.

``python -m bench.filtered [--size 1000000] [--specs 'Flat|IVF1024,PQ48x4fs,RFlat;nprobe=64,k_factor_rf=64']
[--queries 100] [--record]``

Vectors and queries are ``bench.index.clustered`` (seeded, clustered like sentence embeddings).
Every document has one chunk and real-looking metadata: ``tenant`` (the same for all: the 100%
filter), ``category`` (``patents`` 0.1%, ``legal`` 1%, ``news`` 10%, the rest spread over six
more, assigned at random, so independent of the vectors) and ``year``. The documents are written
to a SQLite store through ``Store.write_documents``; each filtered query then runs the served
path, one query at a time: ``searcher.filtered.FilteredSearch.search``, which estimates the
filter's share from a sample, then either lists the allowed chunks in SQL (on the index
``indexer.filter_indexes`` made on first use) and searches among them (id selector, HNSW
widening, IVF probe widening, exact search of small sets), or searches deeper and checks the
candidates. It asks for the chunks the searcher asks for (``chunk_fetch_size``); the top 10 count.

"cold" runs with an empty cache for every query (each query a new filter, or the documents
changed since the last one); "cached" shares one cache, as a searcher answering the same filter
again does. "before" is the baseline of the same run, on the first ``BASELINE_QUERIES`` queries:
every filter listed in SQL and searched among its ids, as the searcher did before
``searcher.filtered``. The truth is exact inner-product search over the documents the filter allows;
recall is chunk-level (one chunk per document), for the cold run.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import Stopwatch, append_results, log, markdown_table, percentiles
from bench.index import DIMENSION, REQUIRED_RECALL, K, _train_size, clustered, recall_at_k
from indexer.config import StoreConfig
from indexer.index import VectorIndex
from indexer.records import Chunk, CollectionSpec, Condition, Document, EncodedDocument, MetadataFilter
from indexer.spec import complete_spec
from indexer.store import Store
from searcher.filtered import AllowedIdsCache, FilteredSearch
from searcher.results import chunk_fetch_size

SERVED_SPECS = ("Flat", "HNSW32;efSearch=256", "IVF1024,PQ48x4fs,RFlat;nprobe=64,k_factor_rf=64")
# category -> share of the documents; the remainder is spread over FILLER.
SELECTIVE = {"patents": 0.001, "legal": 0.01, "news": 0.10}
FILLER = ("blog", "forum", "docs", "support", "wiki", "email")
FILTERS = {
    "100%": MetadataFilter((Condition("tenant", equals="acme"),)),
    "10%": MetadataFilter((Condition("category", equals="news"),)),
    "1%": MetadataFilter((Condition("category", equals="legal"),)),
    "0.1%": MetadataFilter((Condition("category", equals="patents"),)),
}
WRITE_BATCH = 5_000
# Queries the baseline (every filter listed in SQL) runs: at 100% of 1M each takes about 2 s.
BASELINE_QUERIES = 20


@dataclass(frozen=True)
class Row:
    spec: str
    selectivity: str
    allowed: int
    plan: str
    p50_ms: float
    p99_ms: float
    cached_p50_ms: float
    listing_p50_ms: float
    recall: float


def categories(size: int, seed: int = 7) -> np.ndarray:
    """(size,) category names with exactly the shares of ``SELECTIVE``, in random order."""
    names = np.empty(size, dtype=object)
    start = 0
    for name, share in SELECTIVE.items():
        count = round(size * share)
        names[start : start + count] = name
        start += count
    names[start:] = [FILLER[i % len(FILLER)] for i in range(size - start)]
    return np.random.default_rng(seed).permutation(names)


def fill_store(store: Store, vectors: np.ndarray, category: np.ndarray) -> int:
    """Write one document per vector; returns the collection id."""
    info = store.create_collection(
        "bench",
        complete_spec(CollectionSpec(model="synthetic"), {}),
        dimension=vectors.shape[1],
        model_revision="-",
        tokenizer_hash="-",
    )
    for start in range(0, len(vectors), WRITE_BATCH):
        docs = []
        for i in range(start, min(start + WRITE_BATCH, len(vectors))):
            text = f"document {i}"
            metadata = {"tenant": "acme", "category": str(category[i]), "year": 1990 + i % 35}
            document = Document(external_id=f"d{i}", text=text, metadata=metadata)
            chunk = Chunk(ordinal=0, start=0, end=len(text), text=text)
            docs.append(EncodedDocument(document, document.content_hash(), (chunk,), vectors[i : i + 1]))
        store.write_documents(info.id, docs)
        if start % 100_000 == 0:
            log(f"SQL: {start + len(docs):,} documents written")
    return info.id


def exact_filtered(vectors: np.ndarray, rows: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(nq, K) row numbers of the exact top-K among ``rows``, by inner product (blocked)."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 0), dtype=np.int64)
    for start in range(0, len(rows), 100_000):
        block = rows[start : start + 100_000]
        scores = queries @ vectors[block].T
        scores = np.concatenate([best_scores, scores], axis=1)
        candidates = np.concatenate([best_rows, np.broadcast_to(block, (len(queries), len(block)))], axis=1)
        top = (
            np.argpartition(-scores, K - 1, axis=1)[:, :K] if scores.shape[1] > K else np.argsort(-scores, 1)
        )
        best_scores = np.take_along_axis(scores, top, 1)
        best_rows = np.take_along_axis(candidates, top, 1)
    return best_rows


def build(spec: str, ids: np.ndarray, vectors: np.ndarray) -> tuple[VectorIndex, float]:
    with Stopwatch() as watch:
        index = VectorIndex.create(spec, DIMENSION)
        if index.needs_training:
            sample = np.random.default_rng(0).choice(
                len(vectors), _train_size(spec, len(vectors)), replace=False
            )
            index.train(vectors[np.sort(sample)])
        for start in range(0, len(vectors), 100_000):
            index.add(ids[start : start + 100_000], vectors[start : start + 100_000])
    return index, watch.seconds


def _timed_search(
    search: FilteredSearch,
    index: VectorIndex,
    collection_id: int,
    query: np.ndarray,
    metadata_filter: MetadataFilter | None,
) -> tuple[float, np.ndarray]:
    """(seconds, top-K chunk ids) of one query through the served path."""
    fetch = chunk_fetch_size(K, index.ntotal)
    with Stopwatch() as watch:
        if metadata_filter is None:
            _, ids = index.search(query, fetch)
        else:
            _, ids = search.search(collection_id, index, query, fetch, metadata_filter)
    return watch.seconds, ids[0, :K]


def _timed_listing_search(
    index: VectorIndex, store: Store, collection_id: int, query: np.ndarray, metadata_filter: MetadataFilter
) -> float:
    """Seconds of one query as every filter was served before ``searcher.filtered``: list the
    allowed chunks in SQL, then search among them (the baseline)."""
    with Stopwatch() as watch:
        index.search(
            query, chunk_fetch_size(K, index.ntotal), store.chunk_ids_matching(collection_id, metadata_filter)
        )
    return watch.seconds


def measure(
    spec: str,
    index: VectorIndex,
    store: Store,
    collection_id: int,
    queries: np.ndarray,
    truths: dict[str, tuple[np.ndarray, int]],
) -> list[Row]:
    """One query at a time, the served path, cold then cached."""
    rows = []
    cached = FilteredSearch(store, AllowedIdsCache())
    for selectivity in ("none", *FILTERS):
        metadata_filter = FILTERS.get(selectivity)
        cold, warm, listing = [], [], []
        found = np.full((len(queries), K), -1, dtype=np.int64)
        for q in range(len(queries)):
            seconds, ids = _timed_search(
                FilteredSearch(store, AllowedIdsCache(max_ids=0)),
                index,
                collection_id,
                queries[q : q + 1],
                metadata_filter,
            )
            cold.append(seconds)
            found[q, : ids.size] = ids
            warm.append(_timed_search(cached, index, collection_id, queries[q : q + 1], metadata_filter)[0])
            if metadata_filter is not None and q < BASELINE_QUERIES:
                listing.append(
                    _timed_listing_search(index, store, collection_id, queries[q : q + 1], metadata_filter)
                )
        plan = (
            "-"
            if metadata_filter is None
            else cached.plan(collection_id, index, metadata_filter, chunk_fetch_size(K, index.ntotal))[
                0
            ].value
        )
        truth, allowed_count = truths[selectivity]
        p50, p99 = percentiles(cold, (50, 99))
        (cached_p50,) = percentiles(warm, (50,))
        (listing_p50,) = percentiles(listing, (50,)) if listing else (float("nan"),)
        row = Row(
            spec,
            selectivity,
            allowed_count,
            plan,
            p50 * 1e3,
            p99 * 1e3,
            cached_p50 * 1e3,
            listing_p50 * 1e3,
            recall_at_k(found, truth),
        )
        log(
            f"{spec} {selectivity} ({plan}): p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms, "
            f"cached p50 {row.cached_p50_ms:.1f} ms, recall {row.recall:.3f}"
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--specs", default="|".join(SERVED_SPECS), help="index specs separated by '|'")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    vectors = clustered(args.size, seed=1)
    queries = clustered(args.queries, seed=2)
    category = categories(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(StoreConfig(data_dir=Path(tmp)))
        try:
            with Stopwatch() as watch:
                collection_id = fill_store(store, vectors, category)
            log(f"SQL: {args.size:,} documents in {watch.seconds:.0f} s")
            ids = store.chunk_ids_matching(collection_id, FILTERS["100%"])  # ascending = write order
            truths = {"none": (ids[exact_filtered(vectors, np.arange(args.size), queries)], args.size)}
            for selectivity, metadata_filter in FILTERS.items():
                allowed = np.flatnonzero(
                    np.isin(ids, store.chunk_ids_matching(collection_id, metadata_filter))
                )
                truths[selectivity] = (ids[exact_filtered(vectors, allowed, queries)], len(allowed))
            log("exact filtered truths computed")
            rows, builds = [], []
            for spec in args.specs.split("|"):
                index, build_s = build(spec, ids, vectors)
                log(f"{spec}: built in {build_s:.0f} s")
                builds.append((spec, build_s))
                rows += measure(spec, index, store, collection_id, queries, truths)
                del index
                gc.collect()
        finally:
            store.close()
    unfiltered = {r.spec: r.p50_ms for r in rows if r.selectivity == "none"}
    table = markdown_table(
        [
            "index spec",
            "filter",
            "allowed",
            "plan",
            "p50 ms",
            "p99 ms",
            "p50 / unfiltered p50",
            "cached p50 ms",
            "always listing p50 ms (before)",
            "before / p50",
            "recall@10",
        ],
        [
            [
                f"`{r.spec}`",
                r.selectivity,
                f"{r.allowed:,}",
                r.plan,
                f"{r.p50_ms:.1f}",
                f"{r.p99_ms:.1f}",
                f"{r.p50_ms / unfiltered[r.spec]:.2f}x",
                "-" if r.selectivity == "none" else f"{r.cached_p50_ms:.1f}",
                "-" if r.selectivity == "none" else f"{r.listing_p50_ms:.1f}",
                "-" if r.selectivity == "none" else f"{r.listing_p50_ms / r.p50_ms:.1f}x",
                f"{r.recall:.3f}" + ("" if r.recall >= REQUIRED_RECALL else " (below 0.95)"),
            ]
            for r in rows
        ],
    )
    builds_line = ", ".join(f"`{spec}` {seconds:.0f} s" for spec, seconds in builds)
    body = (
        f"{args.size:,} vectors of {DIMENSION} dimensions, {args.queries} queries one at a time, k={K}; "
        f"index builds: {builds_line}.\n\n{table}\n"
    )
    append_results(f"Filtered search at {args.size:,} vectors", body, record=args.record)


if __name__ == "__main__":
    main()
