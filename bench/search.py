"""Search throughput and latency against a live server, with query micro-batching on and off.

``python -m bench.search [--sizes 10000,100000] [--concurrency 1,8,64] [--seconds 10]``

A temporary workspace gets one collection per size, filled with synthetic unit vectors written
through the store (so 100k documents need no embedding); queries are real text, embedded by the
server's encoder. The server is the real gRPC server (``searcher.server.create_server``) in a
subprocess on a free loopback port; the load comes from this process: ``concurrency`` closed-loop
callers on grpc.aio channels, each sending its next query when the last one is answered.
Micro-batching on is the server default (``batch_max_size`` 32, 2 ms wait); off is
``batch_max_size=1``. The server subprocess also counts the texts per forward pass and the
queries per index search, and how late its event loop wakes up (a stalled loop shows there).

Both servers run for the whole benchmark, each on its own copy of the store, and every point is
measured on and off back to back (in alternating order), so a busy spell of a shared host falls
on both sides of a ratio instead of on one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench import corpus
from bench.common import (
    Stopwatch,
    append_results,
    log,
    markdown_table,
    percentiles,
    plot_path,
    process_cpu_seconds,
    require_plotting,
)
from bench.models import default_model

EMBED_BATCH = 5_000
WARM_UP_S = 2.0


@dataclass(frozen=True)
class LoadResult:
    size: int
    batching: bool
    concurrency: int
    queries: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    server: dict[str, float]
    # CPU seconds the server process spent during the point (warm-up included), per answered query.
    server_cpu_ms_per_query: float | None = None

    @property
    def qps(self) -> float:
        return self.queries / self.seconds


def synthetic_vectors(count: int, dimension: int, seed: int, clusters: int = 256) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres: float32 (count, dimension)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dimension), dtype=np.float32)
    vectors = centres[rng.integers(clusters, size=count)]
    vectors += 0.6 * rng.standard_normal((count, dimension), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def populate(data_dir: Path, model: Path, sizes: list[int]) -> None:
    """One collection ``s<size>`` per size, filled with synthetic vectors through the store."""
    from indexer.config import AppConfig, StoreConfig
    from indexer.records import Chunk, CollectionSpec, Document, EncodedDocument
    from indexer.workspace import Workspace

    workspace = Workspace.open(AppConfig(store=StoreConfig(data_dir=data_dir), default_model=model))
    try:
        texts = [p.text[:300] for p in corpus.generated(2_000, seed=7)]
        for size in sizes:
            info = workspace.catalog.create(f"s{size}", CollectionSpec(model=""))
            for start in range(0, size, EMBED_BATCH):
                count = min(EMBED_BATCH, size - start)
                vectors = synthetic_vectors(count, info.dimension, seed=start + size)
                encoded = []
                for offset in range(count):
                    text = texts[(start + offset) % len(texts)]
                    document = Document(f"doc-{start + offset}", text, metadata={"n": start + offset})
                    chunk = Chunk(0, 0, len(text), text)
                    encoded.append(
                        EncodedDocument(document, document.content_hash(), (chunk,), vectors[offset : offset + 1])
                    )
                workspace.store.write_documents(info.id, encoded)
            log(f"collection s{size}: {size} synthetic vectors written")
    finally:
        workspace.close()


# -- the server subprocess ------------------------------------------------------------------------


def serve(data_dir: Path, model: Path, batch_max_size: int, stats_path: Path) -> None:
    """Run the real server on port 0; print the port; SIGUSR1 writes and resets the counters."""
    from indexer.config import AppConfig, ServerConfig, StoreConfig
    from indexer.encoder import Encoder
    from searcher.search import SearchService
    from searcher.server import create_server

    counters: dict[str, list[float]] = {"forward": [], "rank": [], "lag_ms": []}
    encode, rank = Encoder.encode, SearchService._rank

    def counting_encode(self, texts, whitening=None):  # type: ignore[no-untyped-def]
        counters["forward"].append(len(texts))
        return encode(self, texts, whitening)

    def counting_rank(self, info, index, queries, k, metadata_filter):  # type: ignore[no-untyped-def]
        counters["rank"].append(len(queries))
        return rank(self, info, index, queries, k, metadata_filter)

    Encoder.encode = counting_encode  # type: ignore[method-assign]
    SearchService._rank = counting_rank  # type: ignore[method-assign]

    def dump() -> None:
        stats = {
            "forward_passes": len(counters["forward"]),
            "texts_per_forward": float(np.mean(counters["forward"])) if counters["forward"] else 0.0,
            "index_searches": len(counters["rank"]),
            "queries_per_search": float(np.mean(counters["rank"])) if counters["rank"] else 0.0,
            "loop_lag_p99_ms": percentiles(counters["lag_ms"], [99])[0],
            "loop_lag_max_ms": max(counters["lag_ms"], default=0.0),
        }
        for values in counters.values():
            values.clear()
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        os.replace(tmp, stats_path)

    async def main() -> None:
        app = AppConfig(
            store=StoreConfig(data_dir=data_dir),
            server=ServerConfig(host="127.0.0.1", batch_max_size=batch_max_size),
            default_model=model,
        )
        running = await create_server(app, port=0)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, dump)
        print(running.port, flush=True)
        tick = 0.005
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(tick)
            counters["lag_ms"].append(max(0.0, (loop.time() - before - tick) * 1000))
        await running.stop(1.0)

    asyncio.run(main())


class Server:
    """``bench.search --serve`` in a subprocess; ``stats()`` reads and resets its counters."""

    def __init__(self, data_dir: Path, model: Path, batch_max_size: int) -> None:
        self._stats = data_dir / f"stats-{batch_max_size}.json"
        command = [
            sys.executable, "-m", "bench.search", "--serve", str(data_dir), "--model", str(model),
            "--batch-max-size", str(batch_max_size),
        ]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        line = self._process.stdout.readline() if self._process.stdout else ""
        if not line.strip().isdigit():
            self._process.kill()
            raise RuntimeError(f"the server did not start (said {line!r})")
        self.target = f"127.0.0.1:{int(line)}"

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the server process so far (None off Linux)."""
        return process_cpu_seconds(self._process.pid) if Path("/proc/self/stat").exists() else None

    def stats(self) -> dict[str, float]:
        self._stats.unlink(missing_ok=True)
        self._process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not self._stats.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("the server wrote no stats")
            time.sleep(0.05)
        return json.loads(self._stats.read_text())

    def close(self) -> None:
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()


