"""A router in front of 2 shards x 2 replicas, every hop with a bearer token and mutual TLS.

The four replicas are real ``albatross serve --shard I/2`` processes on one PostgreSQL store; the
router and an unsharded reference searcher run in this process. The tests run in file order on one
cluster, each leaving it as the next expects:

1. the router refuses a wrong token or a missing client certificate as a searcher does, and
   serves health, reflection and metrics;
2. a stopped (SIGSTOP) replica is hedged around: answers come within the hedge delay, not the
   deadline;
3. under a search load, one replica of each shard is killed (SIGKILL): no request fails and every
   answer equals the reference searcher's;
4. with the second replica of shard 1 killed too, a search fails UNAVAILABLE naming shard 1, or,
   if it allows a partial answer, gets shard 0's hits flagged as partial; ``albatross search``
   does the same, with ``--allow-partial``, and warns on stderr which shard its answer lacks;
   so do lexical and hybrid searches, batches too.

``ALBATROSS_FAILOVER_LOAD_S`` sets the load's length (default 12 s; docs/SCALING.md gives a 60 s run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from indexer.config import AppConfig, RouterConfig, ServerConfig, StoreConfig
from indexer.records import SearchMode
from searcher.auth import channel_credentials
from searcher.client import AlbatrossClient
from searcher.results import Hit
from searcher.router import RunningRouter, create_router
from searcher.server import RunningServer, create_server
from tests.distributed.corpus import MULTI_CHUNK_SPEC, documents, queries
from tests.postgres import PostgresServer
from tests.searcher.serving import ServerThread
from tests.searcher.test_auth_tls import Authority
from tests.searcher.test_backpressure_shutdown import wait_for_port
from tests.searcher.test_grpc_end_to_end import wait_until_indexed

COLLECTION = "replicated-shards"
TOKEN = "token-of-the-failover-tests"
SHARDS, REPLICAS = 2, 2
HEDGE_AFTER_MS = 100.0
LOAD_S = float(os.environ.get("ALBATROSS_FAILOVER_LOAD_S", "12"))
LOAD_CLIENTS = 3
K = 5


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]


@dataclass
class Replica:
    shard: int
    process: subprocess.Popen[bytes]
    target: str
    log: Path


@dataclass
class Cluster:
    certificates: Certificates
    reference: RunningServer
    replicas: list[Replica]
    router: RunningRouter

    def client(self, target: str, timeout: float = 60) -> AlbatrossClient:
        cert, key = self.certificates.client
        return AlbatrossClient(
            target, timeout=timeout, token=TOKEN, tls_ca=self.certificates.ca, tls_cert=cert, tls_key=key
        )

    def replica(self, shard: int, number: int) -> Replica:
        return [r for r in self.replicas if r.shard == shard][number]


def _certificates(folder: Path) -> Certificates:
    ca = Authority.create(folder, "failover-ca")
    return Certificates(
        ca.cert_path, ca.issue(folder, "server", server=True), ca.issue(folder, "router", server=False)
    )


def _secured(certificates: Certificates, **fields: object) -> ServerConfig:
    """Token + TLS + client certificates required, as on every hop of the cluster."""
    cert, key = certificates.server
    return ServerConfig(
        host="127.0.0.1",
        auth_token=TOKEN,
        tls_cert=cert,
        tls_key=key,
        tls_client_ca=certificates.ca,
        **fields,  # type: ignore[arg-type]
    )


def _start_replica(
    shard: int, number: int, folder: Path, db_url: str, model: Path, certificates: Certificates
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    folder.mkdir()
    token_file = folder / "token"
    token_file.write_text(TOKEN + "\n")
    cert, key = certificates.server
    port_file, log = folder / "port", folder / "stderr.log"
    command = [sys.executable, "-m", "albatross", "serve", "--shard", f"{shard}/{SHARDS}", "--port", "0"]
    command += ["--port-file", str(port_file), "--data-dir", str(folder / "data"), "--grace", "1"]
    command += ["--token-file", str(token_file), "--tls-cert", str(cert), "--tls-key", str(key)]
    command += ["--tls-client-ca", str(certificates.ca)]
    env = {**os.environ, "ALBATROSS_MODEL": str(model), "ALBATROSS_DB": db_url}
    env.pop("ALBATROSS_TOKEN", None)
    with log.open("wb") as err:
        process = subprocess.Popen(command, env=env, stderr=err, cwd=Path(__file__).parents[2])
    return process, port_file, log


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("failover")
    certificates = _certificates(folder)
    db_url = postgres_server.new_database()
    app = AppConfig(
        store=StoreConfig(data_dir=folder / "reference", db_url=db_url),
        server=_secured(certificates, poll_interval_s=0.1, batch_max_wait_ms=1.0),
        default_model=tiny_albert_dir,
    )
    thread = ServerThread()
    started: list[subprocess.Popen[bytes]] = []
    reference: RunningServer | None = None
    router: RunningRouter | None = None
    try:
        reference = thread.run(create_server(app, port=0))
        cert, key = certificates.client
        with AlbatrossClient(
            reference.target, timeout=300, token=TOKEN, tls_ca=certificates.ca, tls_cert=cert, tls_key=key
        ) as client:
            client.create_collection(COLLECTION, MULTI_CHUNK_SPEC)
            client.upsert(COLLECTION, documents())
        pending = []
        for shard in range(SHARDS):
            for number in range(REPLICAS):
                process, port_file, log = _start_replica(
                    shard, number, folder / f"shard{shard}-{number}", db_url, tiny_albert_dir, certificates
                )
                started.append(process)
                pending.append((shard, process, port_file, log))
        replicas = [
            Replica(shard, process, f"127.0.0.1:{wait_for_port(port_file, process)}", log)
            for shard, process, port_file, log in pending
        ]
        shards = tuple(tuple(r.target for r in replicas if r.shard == shard) for shard in range(SHARDS))
        routing = RouterConfig(
            shards=shards,
            token=TOKEN,
            tls_ca=certificates.ca,
            tls_cert=cert,
            tls_key=key,
            hedge_after_ms=HEDGE_AFTER_MS,
            health_interval_s=0.2,
        )
        router = thread.run(create_router(_secured(certificates, metrics_port=0), routing, port=0))
        built = Cluster(certificates, reference, replicas, router)
        for replica in replicas:
            with built.client(replica.target, timeout=300) as client:
                wait_until_indexed(client, COLLECTION, timeout_s=300)
        yield built
    finally:
        for process in started:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()
        if router is not None:
            thread.run(router.stop(grace_s=1.0))
        if reference is not None:
            thread.run(reference.stop(grace_s=1.0))
        thread.close()


@pytest.fixture(scope="module")
def expected(cluster: Cluster) -> dict[str, list[Hit]]:
    """The unsharded searcher's answer to every query of the load."""
    with cluster.client(cluster.reference.target) as client:
        return {query: client.search(COLLECTION, query, K) for query in queries(documents())}


