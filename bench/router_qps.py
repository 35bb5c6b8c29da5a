"""Search throughput of one searcher and of a router over N shard searchers, in one run.

Everything runs in this process on loopback (one event loop, the machine's cores shared by all
servers): a PostgreSQL store (started here, as the tests start theirs), the tests' tiny ALBERT,
the tests' multi-chunk corpus. ``--clients`` threads send Search calls for ``--seconds``.

    python -m bench.router_qps --shards 3 --clients 8 --seconds 10 [--record]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from bench.common import append_results, log, markdown_table, percentiles
from indexer.config import AppConfig, ServerConfig, StoreConfig
from searcher.client import AlbatrossClient
from searcher.router import create_router
from searcher.server import create_server
from tests.distributed.corpus import MULTI_CHUNK_SPEC, documents, queries
from tests.fixtures.tiny_models import build_tiny_albert
from tests.postgres import start_postgres
from tests.searcher.test_grpc_end_to_end import ServerThread, wait_until_indexed

COLLECTION = "bench"


def load(target: str, texts: list[str], clients: int, seconds: float) -> tuple[float, list[float]]:
    """(queries per second, latencies in ms) of ``clients`` threads searching for ``seconds``."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client(offset: int) -> None:
        with AlbatrossClient(target, timeout=60) as albatross:
            i = offset
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                albatross.search(COLLECTION, texts[i % len(texts)], 10)
                with lock:
                    latencies.append(1000 * (time.perf_counter() - started))
                i += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - started), latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--record", action="store_true", help="append the results to bench/RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="albatross-router-bench-") as scratch:
        work = Path(scratch)
        postgres = start_postgres(work)
        thread = ServerThread()
        servers = []
        try:
            app = AppConfig(
                store=StoreConfig(data_dir=work / "data", db_url=postgres.new_database()),
                server=ServerConfig(host="127.0.0.1", poll_interval_s=0.2),
                default_model=build_tiny_albert(work / "tiny"),
            )
            servers.append(thread.run(create_server(app, port=0)))
            with AlbatrossClient(servers[0].target, timeout=120) as client:
                client.create_collection(COLLECTION, MULTI_CHUNK_SPEC)
                client.upsert(COLLECTION, documents(args.docs))
            for index in range(args.shards):
                shard = replace(app.server, shard_count=args.shards, shard_index=index)
                servers.append(thread.run(create_server(replace(app, server=shard), port=0)))
            router = thread.run(create_router(app.server, [s.target for s in servers[1:]], port=0))
            texts = queries(documents(args.docs), count=200)
            rows = []
            for label, target in (
                ("one searcher", servers[0].target),
                (f"router, {args.shards} shards", router.target),
            ):
                with AlbatrossClient(target, timeout=120) as client:
                    wait_until_indexed(client, COLLECTION, timeout_s=120)
                load(target, texts, args.clients, 2.0)  # warm up
                log(f"{label}: {args.clients} clients for {args.seconds:.0f} s")
                qps, latencies = load(target, texts, args.clients, args.seconds)
                p50, p95, p99 = percentiles(latencies)
                rows.append([label, f"{qps:.1f}", f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}"])
            thread.run(router.stop(grace_s=1.0))
        finally:
            for server in servers:
                thread.run(server.stop(grace_s=1.0))
            thread.close()
            postgres.stop()
    body = (
        f"{args.docs} documents (multi-chunk, tiny test ALBERT), k=10, {args.clients} concurrent clients, "
        "all servers in one process on this machine.\n\n"
        + markdown_table(["target", "queries/s", "p50 ms", "p95 ms", "p99 ms"], rows)
    )
    append_results("Search through a shard router", body, record=args.record)


if __name__ == "__main__":
    main()
