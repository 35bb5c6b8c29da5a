"""The SQL half of a filtered search with and without its filter index, in one run.

``python -m bench.filter_sql [--size 1000000] [--queries 10] [--record]``

The documents and filters of ``bench.filtered`` (one chunk each, 8-d vectors: only SQL is timed),
in one SQLite store. ``Store.chunk_ids_matching`` is timed twice per filter: first while another
connection holds SQLite's writer lock, so the store cannot make its filter index and runs the query
without one (the fallback ``indexer.filter_indexes`` takes, which is also how every filtered
query ran before the index existed); then through a new store once the lock is gone, which makes
the index on the first query (that query is timed apart, as the build) and uses it after.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

from bench.common import Stopwatch, append_results, log, markdown_table, percentiles
from bench.filtered import FILTERS, categories, fill_store
from indexer.config import StoreConfig
from indexer.records import MetadataFilter
from indexer.store import Store

DIMENSION = 8


def _timed(store: Store, collection_id: int, metadata_filter: MetadataFilter, queries: int) -> float:
    """p50 seconds of ``queries`` calls."""
    seconds = []
    for _ in range(queries):
        with Stopwatch() as watch:
            store.chunk_ids_matching(collection_id, metadata_filter)
        seconds.append(watch.seconds)
    return percentiles(seconds, (50,))[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((args.size, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = Store.open(StoreConfig(data_dir=folder, busy_timeout_s=0.1))
        collection_id = fill_store(store, vectors, categories(args.size))
        lock = sqlite3.connect(folder / "albatross.sqlite3", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        unindexed = {name: _timed(store, collection_id, f, args.queries) for name, f in FILTERS.items()}
        lock.execute("ROLLBACK")
        lock.close()
        store.close()
        log("without index: " + ", ".join(f"{n} {s * 1e3:.0f} ms" for n, s in unindexed.items()))
        store = Store.open(StoreConfig(data_dir=folder))
        rows = []
        for name, metadata_filter in FILTERS.items():
            with Stopwatch() as build:
                allowed = len(store.chunk_ids_matching(collection_id, metadata_filter))
            indexed = _timed(store, collection_id, metadata_filter, args.queries)
            rows.append(
                [
                    name,
                    f"{allowed:,}",
                    f"{unindexed[name] * 1e3:.1f}",
                    f"{indexed * 1e3:.1f}",
                    f"{unindexed[name] / indexed:.1f}x",
                    f"{build.seconds:.1f}",
                ]
            )
            log(f"{name}: indexed {indexed * 1e3:.1f} ms")
        store.close()
    table = markdown_table(
        [
            "filter",
            "chunks allowed",
            "p50 ms without index",
            "p50 ms with index",
            "speed-up",
            "first query, building the index, s",
        ],
        rows,
    )
    body = (
        f"{args.size:,} documents, {args.queries} calls of `Store.chunk_ids_matching` per cell.\n\n{table}\n"
    )
    append_results(
        f"Filter SQL with and without the filter index at {args.size:,} documents", body, record=args.record
    )


if __name__ == "__main__":
    main()
