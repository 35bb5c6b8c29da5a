"""A real server on 127.0.0.1 port 0: real store (SQLite in a temporary folder, and a real
PostgreSQL server), real index, a tiny random ALBERT, spoken to through the synchronous client.
Every test here runs once per backend."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from indexer.config import AppConfig, ServerConfig, StoreConfig
from indexer.index import EXACT_SEARCH_MAX
from indexer.records import CollectionSpec, Condition, Document, MetadataFilter, SearchMode
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.client import AlbatrossClient
from searcher.server import SERVICE_NAMES, RunningServer, create_server
from tests.fixtures.tiny_models import build_tiny_classifier
from tests.searcher.serving import ServerThread, running_server, served_app

T = TypeVar("T")

DOCUMENTS = [
    Document("kettle", "The kettle clicked off just as the rain started.", metadata={"room": "kitchen"}),
    Document("umbrella", "She left her umbrella on the bus again.", metadata={"room": "hall"}),
    Document("tomatoes", "Our neighbour grows tomatoes and beans every summer.", metadata={"room": "garden"}),
    Document("library", "The library closes early on Saturdays.", metadata={"room": "hall"}),
]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[RunningServer]:
    db_url = (
        request.getfixturevalue("postgres_server").new_database() if request.param == "postgresql" else None
    )
    app = served_app(
        tmp_path_factory.mktemp("albatross-data"),
        tiny_albert_dir,
        ServerConfig(host="127.0.0.1", port=50051, poll_interval_s=0.05, batch_max_wait_ms=1.0),
        db_url=db_url,
    )
    with running_server(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[AlbatrossClient]:
    with AlbatrossClient(server.target, timeout=60) as albatross:
        yield albatross


def wait_until_indexed(client: AlbatrossClient, collection: str, timeout_s: float = 20.0) -> None:
    """Searcher indexes tail the change log: wait until this server's index has caught up."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = client.get_collection(collection).stats
        if stats.index_sequence >= stats.last_sequence:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"index of {collection!r} stuck at {stats}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def notes(client: AlbatrossClient) -> str:
    client.create_collection("notes")
    statuses = client.upsert("notes", [*DOCUMENTS, Document("empty", "   ")])
    assert [(s.external_id, s.status) for s in statuses] == [
        ("kettle", "written"),
        ("umbrella", "written"),
        ("tomatoes", "written"),
        ("library", "written"),
        ("empty", "rejected"),
    ]
    wait_until_indexed(client, "notes")
    return "notes"


def test_ingest_acknowledges_after_commit_and_rejects_naming_the_field(
    client: AlbatrossClient, notes: str
) -> None:
    response = client.get_collection(notes)

    assert (response.stats.documents, response.stats.last_sequence > 0) == (4, True)
    assert response.stats.index_vectors == response.stats.chunks >= 4
    assert response.collection.dimension > 0
    statuses = client.upsert(notes, [DOCUMENTS[0], Document("bad", "")])
    assert (statuses[0].status, statuses[0].sequence is not None) == ("unchanged", True)
    assert statuses[1].status == "rejected" and "text" in (statuses[1].error or "")


def test_the_exact_text_of_a_document_finds_it_first(client: AlbatrossClient, notes: str) -> None:
    for document in DOCUMENTS:
        hits = client.search(notes, document.text, k=3)

        assert hits[0].external_id == document.external_id
        assert hits[0].text == document.text
        assert (hits[0].start, hits[0].end) == (0, len(document.text))
        assert hits[0].metadata == document.metadata
        assert len({hit.external_id for hit in hits}) == len(hits) == 3


