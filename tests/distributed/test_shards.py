"""Shards + router: three shard servers behind a router answer exactly what one unsharded searcher
over the same PostgreSQL store answers. Merging and the shard hash are also specified on their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import numpy as np
import pytest

from indexer.config import AppConfig, RouterConfig, ServerConfig, StoreConfig
from indexer.errors import InvalidArgument, ShardUnavailable
from indexer.records import Condition, FusionMethod, MetadataFilter, SearchMode
from indexer.sharding import ShardSpec, shard_of
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.client import AlbatrossClient
from searcher.fusion import FusionRequest
from searcher.results import Hit
from searcher.router import (
    RunningRouter,
    create_router,
    in_shard_order,
    merge_top_k,
    merge_warnings,
    some_shard_answered_both,
)
from searcher.server import RunningServer, create_server
from searcher.shards import parse_shards
from tests.distributed.corpus import MULTI_CHUNK_SPEC, documents, queries
from tests.postgres import PostgresServer
from tests.searcher.test_grpc_end_to_end import ServerThread, wait_until_indexed

SHARDS = 3
COLLECTION = "sharded"

# --- the pure pieces ----------------------------------------------------------------------------


def _hit(external_id: str, score: float) -> pb.Hit:
    return pb.Hit(id=external_id, score=score)


def test_merge_keeps_the_best_k_by_score() -> None:
    merged = merge_top_k([[_hit("a", 0.9), _hit("c", 0.5)], [_hit("b", 0.7), _hit("d", 0.1)]], k=3)

    assert [h.id for h in merged] == ["a", "b", "c"]


def test_merge_breaks_score_ties_by_document_id() -> None:
    merged = merge_top_k([[_hit("zeta", 0.5)], [_hit("alpha", 0.5)], [_hit("mid", 0.5)]], k=3)

    assert [h.id for h in merged] == ["alpha", "mid", "zeta"]


def test_a_document_on_several_shards_appears_once_with_its_best_score() -> None:
    answers = [[_hit("a", 0.4), _hit("b", 0.3)], [_hit("a", 0.8)], [_hit("b", 0.35), _hit("a", 0.6)]]

    merged = merge_top_k(answers, k=10)

    assert [(h.id, round(h.score, 6)) for h in merged] == [("a", 0.8), ("b", 0.35)]
    assert [h.id for h in answers[0]] == ["a", "b"]  # inputs untouched


def test_warnings_are_merged_once_each_in_the_order_first_said() -> None:
    assert merge_warnings(["b", "a"], [], ["a", "c", "b"]) == ["b", "a", "c"]
    assert merge_warnings() == []


SHARD_NAMES = ["shard 0 (a:1)", "shard 1 (b:1|c:1)", "shard 2 (d:1)"]


def test_shards_missing_from_either_leg_are_named_once_each_in_shard_order() -> None:
    assert in_shard_order(SHARD_NAMES, ["shard 2 (d:1)", "shard 0 (a:1)"], ["shard 0 (a:1)"]) == [
        "shard 0 (a:1)",
        "shard 2 (d:1)",
    ]
    assert in_shard_order(SHARD_NAMES, [], []) == []


def test_a_hybrid_answer_no_shard_gave_both_legs_of_is_refused_naming_a_shard_without_replica() -> None:
    some_shard_answered_both(SHARD_NAMES, ["shard 0 (a:1)"], ["shard 2 (d:1)"])  # shard 1 gave both
    with pytest.raises(ShardUnavailable) as refused:
        some_shard_answered_both(SHARD_NAMES, ["shard 0 (a:1)", "shard 1 (b:1|c:1)"], ["shard 2 (d:1)"])

    assert refused.value.shard == "shard 2 (d:1)"
    assert str(refused.value).startswith("shard 2 (d:1): no live replica (no shard answered both legs")


def test_merge_of_nothing_is_nothing() -> None:
    assert merge_top_k([[], []], k=5) == []


def test_merge_works_on_domain_hits_too() -> None:
    class Named(Hit):
        @property
        def id(self) -> str:
            return self.external_id

    hits = [[Named("x", 0.2, "", "", 0, 1)], [Named("y", 0.9, "", "", 0, 1)]]

    assert [h.external_id for h in merge_top_k(hits, k=1)] == ["y"]


def test_every_chunk_belongs_to_exactly_one_shard_and_shards_are_balanced() -> None:
    ids = np.arange(1, 30_001, dtype=np.int64)

    held = np.stack([ShardSpec(SHARDS, i).keeps(ids) for i in range(SHARDS)])

    assert (held.sum(axis=0) == 1).all()
    assert np.allclose(held.sum(axis=1) / len(ids), 1 / SHARDS, atol=0.02)
    assert (shard_of(ids, 1) == 0).all()
    # Consecutive ids (one document's chunks) do not all fall on one shard.
    assert len(set(shard_of(ids[:8], SHARDS).tolist())) > 1


@pytest.mark.parametrize(("count", "index"), [(0, 0), (3, 3), (3, -1)])
def test_an_impossible_shard_is_an_invalid_argument(count: int, index: int) -> None:
    with pytest.raises(InvalidArgument):
        ShardSpec(count, index)


def test_shard_targets_are_parsed_in_order_and_checked() -> None:
    assert parse_shards("a:1, b:2,c:3") == (("a:1",), ("b:2",), ("c:3",))
    assert parse_shards("a:1|b:1, c:2 | d:2") == (("a:1", "b:1"), ("c:2", "d:2"))
    for bad in ("", ",", "a", "a:x", "a:1,a:1", "a:1|a:1", "a:1|b"):
        with pytest.raises(InvalidArgument):
            parse_shards(bad)


# --- three shards and a router against one unsharded searcher ------------------------------------


@dataclass
class Cluster:
    single: RunningServer
    shards: list[RunningServer]
    router: RunningRouter


@pytest.fixture(scope="module")
def cluster(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[Cluster]:
    app = AppConfig(
        store=StoreConfig(data_dir=tmp_path_factory.mktemp("shards"), db_url=postgres_server.new_database()),
        server=ServerConfig(host="127.0.0.1", poll_interval_s=0.1, batch_max_wait_ms=1.0),
        default_model=tiny_albert_dir,
    )
    thread = ServerThread()
    started: list[RunningServer] = []
    router = None
    try:
        single = thread.run(create_server(app, port=0))
        started.append(single)
        with AlbatrossClient(single.target, timeout=300) as client:
            client.create_collection(COLLECTION, MULTI_CHUNK_SPEC)
            client.upsert(COLLECTION, documents())
        for index in range(SHARDS):
            shard_app = replace(app, server=replace(app.server, shard_count=SHARDS, shard_index=index))
            started.append(thread.run(create_server(shard_app, port=0)))
        shards = RouterConfig(shards=tuple((s.target,) for s in started[1:]))
        router = thread.run(create_router(app.server, shards, port=0))
        yield Cluster(single, started[1:], router)
    finally:
        if router is not None:
            thread.run(router.stop(grace_s=1.0))
        for server in started:
            thread.run(server.stop(grace_s=1.0))
        thread.close()


@pytest.fixture(scope="module")
def clients(cluster: Cluster) -> Iterator[tuple[AlbatrossClient, AlbatrossClient]]:
    with (
        AlbatrossClient(cluster.single.target, timeout=300) as single,
        AlbatrossClient(cluster.router.target, timeout=300) as routed,
    ):
        wait_until_indexed(single, COLLECTION, timeout_s=180)
        wait_until_indexed(routed, COLLECTION, timeout_s=180)
        yield single, routed


def _same_answer(expected: list[Hit], got: list[Hit]) -> None:
    assert [h.external_id for h in got] == [h.external_id for h in expected]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in expected], atol=1e-5)
    assert [(h.text, h.start, h.end) for h in got] == [(h.text, h.start, h.end) for h in expected]


def test_each_shard_holds_a_part_and_together_they_hold_everything(
    cluster: Cluster, clients: tuple[AlbatrossClient, AlbatrossClient]
) -> None:
    single, routed = clients
    stats = single.get_collection(COLLECTION).stats
    held = []
    for shard in cluster.shards:
        with AlbatrossClient(shard.target, timeout=60) as client:
            held.append(client.get_collection(COLLECTION).stats.index_vectors)

    assert sum(held) == stats.chunks == routed.get_collection(COLLECTION).stats.index_vectors
    assert all(0 < part < stats.chunks for part in held)


@pytest.mark.parametrize("k", [1, 5, 20])
def test_the_router_answers_exactly_what_one_searcher_answers(
    clients: tuple[AlbatrossClient, AlbatrossClient], k: int
) -> None:
    single, routed = clients
    for query in queries(documents()):
        _same_answer(single.search(COLLECTION, query, k), routed.search(COLLECTION, query, k))


def test_search_batch_and_filters_go_through_the_router_too(
    clients: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    single, routed = clients
    odd = MetadataFilter((Condition(field="parity", equals=1),))
    texts = queries(documents(), count=12)

    expected = single.search_batch(COLLECTION, texts, 7, odd)
    got = routed.search_batch(COLLECTION, texts, 7, odd)

    assert len(got) == len(expected) == len(texts)
    for want, have in zip(expected, got, strict=True):
        _same_answer(want, have)
        assert all(hit.metadata["parity"] == 1 for hit in have)


def test_documents_and_collections_are_read_through_the_router(
    clients: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    single, routed = clients

    assert [c.name for c in routed.list_collections()] == [c.name for c in single.list_collections()]
    assert routed.get_documents(COLLECTION, ["doc-004"]) == single.get_documents(COLLECTION, ["doc-004"])


def test_router_errors_keep_the_shards_status_code(clients: tuple[AlbatrossClient, AlbatrossClient]) -> None:
    _, routed = clients
    with pytest.raises(grpc.RpcError) as missing:
        routed.search("no-such-collection", "anything", 3)
    with pytest.raises(grpc.RpcError) as late:
        routed.search(COLLECTION, "anything", 3, timeout=1e-4)
    with pytest.raises(grpc.RpcError) as bad_k:
        routed.search(COLLECTION, "anything", 0)

    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    assert "shard" in missing.value.details() and "no-such-collection" in missing.value.details()
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert bad_k.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_a_request_wrong_in_several_fields_names_the_same_field_routed_or_not(
    clients: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    named = []
    for client in clients:
        for call in (
            lambda c: c.search(COLLECTION, "  ", 0),
            lambda c: c.search_batch(COLLECTION, ["ok", ""], 0),
        ):
            with pytest.raises(grpc.RpcError) as error:
                call(client)
            assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            named.append(error.value.details())
    single, routed = named[:2], named[2:]
    assert routed == single
    assert "query" in single[0] and "queries[1]" in single[1]


def test_router_overhead_against_one_searcher(clients: tuple[AlbatrossClient, AlbatrossClient]) -> None:
    """Median latency through the router (3 shards) over one searcher, same queries, same run."""
    single, routed = clients
    texts = queries(documents(), count=30)

    def median_ms(client: AlbatrossClient) -> float:
        timings = []
        for text in texts:
            started = time.perf_counter()
            client.search(COLLECTION, text, 10)
            timings.append(time.perf_counter() - started)
        return 1000 * float(np.median(timings))

    median_ms(single), median_ms(routed)  # warm both paths
    single_ms, routed_ms = median_ms(single), median_ms(routed)
    print(
        f"\nrouter overhead: single {single_ms:.2f} ms, router {routed_ms:.2f} ms, x{routed_ms / single_ms:.2f}"
    )
    assert routed_ms > 0 and single_ms > 0


# --- lexical and hybrid through the router -------------------------------------------------------


def test_lexical_search_through_the_router_is_close_to_one_searcher(
    clients: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    """Each shard scores BM25 with its own statistics (see searcher/router.py): the same documents
    are found, rankings agree at the top, scores differ a little."""
    single, routed = clients
    texts = queries(documents(), count=20)
    expected = single.search_batch(COLLECTION, texts, 10, mode=SearchMode.LEXICAL)
    got = routed.search_batch(COLLECTION, texts, 10, mode=SearchMode.LEXICAL)
    overlap = [
        len({h.external_id for h in a} & {h.external_id for h in b}) / 10
        for a, b in zip(expected, got, strict=True)
    ]
    top_agree = sum(a[0].external_id == b[0].external_id for a, b in zip(expected, got, strict=True)) / len(
        texts
    )
    print(
        f"\nrouted lexical vs one searcher: mean top-10 overlap {np.mean(overlap):.2f}, top-1 agreement {top_agree:.2f}"
    )
    assert np.mean(overlap) >= 0.8 and top_agree >= 0.8
    assert all(h.legs[0].leg == "lexical" for hits in got for h in hits)
    # A note's own number is rare: one shard holds it, and every router answer puts it first.
    for i in (3, 41, 77):
        assert (
            routed.search(COLLECTION, f"note {i}", 1, mode=SearchMode.LEXICAL)[0].external_id
            == f"doc-{i:03d}"
        )


def test_hybrid_is_fused_at_the_router_from_each_legs_merged_answer(
    clients: tuple[AlbatrossClient, AlbatrossClient],
) -> None:
    single, routed = clients
    odd = MetadataFilter((Condition(field="parity", equals=1),))
    texts = queries(documents(), count=12)
    for fusion in (
        None,
        FusionRequest(FusionMethod.RRF),
        FusionRequest(FusionMethod.CONVEX, dense_weight=0.6),
    ):
        expected = single.search_batch(COLLECTION, texts, 7, odd, mode=SearchMode.HYBRID, fusion=fusion)
        got = routed.search_batch(COLLECTION, texts, 7, odd, mode=SearchMode.HYBRID, fusion=fusion)
        overlaps = []
        for want, have in zip(expected, got, strict=True):
            assert all(hit.metadata["parity"] == 1 for hit in have) and len(have) == 7
            assert {leg.leg for hit in have for leg in hit.legs} <= {"dense", "lexical"}
            overlaps.append(len({h.external_id for h in want} & {h.external_id for h in have}) / 7)
        # The dense leg merges exactly; only the shards' lexical scores move: most of it agrees.
        print(f"\nrouted hybrid ({fusion}) vs one searcher: mean top-7 overlap {np.mean(overlaps):.2f}")
        assert np.mean(overlaps) >= 0.7
    one = routed.search(COLLECTION, texts[0], 5, mode=SearchMode.HYBRID)
    assert len(one) == 5 and any(len(hit.legs) == 2 for hit in one)


# --- what the shards say beside their hits -------------------------------------------------------

UNREADABLE = ("東京は日本の首都です。", "🎉🔥😀🎈 🎉🔥", "مرحبا بالعالم")


@pytest.mark.parametrize("mode", [SearchMode.DENSE, SearchMode.LEXICAL, SearchMode.HYBRID])
def test_the_router_passes_on_the_shards_vocabulary_warnings_once(
    cluster: Cluster, clients: tuple[AlbatrossClient, AlbatrossClient], mode: SearchMode
) -> None:
    """A dense query is embedded by one shard and sent to the others as a vector, so its warning
    comes with the vector; a lexical one is warned about by every shard, and said once."""
    single, routed = clients
    readable = queries(documents(), count=1)[0]
    expected = {}
    for query in UNREADABLE:
        _, expected[query] = single.search_with_warnings(COLLECTION, query, 3, mode=mode)
        _, got = routed.search_with_warnings(COLLECTION, query, 3, mode=mode)
        assert len(expected[query]) == 1 and "outside the vocabulary" in expected[query][0], query
        assert got == expected[query], query
    assert routed.search_with_warnings(COLLECTION, readable, 3, mode=mode)[1] == []

    request = pb.SearchBatchRequest(
        collection=COLLECTION,
        queries=[UNREADABLE[0], readable, UNREADABLE[1]],
        k=3,
        mode=pb.SearchMode.Value(f"SEARCH_MODE_{mode.name}"),
    )
    with grpc.insecure_channel(cluster.router.target) as channel:
        ranked = pb_grpc.SearchStub(channel).SearchBatch(request, timeout=120)
    assert [list(result.warnings) for result in ranked.results] == [
        expected[UNREADABLE[0]],
        [],
        expected[UNREADABLE[1]],
    ]


def test_embed_through_the_router_says_what_search_would_warn_about(cluster: Cluster) -> None:
    request = pb.EmbedRequest(collection=COLLECTION, queries=[UNREADABLE[1], "note 3"])
    with grpc.insecure_channel(cluster.router.target) as channel:
        embedded = pb_grpc.SearchStub(channel).Embed(request, timeout=120)
    assert len(embedded.vectors) == 2
    assert [len(said.warnings) for said in embedded.warnings] == [1, 0]


def test_a_metadata_only_upsert_is_seen_at_once_by_every_shard_and_the_router(
    cluster: Cluster, clients: tuple[AlbatrossClient, AlbatrossClient]
) -> None:
    """Shards share one store and read metadata from it at query time: nothing to catch up."""
    single, routed = clients
    target = documents()[0]
    moved = MetadataFilter((Condition(field="tag", equals="moved"),))
    assert routed.search(COLLECTION, target.text, 5, moved) == []
    before = routed.get_collection(COLLECTION).stats

    (status,) = single.upsert(COLLECTION, [replace(target, metadata={**target.metadata, "tag": "moved"})])

    assert status.status == "metadata_updated"
    hits = routed.search(COLLECTION, target.text, 5, moved)
    assert [(h.external_id, h.metadata["tag"]) for h in hits] == [(target.external_id, "moved")]
    lexical = routed.search(COLLECTION, target.title, 5, moved, mode=SearchMode.LEXICAL)
    assert [h.external_id for h in lexical] == [target.external_id]
    found: list[str] = []
    for shard in cluster.shards:  # the shards holding its chunks find it, the others nothing
        with AlbatrossClient(shard.target, timeout=60) as client:
            found.extend(h.external_id for h in client.search(COLLECTION, target.text, 5, moved))
    assert set(found) == {target.external_id}
    after = routed.get_collection(COLLECTION).stats
    assert (after.last_sequence, after.index_vectors) == (before.last_sequence, before.index_vectors)
