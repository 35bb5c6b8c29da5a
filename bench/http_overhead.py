"""One search over HTTP/JSON against the same search over gRPC, on one server process.

``python -m bench.http_overhead [--size 10000] [--concurrency 1,16] [--seconds 8] [--rounds 2]``

A temporary workspace gets one collection of synthetic unit vectors (``bench.search.populate``).
The real server (``searcher.server.create_server`` with its HTTP API on) runs in a subprocess with
gRPC and HTTP on free loopback ports, so both protocols reach the same encoder, batcher and index.
Two kinds of search: ``text`` (a real query, embedded by the server: what a user sends) and
``vector`` (a query vector, no encoder: what is left is the transport, so the protocols' own cost
shows). The load comes from this process: ``concurrency`` closed-loop callers on grpc.aio channels
or on one aiohttp session with keep-alive, every answer parsed (protobuf or JSON); request bodies
are made before the clock starts. Every round runs both protocols back to back, alternating which
goes first, so a busy spell of a shared host falls on both; the server's CPU time per query is the
figure such a spell moves least.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench import corpus
from bench.common import append_results, log, markdown_table, percentiles, process_cpu_seconds
from bench.models import default_model
from bench.search import WARM_UP_S, populate, synthetic_vectors

KINDS = ("text", "vector")
REQUESTS = 2_000
K = 10


@dataclass(frozen=True)
class Point:
    kind: str
    protocol: str
    concurrency: int
    latencies_ms: list[float]
    errors: int
    seconds: float
    server_cpu_s: float  # user + system CPU of the server process during the point, warm-up included
    answered: int  # queries answered during the point, warm-up included (estimated)

    @property
    def qps(self) -> float:
        return len(self.latencies_ms) / self.seconds

    @property
    def server_cpu_ms_per_query(self) -> float:
        return 1000 * self.server_cpu_s / max(1, self.answered)


def serve(data_dir: Path, model: Path) -> None:
    """The real server, gRPC and HTTP on port 0; prints ``grpc_port http_port``; stops on SIGTERM."""
    from indexer.config import AppConfig, ServerConfig, StoreConfig
    from searcher.server import create_server

    async def main() -> None:
        app = AppConfig(
            store=StoreConfig(data_dir=data_dir), server=ServerConfig(host="127.0.0.1"), default_model=model
        )
        running = await create_server(app, port=0, http_port=0)
        assert running.http is not None
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print(running.port, running.http.port, flush=True)
        await stop.wait()
        await running.stop(1.0)

    asyncio.run(main())


def search_requests(kind: str, collection: str, dimension: int, seed: int) -> list:  # type: ignore[type-arg]
    """``REQUESTS`` SearchRequest messages of ``kind`` (text queries, or unit vectors)."""
    from protos.albatross.v1 import albatross_pb2 as pb

    if kind == "text":
        return [
            pb.SearchRequest(collection=collection, query=q, k=K) for q in corpus.queries(REQUESTS, seed=seed)
        ]
    vectors = synthetic_vectors(REQUESTS, dimension, seed=seed)
    return [
        pb.SearchRequest(collection=collection, vector=pb.Vector(values=v.tolist()), k=K) for v in vectors
    ]


async def closed_loop(
    call: Callable[[int], Awaitable[bool]], concurrency: int, seconds: float
) -> tuple[list[float], int]:
    """``concurrency`` callers for ``WARM_UP_S`` + ``seconds``, each calling ``call(i)`` (True: ok)
    when its last call is answered: latencies (ms) of calls inside the measured window, and errors."""
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + WARM_UP_S
    end = start + seconds

    async def caller(number: int) -> None:
        nonlocal errors
        sent = number
        while loop.time() < end:
            began = loop.time()
            ok = await call(sent)
            finished = loop.time()
            sent += concurrency
            if not ok:
                errors += 1
            elif began >= start and finished <= end:
                latencies.append((finished - began) * 1000)

    await asyncio.gather(*(caller(n) for n in range(concurrency)))
    return latencies, errors


async def grpc_load(target: str, requests: list, concurrency: int, seconds: float) -> tuple[list[float], int]:  # type: ignore[type-arg]
    import grpc

    from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc

    channels = [grpc.aio.insecure_channel(target) for _ in range(min(concurrency, 4))]
    stubs = [pb_grpc.SearchStub(channel) for channel in channels]

    async def call(i: int) -> bool:
        try:
            await stubs[i % len(stubs)].Search(requests[i % len(requests)], timeout=60)
        except grpc.aio.AioRpcError:
            return False
        return True

    try:
        return await closed_loop(call, concurrency, seconds)
    finally:
        for channel in channels:
            await channel.close()


async def http_load(url: str, requests: list, concurrency: int, seconds: float) -> tuple[list[float], int]:  # type: ignore[type-arg]
    import aiohttp
    from google.protobuf import json_format

    bodies = [json_format.MessageToJson(request, indent=None).encode() for request in requests]
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def call(i: int) -> bool:
            async with session.post(url, data=bodies[i % len(bodies)], headers=headers) as answer:
                payload = await answer.read()
                if answer.status != 200:
                    return False
                json.loads(payload)
                return True

        return await closed_loop(call, concurrency, seconds)


def measure(
    kind: str,
    protocol: str,
    ports: tuple[int, int],
    server_pid: int,
    requests: list,
    concurrency: int,
    seconds: float,
) -> Point:  # type: ignore[type-arg]
    collection = requests[0].collection
    if protocol == "grpc":
        load = grpc_load(f"127.0.0.1:{ports[0]}", requests, concurrency, seconds)
    else:
        load = http_load(
            f"http://127.0.0.1:{ports[1]}/v1/collections/{collection}/search", requests, concurrency, seconds
        )
    cpu_before = process_cpu_seconds(server_pid)
    latencies, errors = asyncio.run(load)
    cpu = process_cpu_seconds(server_pid) - cpu_before
    # The warm-up's queries are not in ``latencies``: scaled in by the point's rate, as bench.search does.
    answered = round(len(latencies) * (WARM_UP_S + seconds) / seconds)
    point = Point(kind, protocol, concurrency, latencies, errors, seconds, cpu, answered)
    p50, p95, p99 = percentiles(latencies)
    log(
        f"{kind} {protocol} c={concurrency}: {point.qps:.1f} q/s, p50 {p50:.2f} p95 {p95:.2f} p99 {p99:.2f} ms, "
        f"server {point.server_cpu_ms_per_query:.2f} CPU ms/query, {errors} errors"
    )
    return point


def _merge(points: list[Point]) -> Point:
    first = points[0]
    return Point(
        first.kind,
        first.protocol,
        first.concurrency,
        [ms for p in points for ms in p.latencies_ms],
        sum(p.errors for p in points),
        sum(p.seconds for p in points),
        sum(p.server_cpu_s for p in points),
        sum(p.answered for p in points),
    )


def report(points: list[Point], size: int, model_label: str) -> str:
    keys = dict.fromkeys((p.kind, p.concurrency, p.protocol) for p in points)
    merged = {key: _merge([p for p in points if (p.kind, p.concurrency, p.protocol) == key]) for key in keys}
    rows = []
    for (kind, concurrency, protocol), point in merged.items():
        p50, p95, p99 = percentiles(point.latencies_ms)
        rows.append(
            [
                kind,
                protocol,
                concurrency,
                len(point.latencies_ms),
                f"{point.qps:.1f}",
                f"{p50:.2f}",
                f"{p95:.2f}",
                f"{p99:.2f}",
                f"{point.server_cpu_ms_per_query:.2f}",
                point.errors,
            ]
        )
    overhead = []
    for kind, concurrency in dict.fromkeys((kind, c) for kind, c, _ in merged):
        grpc_point, http_point = merged[(kind, concurrency, "grpc")], merged[(kind, concurrency, "http")]
        grpc_p50, http_p50 = (
            percentiles(grpc_point.latencies_ms, [50])[0],
            percentiles(http_point.latencies_ms, [50])[0],
        )
        grpc_cpu, http_cpu = grpc_point.server_cpu_ms_per_query, http_point.server_cpu_ms_per_query
        overhead.append(
            [
                kind,
                concurrency,
                f"{http_p50 - grpc_p50:+.2f}",
                f"{http_p50 / grpc_p50:.2f}x",
                f"{http_point.qps / grpc_point.qps:.2f}x",
                f"{http_cpu - grpc_cpu:+.2f}",
                f"{http_cpu / grpc_cpu:.2f}x",
            ]
        )
    header = [
        "kind",
        "protocol",
        "concurrency",
        "queries",
        "q/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "server CPU ms/query",
        "errors",
    ]
    against = [
        "kind",
        "concurrency",
        "p50 HTTP - gRPC (ms)",
        "p50 ratio",
        "q/s ratio",
        "server CPU ms/query HTTP - gRPC",
        "CPU ratio",
    ]
    return (
        f"One server process, {size} synthetic vectors (Flat), k={K}, {model_label}; text queries are "
        "embedded by the server, vector queries skip the encoder. Every round ran both protocols back "
        "to back, alternating which went first.\n\n"
        + markdown_table(header, rows)
        + "\n\nHTTP against gRPC, same run:\n\n"
        + markdown_table(against, overhead)
        + "\n"
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=10_000, help="vectors in the collection")
    parser.add_argument("--concurrency", default="1,16", help="closed-loop callers, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per point and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of both protocols per point")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.model)
        return
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="albatross-bench-http-") as folder:
        data_dir = Path(folder) / "data"
        model = default_model(Path(folder))
        populate(data_dir, model.folder, [args.size])
        command = [
            sys.executable,
            "-m",
            "bench.http_overhead",
            "--serve",
            str(data_dir),
            "--model",
            str(model.folder),
        ]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            line = server.stdout.readline() if server.stdout else ""
            ports = tuple(int(part) for part in line.split())
            dimension = _dimension(ports[1], f"s{args.size}")
            for kind in KINDS:
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    requests = search_requests(kind, f"s{args.size}", dimension, seed=concurrency)
                    for round_number in range(args.rounds):
                        for protocol in ("grpc", "http") if round_number % 2 == 0 else ("http", "grpc"):
                            point = measure(
                                kind, protocol, ports, server.pid, requests, concurrency, args.seconds
                            )  # type: ignore[arg-type]
                            points.append(point)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
    title = "HTTP/JSON against gRPC, one search"
    append_results(title, report(points, args.size, model.label), record=not args.no_record)


def _dimension(http_port: int, collection: str) -> int:
    import urllib.request

    with urllib.request.urlopen(
        f"http://127.0.0.1:{http_port}/v1/collections/{collection}", timeout=60
    ) as answer:
        return int(json.loads(answer.read())["collection"]["dimension"])


if __name__ == "__main__":
    main()