def test_concurrent_searches_each_get_their_own_answer(client: AlbatrossClient, notes: str) -> None:
    # Concurrent queries share forward passes in the micro-batcher; answers must not get mixed up.
    queries = [DOCUMENTS[i % len(DOCUMENTS)] for i in range(16)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        firsts = list(pool.map(lambda d: client.search(notes, d.text, k=1)[0].external_id, queries))

    assert firsts == [d.external_id for d in queries]


def test_search_batch_answers_each_query_in_order(client: AlbatrossClient, notes: str) -> None:
    ranked = client.search_batch(notes, [DOCUMENTS[2].text, DOCUMENTS[1].text], k=2)

    assert [hits[0].external_id for hits in ranked] == ["tomatoes", "umbrella"]


def test_a_metadata_filter_restricts_the_answer(client: AlbatrossClient, notes: str) -> None:
    hall_only = MetadataFilter((Condition(field="room", equals="hall"),))

    hits = client.search(notes, DOCUMENTS[0].text, k=10, metadata_filter=hall_only)

    assert sorted(hit.external_id for hit in hits) == ["library", "umbrella"]


def test_a_filter_field_that_cannot_be_a_json_path_is_invalid_and_named(
    client: AlbatrossClient, notes: str
) -> None:
    """Field names are written into the SQL as literal paths, so one with a quote is refused."""
    bad = MetadataFilter((Condition(field="room' OR '1'='1", equals="hall"),))
    with pytest.raises(grpc.RpcError) as caught:
        client.search(notes, "anything", k=3, metadata_filter=bad)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "room' OR '1'='1" in caught.value.details() and "must match" in caught.value.details()


def test_get_documents_returns_stored_text_and_metadata(client: AlbatrossClient, notes: str) -> None:
    (document,) = client.get_documents(notes, ["umbrella", "nobody"])

    assert (document.external_id, document.text, document.metadata) == (
        "umbrella",
        DOCUMENTS[1].text,
        {"room": "hall"},
    )


def test_a_deleted_document_is_no_longer_found(client: AlbatrossClient) -> None:
    client.create_collection("short-lived")
    client.upsert("short-lived", DOCUMENTS)
    wait_until_indexed(client, "short-lived")

    deleted = client.delete("short-lived", ["kettle", "ghost"])
    wait_until_indexed(client, "short-lived")

    assert (list(deleted.deleted), list(deleted.missing)) == (["kettle"], ["ghost"])
    hits = client.search("short-lived", DOCUMENTS[0].text, k=10)
    assert "kettle" not in {hit.external_id for hit in hits}
    assert len(hits) == 3
    client.drop_collection("short-lived")
    assert "short-lived" not in {c.name for c in client.list_collections()}


def test_health_reports_serving_for_the_server_and_each_service(server: RunningServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", *SERVICE_NAMES):
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services(server: RunningServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert {"albatross.v1.Collections", "albatross.v1.Ingest", "albatross.v1.Search"} <= services
    assert "grpc.health.v1.Health" in services


def test_an_unknown_collection_is_not_found(client: AlbatrossClient) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.search("no-such-collection", "anything", k=3)

    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-collection" in caught.value.details()


@pytest.mark.parametrize("k", [0, -5])
def test_k_must_be_positive(client: AlbatrossClient, notes: str, k: int) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.search(notes, "anything", k=k)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "k must be between 1 and 1000" in caught.value.details()


def test_creating_a_collection_twice_is_already_exists(client: AlbatrossClient, notes: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.create_collection(notes)

    assert caught.value.code() is grpc.StatusCode.ALREADY_EXISTS


def test_a_vector_from_embed_searches_like_its_text(client: AlbatrossClient, notes: str) -> None:
    texts = ["rain and a kettle", "a bus and an umbrella"]
    vectors = client.embed(notes, texts)

    assert vectors.shape == (2, client.get_collection(notes).collection.dimension)
    for text, vector in zip(texts, vectors, strict=True):
        by_text = [(h.external_id, round(h.score, 5)) for h in client.search(notes, text, k=3)]
        by_vector = [(h.external_id, round(h.score, 5)) for h in client.search_vector(notes, vector, k=3)]
        assert by_vector == by_text


@pytest.mark.parametrize(
    ("make_vector", "named"),
    [
        (lambda d: np.full(3, 0.1), "dimensions"),
        (lambda d: np.full(d, np.nan), "NaN"),
        (lambda d: np.zeros(0), "non-zero length"),
    ],
    ids=["wrong-dimension", "nan", "empty"],
)
def test_a_bad_query_vector_is_invalid_argument(
    client: AlbatrossClient, notes: str, make_vector: Callable[[int], np.ndarray], named: str
) -> None:
    dimension = client.get_collection(notes).collection.dimension
    with pytest.raises(grpc.RpcError) as caught:
        client.search_vector(notes, make_vector(dimension), k=3)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert named in caught.value.details()


def test_an_index_spec_with_unknown_search_settings_is_refused_and_creates_nothing(
    client: AlbatrossClient, notes: str
) -> None:
    spec = CollectionSpec(model="", index_spec="IVF8,Flat;efSearch=64")  # efSearch belongs to HNSW
    with pytest.raises(grpc.RpcError) as caught:
        client.create_collection("ivf-typo", spec)

    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "efSearch" in caught.value.details()
    assert "ivf-typo" not in [c.name for c in client.list_collections()]


def test_a_collection_keeps_its_search_settings(client: AlbatrossClient, notes: str) -> None:
    created = client.create_collection("tuned", CollectionSpec(model="", index_spec="HNSW16;efSearch=96"))

    assert created.spec.index_spec == "HNSW16;efSearch=96"
    client.upsert("tuned", DOCUMENTS)
    wait_until_indexed(client, "tuned")
    assert client.search("tuned", DOCUMENTS[1].text, k=1)[0].external_id == "umbrella"


def test_an_expired_deadline_is_deadline_exceeded(client: AlbatrossClient, notes: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.search(notes, DOCUMENTS[0].text, k=3, timeout=1e-4)

    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED


def test_a_stopped_server_leaves_a_snapshot_that_a_new_server_starts_from(
    tmp_path: Path, tiny_albert_dir: Path
) -> None:
    app = AppConfig(
        store=StoreConfig(data_dir=tmp_path),
        server=ServerConfig(host="127.0.0.1", poll_interval_s=0.05),
        default_model=tiny_albert_dir,
    )
    thread = ServerThread()
    try:
        first = thread.run(create_server(app, port=0))
        with AlbatrossClient(first.target, timeout=60) as albatross:
            albatross.create_collection("kept")
            albatross.upsert("kept", DOCUMENTS)
            wait_until_indexed(albatross, "kept")
        thread.run(first.stop(grace_s=1.0))
        assert list(app.store.snapshot_dir.rglob("*")), "stop() wrote no snapshot"

        second = thread.run(create_server(app, port=0))
        with AlbatrossClient(second.target, timeout=60) as albatross:
            stats = albatross.get_collection("kept").stats
            assert stats.index_sequence == stats.last_sequence > 0
            assert albatross.search("kept", DOCUMENTS[3].text, k=1)[0].external_id == "library"
        thread.run(second.stop(grace_s=1.0))
    finally:
        thread.close()


def test_text_the_model_cannot_read_is_stored_counted_and_warned_about(
    client: AlbatrossClient, server: RunningServer
) -> None:
    """Three queries in three scripts once returned the same document at 0.9969, silently."""
    client.create_collection("scripts")
    statuses = client.upsert(
        "scripts",
        [Document("ar", "مرحبا بالعالم، كيف حالك اليوم؟"), Document("en", DOCUMENTS[0].text)],
    )
    assert [s.status for s in statuses] == ["written", "written"]
    assert statuses[0].warning is not None and "outside the vocabulary" in statuses[0].warning
    assert statuses[1].warning is None
    wait_until_indexed(client, "scripts")
    assert client.get_collection("scripts").stats.mostly_unknown_documents == 1

    for query in ("مرحبا بالعالم", "東京は日本の首都です。", "🎉🔥😀🎈"):
        hits, warnings = client.search_with_warnings("scripts", query, k=1)
        assert hits and len(warnings) == 1 and "outside the vocabulary" in warnings[0], query
    assert client.search_with_warnings("scripts", DOCUMENTS[0].text, k=1)[1] == []
    with grpc.insecure_channel(server.target) as channel:  # the batch answer warns per query
        ranked = pb_grpc.SearchStub(channel).SearchBatch(
            pb.SearchBatchRequest(collection="scripts", queries=["東京", DOCUMENTS[0].text], k=1), timeout=60
        )
    assert [len(result.warnings) for result in ranked.results] == [1, 0]


def test_a_collection_without_a_model_stores_and_searches_the_vectors_it_is_given(
    client: AlbatrossClient,
) -> None:
    created = client.create_collection("byo", CollectionSpec(model="none"), dimension=3)
    assert (created.dimension, created.spec.model) == (3, "none")
    axes = [
        Document(name, f"the {name} axis", vector=vector)
        for name, vector in (("x", (1.0, 0.0, 0.0)), ("y", (0.0, 2.0, 0.0)), ("z", (0.0, 0.0, 0.5)))
    ]
    too_long = Document("long", "four", vector=(1.0, 1.0, 1.0, 1.0))
    statuses = client.upsert("byo", [*axes, too_long, Document("bare", "t")])
    assert [s.status for s in statuses] == ["written"] * 3 + ["rejected"] * 2
    assert "has 4 values, the collection takes 3" in (statuses[3].error or "")
    assert "missing field 'vector'" in (statuses[4].error or "")
    wait_until_indexed(client, "byo")

    hits = client.search_vector("byo", np.array([0.1, 5.0, 0.2], dtype=np.float32), k=3)
    assert [hit.external_id for hit in hits][0] == "y" and hits[0].text == "the y axis"
    assert hits[0].score == pytest.approx(5.0 / np.linalg.norm([0.1, 5.0, 0.2]), rel=1e-5)  # both unit
    with pytest.raises(grpc.RpcError) as caught:
        client.search("byo", "the y axis", k=1)
    assert (
        caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "has no model" in caught.value.details()
    )
    with pytest.raises(grpc.RpcError) as caught:  # hybrid embeds its text for the dense leg
        client.search("byo", "the y axis", k=1, mode=SearchMode.HYBRID)
    assert (
        caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "has no model" in caught.value.details()
    )
    deadline = time.monotonic() + 30
    while (stats := client.get_collection("byo").stats).lexical_sequence < stats.last_sequence:
        assert time.monotonic() < deadline, f"the lexical index never caught up: {stats}"
        time.sleep(0.02)
    # Its texts are in the lexical index like any collection's; no model, so no vocabulary warning.
    hits, warnings = client.search_with_warnings("byo", "z axis", k=3, mode=SearchMode.LEXICAL)
    assert [hit.external_id for hit in hits][0] == "z" and warnings == []

    client.create_collection("embedded-refuses")
    (status,) = client.upsert("embedded-refuses", [Document("v", "owls", vector=(1.0, 0.0, 0.0))])
    assert status.status == "rejected" and "takes no outside vectors" in (status.error or "")
    with pytest.raises(grpc.RpcError) as caught:
        client.create_collection("no-dimension", CollectionSpec(model="none"))
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "--dimension" in caught.value.details()


def test_a_collection_created_with_a_classifier_labels_what_upsert_writes(
    client: AlbatrossClient, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = build_tiny_classifier(
        "bert-base-cased", tmp_path_factory.mktemp("cls") / "bert", ("a", "b", "c")
    )
    created = client.create_collection(
        "labelled", CollectionSpec(model="", classifier=str(folder), label_field="topic")
    )
    assert (created.spec.classifier, created.spec.label_field, created.spec.score_field) == (
        str(folder),
        "topic",
        "label_score",
    )
    assert [s.status for s in client.upsert("labelled", DOCUMENTS)] == ["written"] * len(DOCUMENTS)
    stored = client.get_documents("labelled", [d.external_id for d in DOCUMENTS])
    assert all(d.metadata["topic"] in {"a", "b", "c"} and d.metadata["room"] for d in stored)
    wait_until_indexed(client, "labelled")
    label = stored[0].metadata["topic"]
    hits = client.search(
        "labelled", "rain", k=10, metadata_filter=MetadataFilter((Condition(field="topic", equals=label),))
    )
    assert {h.external_id for h in hits} == {d.external_id for d in stored if d.metadata["topic"] == label}
    with pytest.raises(grpc.RpcError) as caught:
        client.create_collection("unlabelled", CollectionSpec(model="", classifier="/no/such/classifier"))
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION


def test_a_metadata_only_upsert_is_seen_by_filtered_search_at_once_and_keeps_the_index(
    client: AlbatrossClient,
) -> None:
    """No index holds metadata (filters and hits read it from SQL): the new metadata is there for
    the next search, before any catch-up, and the index has nothing to replay."""
    client.create_collection("retag")
    client.upsert("retag", DOCUMENTS)
    wait_until_indexed(client, "retag")
    before = client.get_collection("retag").stats
    attic = MetadataFilter((Condition(field="room", equals="attic"),))
    assert client.search("retag", DOCUMENTS[0].text, k=4, metadata_filter=attic) == []

    moved = Document(DOCUMENTS[0].external_id, DOCUMENTS[0].text, metadata={"room": "attic"})
    (status,) = client.upsert("retag", [moved])
    hits = client.search("retag", DOCUMENTS[0].text, k=4, metadata_filter=attic)

    assert status.status == "metadata_updated" and status.sequence == before.last_sequence
    assert [(h.external_id, h.metadata["room"]) for h in hits] == [("kettle", "attic")]
    after = client.get_collection("retag").stats
    assert (after.last_sequence, after.index_sequence, after.index_vectors, after.chunks) == (
        before.last_sequence,
        before.index_sequence,
        before.index_vectors,
        before.chunks,
    )
    lexical = client.search("retag", "kettle", k=4, metadata_filter=attic, mode=SearchMode.LEXICAL)
    assert [h.external_id for h in lexical] == ["kettle"]


def test_filters_on_a_large_collection_answer_what_exact_filtered_search_answers(
    client: AlbatrossClient,
) -> None:
    """More chunks than ``EXACT_SEARCH_MAX``, so the searcher post-filters a filter that allows all
    of them (``searcher.filtered``) and lists the chunks of one that allows half, none of them near
    the query. Flat is exact: each answer has one right value."""
    size = EXACT_SEARCH_MAX + 1_500
    vectors = np.random.default_rng(8).standard_normal((size, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    client.create_collection("wide", CollectionSpec(model="none"), dimension=4)
    documents = (
        Document(
            f"w{i}", f"w {i}", metadata={"tenant": "acme", "side": "-" if v[0] < 0 else "+"}, vector=tuple(v)
        )
        for i, v in enumerate(vectors.tolist())
    )
    assert {s.status for s in client.upsert("wide", documents)} == {"written"}
    wait_until_indexed(client, "wide", timeout_s=120)
    query = np.array([1.0, 0.1, 0.0, 0.0], dtype=np.float32)
    query /= np.linalg.norm(query)

    for field, value, allowed in (("tenant", "acme", np.ones(size, bool)), ("side", "-", vectors[:, 0] < 0)):
        hits = client.search_vector(
            "wide", query, k=10, metadata_filter=MetadataFilter((Condition(field=field, equals=value),))
        )
        rows = np.flatnonzero(allowed)
        truth = rows[np.argsort(-(vectors[rows] @ query), kind="stable")[:10]]
        assert [h.external_id for h in hits] == [f"w{i}" for i in truth], field