def _same(expected: list[Hit], got: list[Hit]) -> bool:
    return [h.external_id for h in got] == [h.external_id for h in expected] and bool(
        np.allclose([h.score for h in got], [h.score for h in expected], atol=1e-5)
    )


def _metric(cluster: Cluster, name: str, *labels: str) -> float:
    """The sum of a router metric's samples with every one of ``labels`` (``key="value"``),
    scraped from its /metrics endpoint."""
    url = f"http://127.0.0.1:{cluster.router.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as page:
        text = page.read().decode()
    samples = [line for line in text.splitlines() if line.startswith((name + "{", name + " "))]
    return sum(float(line.rsplit(" ", 1)[1]) for line in samples if all(label in line for label in labels))


def test_the_router_has_the_searchers_door(cluster: Cluster) -> None:
    target, ca = cluster.router.target, cluster.certificates.ca
    cert, key = cluster.certificates.client
    with (
        AlbatrossClient(target, token="wrong", tls_ca=ca, tls_cert=cert, tls_key=key) as intruder,
        pytest.raises(grpc.RpcError) as refused,
    ):
        intruder.list_collections(timeout=10)
    with (
        AlbatrossClient(target, token=TOKEN, tls_ca=ca) as without_certificate,
        pytest.raises(grpc.RpcError) as no_certificate,
    ):
        without_certificate.list_collections(timeout=10)
    credentials = channel_credentials(ca, cert, key)
    with grpc.secure_channel(target, credentials) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    assert no_certificate.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert {"albatross.v1.Collections", "albatross.v1.Search", "grpc.health.v1.Health"} <= services
    with cluster.client(target) as client:
        assert [c.name for c in client.list_collections()] == [COLLECTION]
    assert _metric(cluster, "albatross_grpc_server_handled_total", 'grpc_code="UNAUTHENTICATED"') >= 1
    assert _metric(cluster, "albatross_router_shard_seconds_count") >= 1
    assert _metric(cluster, "albatross_router_replica_up") == SHARDS * REPLICAS


