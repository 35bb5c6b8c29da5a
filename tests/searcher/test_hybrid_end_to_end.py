"""Lexical and hybrid search through a real server on 127.0.0.1 port 0 (real Tantivy, real FAISS,
the tiny random ALBERT), against SQLite and a real PostgreSQL server: same rankings on both.

The collection is real text (the shipped WordNet sample) where every passage also carries a part
number of the ``AB-1234-C`` kind: the lookups a user makes by identifier, which an encoder does
not know and BM25 does."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from indexer.config import AppConfig, ServerConfig
from indexer.records import CollectionSpec, Condition, Document, FusionMethod, MetadataFilter, SearchMode
from indexer.samples import SAMPLE_CORPUS
from searcher.client import AlbatrossClient
from searcher.fusion import FusionRequest
from searcher.server import RunningServer
from tests.searcher.serving import running_server, served_app

PASSAGES = 240
EXACT_SHARE = 0.95


def part_number(rng: np.random.Generator) -> str:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return f"{''.join(rng.choice(list(letters), 2))}-{rng.integers(1000, 10000)}-{rng.choice(list(letters))}"


def identified_passages() -> list[tuple[Document, str]]:
    """(document, its part number): real passages, each with a distinct seeded identifier."""
    rng = np.random.default_rng(16)
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()[:PASSAGES]]
    seen: set[str] = set()
    out = []
    for row in rows:
        while (number := part_number(rng)) in seen:
            pass
        seen.add(number)
        text = f"{row['text']} Catalogue part {number}."
        metadata = {"category": row["metadata"]["category"]}
        out.append((Document(row["_id"], text, row["title"], metadata), number))
    return out


def wait_until_indexed(client: AlbatrossClient, collection: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = client.get_collection(collection).stats
        if min(stats.index_sequence, stats.lexical_sequence) >= stats.last_sequence:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"indexes of {collection!r} stuck at {stats}")
        time.sleep(0.05)


def app_for(data_dir: Path, model: Path, db_url: str | None = None) -> AppConfig:
    config = ServerConfig(host="127.0.0.1", port=50051, poll_interval_s=0.05, batch_max_wait_ms=1.0)
    return served_app(data_dir, model, config, db_url=db_url)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[Document, str]]:
    return identified_passages()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path, corpus: list[tuple[Document, str]]
) -> Iterator[RunningServer]:
    with running_server(app_for(tmp_path_factory.mktemp("hybrid"), tiny_albert_dir)) as running:
        with AlbatrossClient(running.target, timeout=60) as client:
            client.create_collection("parts")
            client.upsert("parts", [document for document, _ in corpus])
            wait_until_indexed(client, "parts")
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[AlbatrossClient]:
    with AlbatrossClient(server.target, timeout=60) as albatross:
        yield albatross


def first_hit_share(client: AlbatrossClient, corpus: list[tuple[Document, str]], **ranking: object) -> float:
    ranked = client.search_batch("parts", [number for _, number in corpus], 5, **ranking)  # type: ignore[arg-type]
    found = [
        bool(hits) and hits[0].external_id == doc.external_id
        for (doc, _), hits in zip(corpus, ranked, strict=True)
    ]
    return sum(found) / len(found)


def test_identifier_lookups_find_their_passage_first(
    client: AlbatrossClient, corpus: list[tuple[Document, str]]
) -> None:
    """The tiny random encoder is the worst case for fusion: its top hits are noise. The default
    fusion (adaptive) sees a part number and leans on BM25, so the passage stays first; RRF (ranks
    alone) and the same convex weight without the lookup's mirror let the encoder's unrelated top
    hits beat it."""
    lexical = first_hit_share(client, corpus, mode=SearchMode.LEXICAL)
    default = first_hit_share(client, corpus, mode=SearchMode.HYBRID)
    adaptive = first_hit_share(
        client, corpus, mode=SearchMode.HYBRID, fusion=FusionRequest(FusionMethod.ADAPTIVE)
    )
    rrf = first_hit_share(client, corpus, mode=SearchMode.HYBRID, fusion=FusionRequest(FusionMethod.RRF))
    unmirrored = first_hit_share(
        client, corpus, mode=SearchMode.HYBRID, fusion=FusionRequest(FusionMethod.CONVEX, dense_weight=0.75)
    )
    dense = first_hit_share(client, corpus, mode=SearchMode.DENSE)
    print(
        f"identifier found first: lexical {lexical:.3f} default {default:.3f} rrf {rrf:.3f} "
        f"convex 0.75 {unmirrored:.3f} dense {dense:.3f}"
    )
    assert lexical >= EXACT_SHARE and default >= EXACT_SHARE
    assert default == adaptive  # the default fusion is adaptive
    assert dense < lexical  # the encoder has never seen these strings
    assert rrf < default and unmirrored < default


def test_the_adaptive_fusion_keeps_its_dense_share_for_prose(
    client: AlbatrossClient, corpus: list[tuple[Document, str]]
) -> None:
    """Prose is no lookup: adaptive ranks it exactly as convex at its dense_weight does."""
    texts = ["a bird of prey that hunts by night", "the colour of autumn leaves", "to sail across the sea"]
    default = client.search_batch("parts", texts, 10, mode=SearchMode.HYBRID)
    convex = client.search_batch(
        "parts",
        texts,
        10,
        mode=SearchMode.HYBRID,
        fusion=FusionRequest(FusionMethod.CONVEX, dense_weight=0.75),
    )
    assert [[(h.external_id, h.score) for h in hits] for hits in default] == [
        [(h.external_id, h.score) for h in hits] for hits in convex
    ]


def test_a_hit_says_which_legs_found_it(client: AlbatrossClient, corpus: list[tuple[Document, str]]) -> None:
    document, number = corpus[7]
    lexical = client.search("parts", number, 3, mode=SearchMode.LEXICAL)[0]
    assert lexical.external_id == document.external_id
    assert [leg.leg for leg in lexical.legs] == ["lexical"] and lexical.legs[0].rank == 1
    assert lexical.score == pytest.approx(lexical.legs[0].score) and lexical.score > 0
    # Deep enough that the random encoder's list and the lexical one overlap.
    hybrid = client.search("parts", f"{document.title} {number}", 200, mode=SearchMode.HYBRID)
    both = [hit for hit in hybrid if {leg.leg for leg in hit.legs} == {"dense", "lexical"}]
    assert both, "a query of a passage's title and part number is found by both legs"
    dense = client.search("parts", number, 3)
    assert all([leg.leg for leg in hit.legs] == ["dense"] for hit in dense)


def test_filters_apply_to_every_mode(client: AlbatrossClient, corpus: list[tuple[Document, str]]) -> None:
    category = corpus[0][0].metadata["category"]
    only = MetadataFilter((Condition(field="category", equals=category),))
    members = {doc.external_id for doc, _ in corpus if doc.metadata["category"] == category}
    outsider, number = next((doc, n) for doc, n in corpus if doc.metadata["category"] != category)
    for mode in SearchMode:
        hits = client.search("parts", f"{outsider.title} {number}", 20, only, mode=mode)
        assert hits and {hit.external_id for hit in hits} <= members, mode


def test_lexical_mode_follows_upserts_and_deletes(client: AlbatrossClient) -> None:
    client.upsert("parts", [Document("fresh", "A brand new widget, part QQ-9999-Z.")])
    wait_until_indexed(client, "parts")
    assert client.search("parts", "QQ-9999-Z", 1, mode=SearchMode.LEXICAL)[0].external_id == "fresh"
    client.upsert("parts", [Document("fresh", "The widget was renamed to part RR-8888-Y.")])
    client.delete("parts", [])  # nothing: must not disturb anything
    wait_until_indexed(client, "parts")
    hits = client.search("parts", "QQ-9999-Z", 3, mode=SearchMode.LEXICAL)
    assert "fresh" not in {hit.external_id for hit in hits}
    client.delete("parts", ["fresh"])
    wait_until_indexed(client, "parts")
    assert "fresh" not in {
        h.external_id for h in client.search("parts", "RR-8888-Y", 3, mode=SearchMode.LEXICAL)
    }


def test_bad_mode_inputs_are_invalid_argument(client: AlbatrossClient) -> None:
    with pytest.raises(grpc.RpcError) as error:
        client.search("parts", "x", 3, mode=SearchMode.HYBRID, fusion=FusionRequest(rrf_k=0))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "rrf_k" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        client.create_collection("bad-fusion", CollectionSpec(model="", dense_weight=1.5))
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "dense_weight" in error.value.details()
    assert "bad-fusion" not in {c.name for c in client.list_collections()}
    vector = client.embed("parts", ["anything"])[0]
    from protos.albatross.v1 import albatross_pb2 as pb

    request = pb.SearchRequest(
        collection="parts", vector=pb.Vector(values=vector.tolist()), k=3, mode=pb.SEARCH_MODE_LEXICAL
    )
    with pytest.raises(grpc.RpcError) as error:
        client._search.Search(request)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT and "vector" in error.value.details()


def test_collection_spec_keeps_its_lexical_settings(client: AlbatrossClient) -> None:
    spec = CollectionSpec(model="", lexical_analyzer="simple", fusion="convex", dense_weight=0.7)
    created = client.create_collection("plain-words", spec)
    assert created.spec.lexical_analyzer == "simple" and created.spec.dense_weight == pytest.approx(0.7)
    assert created.spec.fusion == "convex" and created.spec.rrf_k == 60
    default = client.get_collection("parts").collection.spec  # created with no fusion named
    assert default.fusion == "adaptive" and default.dense_weight == pytest.approx(0.75)
    client.upsert("plain-words", [Document("a", "running dogs"), Document("b", "a dog runs")])
    wait_until_indexed(client, "plain-words")
    # No stemming: "dogs" matches only the passage that says "dogs".
    assert [h.external_id for h in client.search("plain-words", "dogs", 5, mode=SearchMode.LEXICAL)] == ["a"]
    client.drop_collection("plain-words")


@pytest.mark.postgres
def test_same_rankings_on_sqlite_and_postgresql(
    tmp_path: Path, tiny_albert_dir: Path, corpus: list[tuple[Document, str]], postgres_server: object
) -> None:
    queries = [number for _, number in corpus[:40]] + [doc.title for doc, _ in corpus[40:80]]
    answers = []
    for db_url in (None, postgres_server.new_database()):  # type: ignore[attr-defined]
        folder = tmp_path / ("pg" if db_url else "sqlite")
        with (
            running_server(app_for(folder, tiny_albert_dir, db_url)) as running,
            AlbatrossClient(running.target, timeout=60) as client,
        ):
            client.create_collection("parts")
            client.upsert("parts", [document for document, _ in corpus])
            wait_until_indexed(client, "parts")
            answers.append(
                [
                    [(h.external_id, round(h.score, 4)) for h in hits]
                    for mode in (SearchMode.LEXICAL, SearchMode.HYBRID)
                    for hits in client.search_batch("parts", queries, 10, mode=mode)
                ]
            )
    sqlite, postgresql = answers
    assert sqlite == postgresql
    assert sum(bool(hits) for hits in sqlite) == len(sqlite)
