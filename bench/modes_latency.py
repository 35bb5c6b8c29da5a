"""Search latency and queries/s of each mode side by side, on one collection, in one run.

    python -m bench.modes_latency [--size 100000] [--queries 300]

A temporary workspace gets one collection of ``size`` generated WordNet passages (about 60 words
each) with synthetic unit vectors written through the store (no embedding needed); the real gRPC
server opens its vector index and builds its lexical index from SQL. One closed-loop caller then
sends real query texts, the three modes interleaved query by query (so a busy spell of a shared
host falls on every mode alike), k=10. Dense includes embedding the query; hybrid embeds it once
and runs both legs concurrently.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

from bench import corpus
from bench.common import append_results, log, percentiles
from bench.search import synthetic_vectors
from indexer.config import DEFAULT_MODEL_DIR, AppConfig, ServerConfig, StoreConfig
from indexer.records import Chunk, CollectionSpec, Document, EncodedDocument, SearchMode
from indexer.workspace import Workspace

BATCH = 5_000
COLLECTION = "modes"


def populate(config: AppConfig, size: int) -> None:
    workspace = Workspace.open(config)
    try:
        info = workspace.catalog.create(COLLECTION, CollectionSpec(model=""))
        passages = corpus.generated(size, seed=3)
        for start in range(0, size, BATCH):
            batch = passages[start : start + BATCH]
            vectors = synthetic_vectors(len(batch), info.dimension, seed=start)
            encoded = []
            for offset, passage in enumerate(batch):
                document = Document(passage.id, passage.text)
                chunk = Chunk(0, 0, len(passage.text), passage.text)
                encoded.append(
                    EncodedDocument(document, document.content_hash(), (chunk,), vectors[offset : offset + 1])
                )
            workspace.store.write_documents(info.id, encoded)
        log(f"{size} passages written")
    finally:
        workspace.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300, help="queries per mode")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    args = parser.parse_args(argv)

    from searcher.client import AlbatrossClient
    from searcher.server import create_server

    with tempfile.TemporaryDirectory(prefix="albatross-modes-") as folder:
        config = AppConfig(
            store=StoreConfig(data_dir=Path(folder)),
            server=ServerConfig(host="127.0.0.1", poll_interval_s=1.0),
            default_model=DEFAULT_MODEL_DIR,
        )
        populate(config, args.size)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        started = time.perf_counter()
        server = asyncio.run_coroutine_threadsafe(create_server(config, port=0), loop).result(3600)
        log(f"server up with both indexes in {time.perf_counter() - started:.1f} s")
        texts = corpus.queries(args.queries + 20, seed=5)
        latencies: dict[SearchMode, list[float]] = {mode: [] for mode in SearchMode}
        spent = dict.fromkeys(SearchMode, 0.0)
        try:
            with AlbatrossClient(server.target, timeout=120) as client:
                for number, text in enumerate(texts):
                    for mode in SearchMode:
                        began = time.perf_counter()
                        client.search(COLLECTION, text, 10, mode=mode)
                        elapsed = time.perf_counter() - began
                        if number >= 20:  # the first queries warm caches up
                            latencies[mode].append(1000 * elapsed)
                            spent[mode] += elapsed
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(grace_s=1.0), loop).result(120)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
    dense_p50 = percentiles(latencies[SearchMode.DENSE], (50,))[0]
    lines = [
        f"`python -m bench.modes_latency --size {args.size} --queries {args.queries}`: {args.size} passages, "
        "k=10, one closed-loop caller, modes interleaved query by query.",
        "",
        "| mode | p50 ms | p99 ms | queries/s | p50 vs dense |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode in SearchMode:
        p50, p99 = percentiles(latencies[mode], (50, 99))
        qps = len(latencies[mode]) / spent[mode]
        lines.append(f"| {mode.value} | {p50:.1f} | {p99:.1f} | {qps:.1f} | {p50 / dense_p50:.2f}x |")
    body = "\n".join(lines)
    print(body)
    append_results("Search modes: latency at one collection size", body, record=not args.no_record)


if __name__ == "__main__":
    main()