def test_a_stopped_replica_is_hedged_around_within_the_hedge_delay(
    cluster: Cluster, expected: dict[str, list[Hit]]
) -> None:
    stopped = cluster.replica(0, 0).process
    hedges_before = _metric(cluster, "albatross_router_hedges_total")
    stopped.send_signal(signal.SIGSTOP)
    try:
        timings = []
        with cluster.client(cluster.router.target, timeout=10) as client:
            for query, want in list(expected.items())[:10]:
                started = time.perf_counter()
                got = client.search(COLLECTION, query, K)
                timings.append(time.perf_counter() - started)
                assert _same(want, got), query
    finally:
        stopped.send_signal(signal.SIGCONT)

    assert _metric(cluster, "albatross_router_hedges_total") > hedges_before
    # Every call finished far inside its 10 s deadline: the stopped replica cost the hedge delay.
    assert max(timings) < 3.0, timings


def _load(
    cluster: Cluster, expected: dict[str, list[Hit]], stop: threading.Event, outcome: list[str]
) -> None:
    texts = list(expected)
    with cluster.client(cluster.router.target, timeout=30) as client:
        i = 0
        while not stop.is_set():
            query = texts[i % len(texts)]
            i += 1
            try:
                got = client.search(COLLECTION, query, K)
            except grpc.RpcError as error:
                outcome.append(f"{error.code().name}: {error.details()}")  # type: ignore[attr-defined]
                continue
            outcome.append("ok" if _same(expected[query], got) else f"different answer to {query!r}")


def test_killing_one_replica_of_each_shard_under_load_loses_no_request(
    cluster: Cluster, expected: dict[str, list[Hit]]
) -> None:
    stop = threading.Event()
    outcomes: list[list[str]] = [[] for _ in range(LOAD_CLIENTS)]
    workers = [
        threading.Thread(target=_load, args=(cluster, expected, stop, outcome)) for outcome in outcomes
    ]
    for worker in workers:
        worker.start()
    try:
        time.sleep(LOAD_S / 3)
        cluster.replica(0, 0).process.kill()
        time.sleep(LOAD_S / 3)
        cluster.replica(1, 0).process.kill()
        time.sleep(LOAD_S / 3)
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
    results = [result for outcome in outcomes for result in outcome]
    failures = [result for result in results if result != "ok"]
    print(f"\nfail-over load: {len(results)} searches in {LOAD_S:.0f} s, {len(failures)} failed")

    assert failures == []
    assert len(results) > 10 * LOAD_CLIENTS
    assert _metric(cluster, "albatross_router_replica_up", f'replica="{cluster.replica(0, 0).target}"') == 0


def test_a_shard_without_live_replicas_fails_unavailable_or_answers_partially_if_allowed(
    cluster: Cluster, expected: dict[str, list[Hit]]
) -> None:
    cluster.replica(1, 1).process.kill()
    query = next(iter(expected))
    with cluster.client(cluster.router.target, timeout=30) as client:
        with pytest.raises(grpc.RpcError) as failed:
            client.search(COLLECTION, query, K)
        answer = client.search_allowing_partial(COLLECTION, query, K)
    with cluster.client(cluster.replica(0, 1).target) as shard_zero:
        from_shard_zero = shard_zero.search(COLLECTION, query, K)

    assert failed.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert "shard 1" in failed.value.details()  # type: ignore[attr-defined]
    assert (
        answer.partial and len(answer.missing_shards) == 1 and answer.missing_shards[0].startswith("shard 1")
    )
    assert _same(from_shard_zero, answer.hits)
    assert _metric(cluster, "albatross_router_partial_answers_total") >= 1