# -- the load ---------------------------------------------------------------------------------------


async def _load(target: str, collection: str, concurrency: int, seconds: float, texts: list[str]):  # type: ignore[no-untyped-def]
    """``concurrency`` closed-loop callers for ``WARM_UP_S`` + ``seconds``: latencies (ms) of the
    calls that started after the warm-up and ended before the end, and the error count."""
    import grpc

    from protos.albatross.v1 import albatross_pb2 as pb
    from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc

    channels = [grpc.aio.insecure_channel(target) for _ in range(min(concurrency, 4))]
    stubs = [pb_grpc.SearchStub(channel) for channel in channels]
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + WARM_UP_S
    end = start + seconds

    async def caller(number: int) -> None:
        nonlocal errors
        stub = stubs[number % len(stubs)]
        sent = number
        while loop.time() < end:
            request = pb.SearchRequest(collection=collection, query=texts[sent % len(texts)], k=10)
            sent += concurrency
            began = loop.time()
            try:
                await stub.Search(request, timeout=60)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            finished = loop.time()
            if began >= start and finished <= end:
                latencies.append((finished - began) * 1000)

    await asyncio.gather(*(caller(n) for n in range(concurrency)))
    for channel in channels:
        await channel.close()
    return latencies, errors


def run_load(server: Server, size: int, batching: bool, concurrency: int, seconds: float) -> LoadResult:
    texts = corpus.queries(5_000, seed=concurrency)
    started = server.cpu_seconds()
    latencies, errors = asyncio.run(_load(server.target, f"s{size}", concurrency, seconds, texts))
    ended = server.cpu_seconds()
    stats = server.stats()
    cpu_ms = None
    if started is not None and ended is not None and latencies:
        # The warm-up's queries are not in ``latencies``: scale them in by the point's rate.
        answered = len(latencies) * (WARM_UP_S + seconds) / seconds
        cpu_ms = 1000 * (ended - started) / answered
    result = LoadResult(size, batching, concurrency, len(latencies), errors, seconds, latencies, stats, cpu_ms)
    p50, p95, p99 = percentiles(latencies)
    log(f"{size} vectors, batching {'on' if batching else 'off'}, c={concurrency}: {result.qps:.1f} q/s, "
        f"p50 {p50:.1f} p95 {p95:.1f} p99 {p99:.1f} ms, {errors} errors, server {stats}")
    return result


# -- report -----------------------------------------------------------------------------------------


