"""Bounded load and graceful shutdown, on real servers.

Past ``max_pending_queries`` (queries waiting for the encoder) or ``max_concurrent_rpcs`` (calls
being served) the searcher answers RESOURCE_EXHAUSTED instead of queueing without limit, and serves
normally once the burst is over. ``albatross serve`` stops on SIGTERM: health turns NOT_SERVING,
calls in flight finish, a final snapshot is written, the exit status is 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from indexer.config import AppConfig, ServerConfig
from indexer.records import Document
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.client import AlbatrossClient
from tests.searcher.serving import running_server, served_app

DOCUMENTS = [
    Document("heron", "A heron stood still in the shallow water."),
    Document("kettle", "The kettle clicked off just as the rain started."),
    Document("library", "The library closes early on Saturdays."),
]
BURST = 24


def wait_until_indexed(client: AlbatrossClient, collection: str) -> None:
    deadline = time.monotonic() + 30
    while (stats := client.get_collection(collection).stats).index_sequence < stats.last_sequence:
        assert time.monotonic() < deadline, f"index of {collection!r} stuck at {stats}"
        time.sleep(0.02)


def burst_of_searches(target: str, collection: str) -> list[grpc.StatusCode]:
    """``BURST`` searches at once, each on its own connected channel; the status code of each."""
    start = threading.Barrier(BURST)

    def one(i: int) -> grpc.StatusCode:
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            start.wait(timeout=60)  # connected first, so the calls arrive together even on a busy machine
            try:
                pb_grpc.SearchStub(channel).Search(
                    pb.SearchRequest(collection=collection, query=f"query number {i}", k=1), timeout=60
                )
            except grpc.RpcError as error:
                return error.code()  # type: ignore[no-any-return, attr-defined]
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        return list(pool.map(one, range(BURST)))


def app_for(data_dir: Path, model: Path, **server: object) -> AppConfig:
    # Queries wait 1 s for company before being embedded: a burst piles up behind the first.
    config = ServerConfig(poll_interval_s=0.05, batch_max_wait_ms=1000, batch_max_size=256)
    return served_app(data_dir, model, replace(config, **server))


@pytest.mark.parametrize(
    "bound",
    [{"max_pending_queries": 2}, {"max_concurrent_rpcs": 2}],
    ids=["pending-queries", "concurrent-rpcs"],
)
def test_a_burst_past_the_bound_is_refused_and_the_server_keeps_serving(
    tmp_path: Path, tiny_albert_dir: Path, bound: dict[str, int]
) -> None:
    with (
        running_server(app_for(tmp_path, tiny_albert_dir, **bound)) as server,
        AlbatrossClient(server.target, timeout=30) as client,
    ):
        client.create_collection("notes")
        client.upsert("notes", DOCUMENTS)
        wait_until_indexed(client, "notes")

        codes = burst_of_searches(server.target, "notes")

        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        hits = client.search("notes", DOCUMENTS[0].text, k=1)
        assert hits[0].external_id == "heron"
        assert server.batcher.pending == 0


# --- shutdown ---------------------------------------------------------------------------------


def wait_for_port(port_file: Path, process: subprocess.Popen[bytes], timeout_s: float = 300) -> int:
    deadline = time.monotonic() + timeout_s
    while not port_file.exists():
        assert process.poll() is None, f"albatross serve exited with {process.returncode}"
        assert time.monotonic() < deadline, "albatross serve never wrote its port file"
        time.sleep(0.05)
    return int(port_file.read_text())


@pytest.fixture
def serve_process(
    tmp_path: Path, tiny_albert_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``albatross serve --port 0`` in a subprocess: (process, bound port, its stderr file)."""
    port_file, stderr = tmp_path / "port", tmp_path / "stderr.log"
    command = [sys.executable, "-m", "albatross", "serve", "--port", "0", "--port-file", str(port_file)]
    command += ["--data-dir", str(tmp_path / "data"), "--drain-delay", "2.0", "--grace", "20"]
    env = {**os.environ, "ALBATROSS_MODEL": str(tiny_albert_dir)}
    env.pop("ALBATROSS_TOKEN", None)
    with stderr.open("wb") as err:
        process = subprocess.Popen(command, env=env, stderr=err, cwd=Path(__file__).parents[2])
    try:
        yield process, wait_for_port(port_file, process), stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def health_status(target: str) -> int | None:
    """The overall health status, None when the server no longer answers."""
    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            return stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status  # type: ignore[no-any-return]
    except grpc.RpcError:
        return None


def wait_for_health_change(target: str, timeout_s: float = 60) -> int | None:
    """The first health status other than SERVING (None: the server stopped answering first)."""
    deadline = time.monotonic() + timeout_s
    while (status := health_status(target)) == health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, "still SERVING long after SIGTERM"
        time.sleep(0.02)
    return status


@pytest.mark.slow
def test_sigterm_reports_not_serving_drains_the_call_in_flight_snapshots_and_exits_0(
    serve_process: tuple[subprocess.Popen[bytes], int, Path], tmp_path: Path
) -> None:
    process, port, stderr = serve_process
    target = f"127.0.0.1:{port}"
    release = threading.Event()
    late = [Document(f"late-{i}", f"Written while the server was stopping, number {i}.") for i in range(3)]

    def slow_documents() -> Iterator[Document]:
        yield DOCUMENTS[0]
        release.wait(30)  # the stream stays open across SIGTERM
        yield from late

    with AlbatrossClient(target, timeout=60) as client:
        client.create_collection("notes")
        client.upsert("notes", DOCUMENTS)
        assert health_status(target) == health_pb2.HealthCheckResponse.SERVING
        with ThreadPoolExecutor(max_workers=1) as pool:
            in_flight = pool.submit(client.upsert, "notes", slow_documents())
            time.sleep(0.5)  # the stream is open on the server
            process.send_signal(signal.SIGTERM)
            during_drain = wait_for_health_change(target)
            release.set()
            statuses = in_flight.result(timeout=60)

    assert during_drain == health_pb2.HealthCheckResponse.NOT_SERVING
    assert [s.status for s in statuses] == ["unchanged"] + ["written"] * len(late)
    assert process.wait(timeout=60) == 0
    last_sequence = max(s.sequence or 0 for s in statuses)
    snapshots = sorted((tmp_path / "data" / "snapshots" / "notes").glob("*.faiss"))
    assert snapshots and int(snapshots[-1].stem) == last_sequence
    access = [json.loads(line) for line in stderr.read_text().splitlines() if line.startswith("{")]
    upserts = [entry for entry in access if entry["method"] == "/albatross.v1.Ingest/Upsert"]
    assert [entry["code"] for entry in upserts] == ["OK", "OK"]
    assert all(entry["request_id"] for entry in upserts)