def _albatross_search(cluster: Cluster, token_file: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """``albatross search`` against the router, with the token and client certificate of a caller."""
    cert, key = cluster.certificates.client
    command = [sys.executable, "-m", "albatross", "search", "--collection", COLLECTION, "--k", str(K)]
    command += ["--target", cluster.router.target, "--timeout", "30", "--token-file", str(token_file)]
    command += ["--tls-ca", str(cluster.certificates.ca), "--tls-cert", str(cert), "--tls-key", str(key)]
    env = {key: value for key, value in os.environ.items() if key != "ALBATROSS_TOKEN"}
    return subprocess.run(
        [*command, *argv], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("albatross search: ")]


def test_the_search_command_answers_without_the_dead_shard_only_when_allowed_and_says_so(
    cluster: Cluster, expected: dict[str, list[Hit]], tmp_path: Path
) -> None:
    # Runs after the test above: every replica of shard 1 is dead.
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    texts = list(expected)[:3]
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps({"_id": f"q{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    run = tmp_path / "run.trec"
    with ThreadPoolExecutor(4) as pool:
        refused, single, to_file, as_json = pool.map(
            lambda argv: _albatross_search(cluster, token_file, *argv),
            [
                [texts[0]],
                [texts[0], "--allow-partial", "--json"],
                ["--queries", str(queries), "--allow-partial", "--run-out", str(run)],
                ["--queries", str(queries), "--allow-partial", "--json"],
            ],
        )
    with cluster.client(cluster.replica(0, 1).target) as shard_zero:
        from_shard_zero = {
            text: [h.external_id for h in shard_zero.search(COLLECTION, text, K)] for text in texts
        }

    for result in (refused, single, to_file, as_json):
        assert "Traceback" not in result.stderr, result.stderr
    (refusal,) = _warnings(refused.stderr)
    assert refused.returncode == 5 and refused.stdout == ""
    assert refusal.startswith("albatross search: UNAVAILABLE: shard 1 (") and "no live replica" in refusal
    assert refusal.endswith("(--allow-partial answers from the other shards)")

    (warning,) = _warnings(single.stderr)
    assert single.returncode == 0, single.stderr
    assert [hit["id"] for hit in json.loads(single.stdout)] == from_shard_zero[texts[0]]
    assert warning.startswith("albatross search: warning: partial answer without shard 1 (")

    assert to_file.returncode == 0, to_file.stderr
    ranked = [line.split() for line in run.read_text().splitlines()]
    for i, text in enumerate(texts):
        assert [docid for qid, _, docid, *_ in ranked if qid == f"q{i}"] == from_shard_zero[text]
    (warning,) = _warnings(to_file.stderr)
    assert warning.startswith("albatross search: warning: partial 3 of 3 queries answered without shard 1 (")

    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert as_json.returncode == 0, as_json.stderr
    assert [[hit["id"] for hit in r["hits"]] for r in records] == [from_shard_zero[t] for t in texts]
    assert all(
        len(r["missing_shards"]) == 1 and r["missing_shards"][0].startswith("shard 1") for r in records
    )
    assert len(_warnings(as_json.stderr)) == 1


@pytest.mark.parametrize("mode", [SearchMode.LEXICAL, SearchMode.HYBRID])
def test_lexical_and_hybrid_searches_without_the_dead_shard_are_partial_only_when_allowed(
    cluster: Cluster, expected: dict[str, list[Hit]], mode: SearchMode
) -> None:
    # Runs after the tests above: every replica of shard 1 is dead.
    texts = list(expected)[:3]
    with cluster.client(cluster.router.target, timeout=30) as client:
        with pytest.raises(grpc.RpcError) as failed:
            client.search(COLLECTION, texts[0], K, mode=mode)
        with pytest.raises(grpc.RpcError) as failed_batch:
            client.search_batch(COLLECTION, texts, K, mode=mode)
        answer = client.search_allowing_partial(COLLECTION, texts[0], K, mode=mode)
        batch = client.search_batch_allowing_partial(COLLECTION, texts, K, mode=mode)
    with cluster.client(cluster.replica(0, 1).target) as shard_zero:
        from_shard_zero = shard_zero.search_batch(COLLECTION, texts, K, mode=mode)

    for refused in (failed.value, failed_batch.value):
        assert refused.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert refused.details().startswith("shard 1 (")  # type: ignore[attr-defined]
    for missing in (answer.missing_shards, batch.missing_shards):
        assert len(missing) == 1 and missing[0].startswith("shard 1 (")
    # Shard 0's own answer, scores included: every hit from the live shard, none ranked by a
    # leg that heard from shard 1.
    assert answer.hits and _same(from_shard_zero[0], answer.hits)
    assert all(_same(want, got) for want, got in zip(from_shard_zero, batch.results, strict=True))


def test_the_search_command_answers_lexical_and_hybrid_without_the_dead_shard_when_allowed(
    cluster: Cluster, expected: dict[str, list[Hit]], tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    text = next(iter(expected))
    modes = [SearchMode.LEXICAL, SearchMode.HYBRID]
    argvs = [
        [text, "--mode", mode, *allowing]
        for mode in modes
        for allowing in ([], ["--allow-partial", "--json"])
    ]
    with ThreadPoolExecutor(len(argvs)) as pool:
        results = list(pool.map(lambda argv: _albatross_search(cluster, token_file, *argv), argvs))
    with cluster.client(cluster.replica(0, 1).target) as shard_zero:
        from_shard_zero = {
            mode: [h.external_id for h in shard_zero.search(COLLECTION, text, K, mode=mode)] for mode in modes
        }

    for mode, refused, single in zip(modes, results[::2], results[1::2], strict=True):
        assert "Traceback" not in refused.stderr + single.stderr, mode
        (refusal,) = _warnings(refused.stderr)
        assert refused.returncode == 5 and refused.stdout == "", mode
        assert refusal.startswith("albatross search: UNAVAILABLE: shard 1 (") and "no live replica" in refusal
        (warning,) = _warnings(single.stderr)
        assert single.returncode == 0, single.stderr
        assert [hit["id"] for hit in json.loads(single.stdout)] == from_shard_zero[mode], mode
        assert warning.startswith("albatross search: warning: partial answer without shard 1 (")