def _plot(results: list[LoadResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for size in sorted({r.size for r in results}):
        for batching in (True, False):
            rows = sorted((r for r in results if r.size == size and r.batching == batching),
                          key=lambda r: r.concurrency)
            if not rows:
                continue
            label = f"{size // 1000}k vectors, batching {'on' if batching else 'off'}"
            style = "-o" if batching else "--s"
            for axis, point in zip(axes, (50, 99), strict=True):
                latency = [percentiles(r.latencies_ms, [point])[0] for r in rows]
                axis.plot([r.qps for r in rows], latency, style, label=label)
                for row, y in zip(rows, latency, strict=True):
                    axis.annotate(f"c={row.concurrency}", (row.qps, y), fontsize=7,
                                  textcoords="offset points", xytext=(3, 3))
    for axis, point in zip(axes, (50, 99), strict=True):
        axis.set_xlabel("queries/s")
        axis.set_ylabel(f"p{point} latency (ms)")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.grid(True, alpha=0.3)
        axis.set_title(f"Search: throughput vs p{point} latency")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _report(results: list[LoadResult], model_label: str, args: argparse.Namespace) -> str:
    rows = []
    for r in results:
        p50, p95, p99 = percentiles(r.latencies_ms)
        rows.append([
            f"{r.size:,}", "on" if r.batching else "off", r.concurrency, f"{r.qps:.1f}",
            f"{p50:.1f}", f"{p95:.1f}", f"{p99:.1f}", r.errors,
            f"{r.server['texts_per_forward']:.1f}", f"{r.server['queries_per_search']:.1f}",
            f"{r.server['loop_lag_p99_ms']:.1f}",
            "-" if r.server_cpu_ms_per_query is None else f"{r.server_cpu_ms_per_query:.1f}",
        ])
    header = ["vectors", "micro-batching", "concurrency", "queries/s", "p50 ms", "p95 ms", "p99 ms",
              "errors", "texts/forward", "queries/index search", "loop lag p99 ms",
              "server CPU ms/query"]
    lines = [
        f"- model: {model_label}; Flat index; k=10; {args.seconds:.0f} s per point after "
        f"{WARM_UP_S:.0f} s warm-up; server `batch_max_size` 32 (on) or 1 (off), `batch_max_wait_ms` 2",
        "",
        markdown_table(header, rows),
        "",
    ]
    by_key = {(r.size, r.batching, r.concurrency): r for r in results}
    for size in sorted({r.size for r in results}):
        top = max(r.concurrency for r in results)
        on, off = by_key.get((size, True, top)), by_key.get((size, False, top))
        if on and off and off.qps > 0:
            lines.append(f"- {size:,} vectors, concurrency {top}: micro-batching gives "
                         f"{on.qps / off.qps:.2f}x the queries/s ({on.qps:.1f} vs {off.qps:.1f})")
    lines.append("")
    lines.append(f"![throughput vs latency]({args.plot.name})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="vectors per collection, comma-separated")
    parser.add_argument("--concurrency", default="1,8,64", help="closed-loop callers, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG to draw (default: bench/search_throughput_latency.png when recording, else a temp file)")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-max-size", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    committed = Path(__file__).with_name("search_throughput_latency.png")
    args.plot = plot_path(args.plot, committed, record=not args.no_record)
    if args.serve is not None:
        serve(args.serve, args.model, args.batch_max_size, args.serve / f"stats-{args.batch_max_size}.json")
        return
    require_plotting()

    sizes = [int(s) for s in args.sizes.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="albatross-bench-search-") as folder:
        data_dir = Path(folder) / "data"
        model = default_model(Path(folder))
        with Stopwatch() as watch:
            populate(data_dir, model.folder, sizes)
        log(f"populated in {watch.seconds:.0f} s")
        shutil.copytree(data_dir, Path(folder) / "data-off")
        servers = {True: Server(data_dir, model.folder, 32)}
        try:
            servers[False] = Server(Path(folder) / "data-off", model.folder, 1)
            for point, (size, concurrency) in enumerate((s, c) for s in sizes for c in levels):
                for batching in (True, False) if point % 2 == 0 else (False, True):
                    results.append(run_load(servers[batching], size, batching, concurrency, args.seconds))
        finally:
            for server in servers.values():
                server.close()
    results.sort(key=lambda r: (r.size, not r.batching, r.concurrency))
    _plot(results, args.plot)
    append_results("Search", _report(results, model.label, args), record=not args.no_record)


if __name__ == "__main__":
    main()
