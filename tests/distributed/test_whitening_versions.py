"""A refit behind a router: shards on two whitening versions are never merged.

Two shards over one PostgreSQL store, shard 1 with two replicas: one follows the store every
0.1 s, the other ("slow") only when told to (its poll interval is an hour), so after a refit it
stays on the old map as long as the test needs. Router A reaches shard 1 through the slow replica
alone, router B through both (no hedging, so which replica is asked first only rotates). An
unsharded searcher on the same store is the reference. The tests run in file order on one cluster.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from indexer.config import AppConfig, IngestConfig, RouterConfig, ServerConfig, StoreConfig, WhiteningPolicy
from indexer.workspace import Workspace
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.client import AlbatrossClient
from searcher.router import RunningRouter, create_router
from searcher.server import RunningServer, create_server
from tests.distributed.corpus import MULTI_CHUNK_SPEC, documents, queries
from tests.postgres import PostgresServer
from tests.searcher.serving import ServerThread
from tests.searcher.test_grpc_end_to_end import wait_until_indexed

COLLECTION = "whitened-shards"
SPEC = replace(MULTI_CHUNK_SPEC, whitening=True)
# A first map once 8 vectors are stored (the first upsert fits version 1) ...
POLICY = WhiteningPolicy(min_sample=8, growth=2.0, max_sample=1_000)
# ... and a refit on a smaller sample, so that version 2 is another map, not the same one again.
REFIT = WhiteningPolicy(min_sample=8, growth=2.0, max_sample=40)
K = 5


@dataclass
class Cluster:
    reference: RunningServer
    shard0: RunningServer
    slow: RunningServer  # shard 1, follows the store only when told to
    fast: RunningServer  # shard 1
    router_a: RunningRouter  # shard 1 = the slow replica
    router_b: RunningRouter  # shard 1 = slow | fast
    thread: ServerThread
    db_url: str
    folder: Path
    model: Path


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("whitening-versions")
    db_url = postgres_server.new_database()

    def app(name: str, **server: object) -> AppConfig:
        fields: dict[str, object] = {"host": "127.0.0.1", "poll_interval_s": 0.1, "batch_max_wait_ms": 1.0}
        return AppConfig(
            store=StoreConfig(data_dir=folder / name, db_url=db_url),
            ingest=IngestConfig(progress=False, whitening=POLICY),
            server=ServerConfig(**{**fields, **server}),  # type: ignore[arg-type]
            default_model=tiny_albert_dir,
        )

    thread = ServerThread()
    started: list[RunningServer | RunningRouter] = []
    try:
        reference = thread.run(create_server(app("reference"), port=0))
        started.append(reference)
        with AlbatrossClient(reference.target, timeout=300) as client:
            client.create_collection(COLLECTION, SPEC)
            client.upsert(COLLECTION, documents())
        shard0 = thread.run(create_server(app("shard0", shard_count=2, shard_index=0), port=0))
        started.append(shard0)
        hourly = app("slow", shard_count=2, shard_index=1, poll_interval_s=3600.0)
        slow = thread.run(create_server(hourly, port=0))
        started.append(slow)
        fast = thread.run(create_server(app("fast", shard_count=2, shard_index=1), port=0))
        started.append(fast)
        lagging = RouterConfig(shards=((shard0.target,), (slow.target,)))
        router_a = thread.run(create_router(app("router-a").server, lagging, port=0))
        started.append(router_a)
        both = RouterConfig(shards=((shard0.target,), (slow.target, fast.target)), hedge_after_ms=None)
        router_b = thread.run(create_router(app("router-b").server, both, port=0))
        started.append(router_b)
        for server in (reference, shard0, slow, fast):
            with AlbatrossClient(server.target, timeout=300) as client:
                wait_until_indexed(client, COLLECTION, timeout_s=300)
        yield Cluster(
            reference, shard0, slow, fast, router_a, router_b, thread, db_url, folder, tiny_albert_dir
        )
    finally:
        for running in reversed(started):
            thread.run(running.stop(grace_s=1.0))
        thread.close()


def _stub(target: str) -> tuple[grpc.Channel, pb_grpc.SearchStub]:
    channel = grpc.insecure_channel(target)
    return channel, pb_grpc.SearchStub(channel)


def _search(target: str, request: pb.SearchRequest) -> pb.SearchResponse:
    channel, stub = _stub(target)
    with channel:
        return stub.Search(request, timeout=60)


def _search_batch(target: str, request: pb.SearchBatchRequest) -> pb.SearchBatchResponse:
    channel, stub = _stub(target)
    with channel:
        return stub.SearchBatch(request, timeout=60)


def _vector(cluster: Cluster, text: str) -> pb.Vector:
    channel, stub = _stub(cluster.reference.target)
    with channel:
        return stub.Embed(pb.EmbedRequest(collection=COLLECTION, queries=[text]), timeout=60).vectors[0]


def _by_vector(cluster: Cluster, text: str) -> pb.SearchRequest:
    return pb.SearchRequest(collection=COLLECTION, vector=_vector(cluster, text), k=K)


def _ranked(answer: pb.SearchResponse) -> list[tuple[str, float]]:
    return [(hit.id, hit.score) for hit in answer.hits]


def _same(expected: pb.SearchResponse, got: pb.SearchResponse) -> None:
    assert [hit.id for hit in got.hits] == [hit.id for hit in expected.hits]
    np.testing.assert_allclose([h.score for h in got.hits], [h.score for h in expected.hits], atol=1e-5)
    assert got.whitening_version == expected.whitening_version


def _version_of(target: str, request: pb.SearchRequest) -> int:
    return _search(target, request).whitening_version


def _wait_for_version(target: str, request: pb.SearchRequest, version: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while _version_of(target, request) != version:
        if time.monotonic() > deadline:
            raise AssertionError(f"{target} never answered in whitening version {version}")
        time.sleep(0.05)


def _counted(router: RunningRouter, method: str, outcome: str) -> float:
    value = router.metrics.registry.get_sample_value(
        "albatross_router_mixed_whitening_versions_total", {"method": method, "outcome": outcome}
    )
    return value or 0.0


def _refused(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value


TEXTS = queries(documents(), count=6)


def test_every_searcher_and_router_says_the_version_it_answered_in(cluster: Cluster) -> None:
    request = _by_vector(cluster, TEXTS[0])
    expected = _search(cluster.reference.target, request)

    assert expected.HasField("whitening_version") and expected.whitening_version == 1
    for server in (cluster.shard0, cluster.slow, cluster.fast):
        assert _version_of(server.target, request) == 1
    for router in (cluster.router_a, cluster.router_b):
        _same(expected, _search(router.target, request))
    lexical = pb.SearchRequest(collection=COLLECTION, query=TEXTS[0], k=K, mode=pb.SEARCH_MODE_LEXICAL)
    assert _search(cluster.reference.target, lexical).whitening_version == 0  # no map ranks BM25


def test_after_a_refit_a_shard_still_on_the_old_map_is_not_merged(cluster: Cluster) -> None:
    request = _by_vector(cluster, TEXTS[1])
    before = _search(cluster.reference.target, request)
    store = StoreConfig(data_dir=cluster.folder / "refit", db_url=cluster.db_url)
    workspace = Workspace.open(AppConfig(store=store, default_model=cluster.model))
    try:
        assert workspace.catalog.refit_whitening(workspace.catalog.get(COLLECTION), REFIT, force=True) == 2
    finally:
        workspace.close()
    for server in (cluster.reference, cluster.shard0, cluster.fast):
        _wait_for_version(server.target, request, 2)
    after = _search(cluster.reference.target, request)
    assert _ranked(after) != _ranked(before)  # another map: a mixed merge would rank by neither
    assert _version_of(cluster.slow.target, request) == 1
    refused_before = _counted(cluster.router_a, "Search", "refused")

    error = _refused(lambda: _search(cluster.router_a.target, request))

    assert error.code() is grpc.StatusCode.UNAVAILABLE
    assert repr(COLLECTION) in error.details() and "different whitening versions" in error.details()
    assert "shard 0 " in error.details() and ": 2" in error.details() and ": 1" in error.details()
    assert _counted(cluster.router_a, "Search", "refused") == refused_before + 1


def test_a_request_allowing_partial_answers_is_answered_without_the_shard_behind(cluster: Cluster) -> None:
    request = _by_vector(cluster, TEXTS[1])
    request.allow_partial = True
    partial_before = _counted(cluster.router_a, "Search", "partial")

    got = _search(cluster.router_a.target, request)
    alone = _search(cluster.shard0.target, _by_vector(cluster, TEXTS[1]))

    assert got.partial and len(got.missing_shards) == 1 and "shard 1" in got.missing_shards[0]
    _same(alone, got)  # shard 0's own answer, in version 2: nothing of the old map merged in
    assert got.whitening_version == 2
    assert _counted(cluster.router_a, "Search", "partial") == partial_before + 1


def test_batches_and_hybrid_are_refused_too_but_lexical_is_answered(cluster: Cluster) -> None:
    router = cluster.router_a.target
    batch = pb.SearchBatchRequest(collection=COLLECTION, queries=TEXTS, k=K)
    hybrid = pb.SearchRequest(collection=COLLECTION, query=TEXTS[2], k=K, mode=pb.SEARCH_MODE_HYBRID)
    lexical = pb.SearchBatchRequest(collection=COLLECTION, queries=TEXTS, k=K, mode=pb.SEARCH_MODE_LEXICAL)

    assert _refused(lambda: _search_batch(router, batch)).code() is grpc.StatusCode.UNAVAILABLE
    assert _refused(lambda: _search(router, hybrid)).code() is grpc.StatusCode.UNAVAILABLE
    answered = _search_batch(router, lexical)
    assert len(answered.results) == len(TEXTS) and all(result.hits for result in answered.results)
    assert {result.whitening_version for result in answered.results} == {0}
    assert _counted(cluster.router_a, "SearchBatch", "refused") >= 2


def test_a_hybrid_search_allowing_partial_answers_is_fused_without_the_shard_behind(cluster: Cluster) -> None:
    hybrid = pb.SearchRequest(
        collection=COLLECTION, query=TEXTS[2], k=K, mode=pb.SEARCH_MODE_HYBRID, allow_partial=True
    )
    batch = pb.SearchBatchRequest(
        collection=COLLECTION, queries=TEXTS[:3], k=K, mode=pb.SEARCH_MODE_HYBRID, allow_partial=True
    )
    partial_before = _counted(cluster.router_a, "SearchBatch", "partial")

    got = _search(cluster.router_a.target, hybrid)
    got_batch = _search_batch(cluster.router_a.target, batch)
    hybrid.allow_partial = batch.allow_partial = False
    alone = _search(cluster.shard0.target, hybrid)
    alone_batch = _search_batch(cluster.shard0.target, batch)

    # Shard 1 answered the lexical leg, but lags on the dense one: it is left out of both, so the
    # fused answer is shard 0's own, in version 2.
    for answer in (got, got_batch, *got_batch.results):
        assert answer.partial and len(answer.missing_shards) == 1
        assert answer.missing_shards[0].startswith("shard 1 (")
    assert got.hits
    for want, have in zip((alone, *alone_batch.results), (got, *got_batch.results), strict=True):
        assert [hit.id for hit in have.hits] == [hit.id for hit in want.hits]
        np.testing.assert_allclose([h.score for h in have.hits], [h.score for h in want.hits], atol=1e-6)
    assert got.whitening_version == 2
    assert _counted(cluster.router_a, "SearchBatch", "partial") >= partial_before + 2


def test_a_replica_already_on_the_new_map_answers_for_its_shard(cluster: Cluster) -> None:
    requests = [_by_vector(cluster, text) for text in TEXTS[:4]]
    retried_before = _counted(cluster.router_b, "Search", "retried")

    # Shard 1's replicas are asked first in turn: half of these go to the slow one first.
    for request in requests:
        _same(_search(cluster.reference.target, request), _search(cluster.router_b.target, request))

    assert _counted(cluster.router_b, "Search", "retried") >= retried_before + 2
    assert _counted(cluster.router_b, "Search", "refused") == 0


def test_once_the_last_shard_has_switched_the_router_answers_in_the_new_version(cluster: Cluster) -> None:
    cluster.thread.run(cluster.slow.indexes.refresh(), timeout=300)  # its poll, come early
    request = _by_vector(cluster, TEXTS[3])

    got = _search(cluster.router_a.target, request)

    _same(_search(cluster.reference.target, request), got)
    assert got.whitening_version == 2
    batch = pb.SearchBatchRequest(collection=COLLECTION, queries=TEXTS, k=K)
    expected = _search_batch(cluster.reference.target, batch)
    got_batch = _search_batch(cluster.router_a.target, batch)
    for want, have in zip(expected.results, got_batch.results, strict=True):
        _same(want, have)
