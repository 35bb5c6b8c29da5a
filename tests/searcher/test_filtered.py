"""Filtered dense search (``searcher.filtered``): the plan chosen per filter, answers equal to exact
filtered search under either plan, the fall-back when a deeper search finds too few allowed
candidates, and the cache of allowed ids following every change of the documents.

A real SQLite store and a real FAISS Flat index (exact, so every answer has one right value);
collections are larger than ``EXACT_SEARCH_MAX`` where the post-filter plan must be reachable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from indexer.config import StoreConfig
from indexer.index import EXACT_SEARCH_MAX, VectorIndex
from indexer.records import (
    Chunk,
    CollectionSpec,
    Condition,
    Document,
    EncodedDocument,
    MetadataFilter,
    MetadataUpdate,
)
from indexer.spec import complete_spec
from indexer.store import Store
from searcher.filtered import (
    MAX_DEPTH,
    AllowedIdsCache,
    Estimate,
    FilteredSearch,
    Plan,
    choose_plan,
    keep_allowed,
)

DIMENSION = 8
SIZE = 2 * EXACT_SEARCH_MAX + 4_000  # "side" (half of them) must outnumber EXACT_SEARCH_MAX
FETCH = 40
SPEC = complete_spec(CollectionSpec(model="synthetic"), {})

EVERYONE = MetadataFilter((Condition("tenant", equals="acme"),))
HALF = MetadataFilter((Condition("side", equals="negative"),))
RARE = MetadataFilter((Condition("kind", equals="rare"),))


def _document(i: int, vector: np.ndarray, metadata: dict[str, object]) -> EncodedDocument:
    text = f"document {i}"
    document = Document(external_id=f"d{i}", text=text, metadata=metadata)
    chunk = Chunk(ordinal=0, start=0, end=len(text), text=text)
    return EncodedDocument(document, document.content_hash(), (chunk,), vector[None, :])


def _metadata(i: int, vector: np.ndarray) -> dict[str, object]:
    # "side" follows the first coordinate: a query along +x finds no "negative" document near it.
    return {
        "tenant": "acme",
        "side": "negative" if vector[0] < 0 else "positive",
        "kind": "rare" if i % 500 == 0 else "common",
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, int, np.ndarray, np.ndarray]:
    """(store, collection id, chunk ids in write order, their vectors)."""
    vectors = np.random.default_rng(3).standard_normal((SIZE, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store = Store.open(StoreConfig(data_dir=Path(tmp_path_factory.mktemp("filtered"))))
    info = store.create_collection("c", SPEC, dimension=DIMENSION, model_revision="-", tokenizer_hash="-")
    for start in range(0, SIZE, 4_000):
        docs = [
            _document(i, vectors[i], _metadata(i, vectors[i])) for i in range(start, min(SIZE, start + 4_000))
        ]
        store.write_documents(info.id, docs)
    ids = store.chunk_ids_matching(info.id, MetadataFilter())
    yield store, info.id, ids, vectors
    store.close()


def _index(ids: np.ndarray, vectors: np.ndarray) -> VectorIndex:
    index = VectorIndex.create("Flat", DIMENSION)
    index.add(ids, vectors)
    return index


def _exact(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    rows = np.flatnonzero(np.isin(ids, allowed))
    scores = queries @ vectors[rows].T
    return ids[rows][np.argsort(-scores, axis=1, kind="stable")[:, :FETCH]]


def _queries(count: int, seed: int) -> np.ndarray:
    queries = np.random.default_rng(seed).standard_normal((count, DIMENSION)).astype(np.float32)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[tuple[Store, int]]:
    """(store, id of an empty collection) in a fresh SQLite store."""
    store = Store.open(StoreConfig(data_dir=tmp_path))
    info = store.create_collection("c", SPEC, dimension=DIMENSION, model_revision="-", tokenizer_hash="-")
    yield store, info.id
    store.close()


# -- the plan (pure) ------------------------------------------------------------------------------


def test_a_broad_filter_is_post_filtered_at_a_depth_that_grows_with_one_over_its_share() -> None:
    assert choose_plan(Estimate(1.0, 256, 256, 1_000_000), 1_000_000, 40) == (Plan.POST_FILTER, 80)
    assert choose_plan(Estimate(0.1, 256, 26, 1_000_000), 1_000_000, 40) == (Plan.POST_FILTER, 800)


def test_a_selective_or_small_or_too_deep_filter_is_pre_filtered() -> None:
    assert choose_plan(Estimate(0.01, 256, 3, 1_000_000), 1_000_000, 40)[0] is Plan.PRE_FILTER  # few seen
    assert (
        choose_plan(Estimate(0.5, 256, 128, 3 * EXACT_SEARCH_MAX), 3 * EXACT_SEARCH_MAX, 40)[0]
        is Plan.POST_FILTER
    )
    assert (
        choose_plan(Estimate(0.5, 256, 128, 2 * EXACT_SEARCH_MAX), 2 * EXACT_SEARCH_MAX, 40)[0]
        is Plan.PRE_FILTER
    )  # exact
    deep_share = 40 * 2 / (MAX_DEPTH + 1)
    assert (
        choose_plan(Estimate(deep_share, 10**6, int(deep_share * 10**6), 10**8), 10**8, 40)[0]
        is Plan.PRE_FILTER
    )


def test_keep_allowed_keeps_the_allowed_entries_in_order_and_pads() -> None:
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], np.float32)
    ids = np.array([[5, 3, 9, -1]])
    kept_scores, kept_ids, counts = keep_allowed(scores, ids, np.array([3, 9]), 3)
    assert kept_ids.tolist() == [[3, 9, -1]] and counts.tolist() == [2]
    assert kept_scores[0, :2].tolist() == pytest.approx([0.8, 0.7]) and kept_scores[0, 2] == -np.inf


def test_the_cache_is_bounded_by_the_ids_it_holds_and_drops_the_least_recently_used() -> None:
    cache = AllowedIdsCache(max_ids=10)
    cache.get_or_compute(("a",), lambda: np.arange(6))
    cache.get_or_compute(("b",), lambda: np.arange(4))
    cache.get_or_compute(("a",), lambda: np.arange(99))  # a hit: "a" is now the most recent
    cache.get_or_compute(("c",), lambda: np.arange(3))  # evicts "b"
    assert cache.held_ids == 9 and cache.hits == 1
    assert cache.get_or_compute(("b",), lambda: np.arange(2)).size == 2  # recomputed
    assert cache.get_or_compute(("big",), lambda: np.arange(11)).size == 11 and cache.held_ids <= 10


# -- against a real store and index ---------------------------------------------------------------


@pytest.mark.parametrize(("metadata_filter", "plan"), [(EVERYONE, Plan.POST_FILTER), (RARE, Plan.PRE_FILTER)])
def test_either_plan_answers_what_exact_filtered_search_answers(corpus, metadata_filter, plan) -> None:
    store, collection_id, ids, vectors = corpus
    index = _index(ids, vectors)
    filtered = FilteredSearch(store, AllowedIdsCache())
    queries = _queries(5, seed=11)

    assert filtered.plan(collection_id, index, metadata_filter, FETCH)[0] is plan
    _, found = filtered.search(collection_id, index, queries, FETCH, metadata_filter)

    allowed = store.chunk_ids_matching(collection_id, metadata_filter)
    truth = _exact(queries, ids, vectors, allowed)
    assert found.tolist() == truth.tolist()


def test_a_filter_that_excludes_everything_near_the_query_still_gets_its_hits(corpus) -> None:
    """Half the collection is allowed, so the plan is post-filter, but none of the query's deep
    candidates are: the queries are answered again with the allowed listing."""
    store, collection_id, ids, vectors = corpus
    index = _index(ids, vectors)
    filtered = FilteredSearch(store, AllowedIdsCache())
    queries = np.zeros((2, DIMENSION), np.float32)
    queries[:, 0] = 1.0  # along +x: every near document is "positive"
    queries[1, 1] = 0.2

    assert filtered.plan(collection_id, index, HALF, FETCH)[0] is Plan.POST_FILTER
    _, found = filtered.search(collection_id, index, queries, FETCH, HALF)

    truth = _exact(queries, ids, vectors, store.chunk_ids_matching(collection_id, HALF))
    assert found.shape == (2, FETCH) and found.tolist() == truth.tolist()


def test_cached_listings_follow_writes_and_metadata_only_updates(small: tuple[Store, int]) -> None:
    store, collection_id = small
    vectors = _queries(20, seed=5)
    store.write_documents(collection_id, [_document(i, vectors[i], {"kind": "common"}) for i in range(20)])
    cache = AllowedIdsCache()
    filtered = FilteredSearch(store, cache)
    assert filtered.allowed(collection_id, RARE).size == 0
    assert filtered.allowed(collection_id, RARE).size == 0 and cache.hits == 1

    store.write_documents(collection_id, [_document(20, vectors[0], {"kind": "rare"})])  # an add
    assert filtered.allowed(collection_id, RARE).size == 1

    renamed = _document(3, vectors[3], {"kind": "rare"}).document  # metadata only: no log entry
    stored = store.document_hashes(collection_id, ["d3"])["d3"]
    update = MetadataUpdate(renamed, renamed.content_hash(), stored.embedding)
    assert store.write_documents(collection_id, [], [update]).metadata_updated == ("d3",)
    assert filtered.allowed(collection_id, RARE).size == 2


def test_a_filter_on_one_is_not_served_the_listing_of_a_filter_on_true(small: tuple[Store, int]) -> None:
    """1 == True in Python, so equal dataclasses; the JSON values differ and match different rows."""
    store, collection_id = small
    vectors = _queries(2, seed=6)
    store.write_documents(
        collection_id, [_document(0, vectors[0], {"x": 1}), _document(1, vectors[1], {"x": True})]
    )
    filtered = FilteredSearch(store, AllowedIdsCache())
    one = filtered.allowed(collection_id, MetadataFilter((Condition("x", equals=1),)))
    true = filtered.allowed(collection_id, MetadataFilter((Condition("x", equals=True),)))
    assert one.size == 1 and true.size == 1 and one.tolist() != true.tolist()


def test_an_estimate_is_kept_across_writes_until_the_collection_drifts_or_a_fallback(corpus) -> None:
    """Sampling costs one SQL query; an estimate only chooses a plan, so it outlives writes."""
    store, collection_id, ids, vectors = corpus
    cache = AllowedIdsCache()
    filtered = FilteredSearch(store, cache)
    index = _index(ids, vectors)
    filtered.plan(collection_id, index, EVERYONE, FETCH)
    filtered.plan(collection_id, index, EVERYONE, FETCH)
    assert (cache.hits, cache.misses) == (1, 1)

    grown = _index(np.concatenate([ids, ids + ids.max() + 1]), np.concatenate([vectors, vectors]))
    filtered.plan(collection_id, grown, EVERYONE, FETCH)  # twice the size: sampled again
    assert cache.misses == 2

    queries = np.zeros((1, DIMENSION), np.float32)
    queries[0, 0] = 1.0
    filtered.search(collection_id, index, queries, FETCH, HALF)  # falls back: sample afresh next time
    before = cache.misses
    filtered.plan(collection_id, index, HALF, FETCH)
    assert cache.misses == before + 1


def test_a_collection_within_exact_search_is_never_sampled(small: tuple[Store, int]) -> None:
    store, collection_id = small
    vectors = _queries(50, seed=7)
    store.write_documents(collection_id, [_document(i, vectors[i], {"tenant": "acme"}) for i in range(50)])
    cache = AllowedIdsCache()
    index = _index(store.chunk_ids_matching(collection_id, MetadataFilter()), vectors)
    assert FilteredSearch(store, cache).plan(collection_id, index, EVERYONE, FETCH) == (Plan.PRE_FILTER, 0)
    assert cache.misses == 0
