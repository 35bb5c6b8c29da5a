"""Concurrent single-query searches share one embedding pass and one index search."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from indexer.records import CollectionInfo, CollectionSpec, StoredChunk
from searcher.batching import QueryBatcher
from searcher.search import SearchService

DOCUMENTS = 6
INFO = CollectionInfo(1, "c", CollectionSpec(model="m"), DOCUMENTS, "rev", "tok")


class OneHotEncoder:
    """Query "q3" -> unit vector e3, so its best document is document 3."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(len(texts))
        return np.eye(DOCUMENTS, dtype=np.float32)[[int(t[1:]) for t in texts]]


class Catalog:
    def __init__(self, encoder: OneHotEncoder) -> None:
        self.encoder = encoder

    def get(self, name: str) -> CollectionInfo:
        return INFO

    def cached(self, name: str) -> CollectionInfo | None:
        return None

    def encoder_for(self, info: CollectionInfo) -> OneHotEncoder:
        return self.encoder

    def ready_encoder(self, info: CollectionInfo) -> OneHotEncoder | None:
        return None


class Index:
    """Exact inner-product search over the identity matrix; records the queries per call."""

    ntotal = DOCUMENTS
    sequence = 0
    whitening_version = 0

    def __init__(self) -> None:
        self.calls: list[int] = []

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        self.calls.append(len(queries))
        scores = queries @ np.eye(DOCUMENTS, dtype=np.float32)
        ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, ids, 1), ids.astype(np.int64)


class Indexes:
    def __init__(self, index: Index) -> None:
        self.index = index

    async def get(self, info: CollectionInfo) -> Index:
        return self.index


class Store:
    def __init__(self) -> None:
        self.fetches = 0

    def chunks_by_id(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]:
        self.fetches += 1
        return {i: StoredChunk(i, f"d{i}", "", f"text {i}", 0, 6, {}) for i in chunk_ids}


def searches(max_size: int, queries: int) -> tuple[list[list[str]], OneHotEncoder, Index, Store]:
    encoder, index, store = OneHotEncoder(), Index(), Store()

    async def scenario() -> list[list[str]]:
        with ThreadPoolExecutor(max_workers=2) as executor:
            batcher = QueryBatcher(executor, max_size=max_size, max_wait_s=0.05, max_pending=100)
            service = SearchService(store, Catalog(encoder), Indexes(index), batcher, executor)
            hits = await asyncio.gather(*(service.search("c", f"q{i % DOCUMENTS}", 2) for i in range(queries)))
            await batcher.close()
        return [[hit.external_id for hit in row.hits] for row in hits]

    return asyncio.run(scenario()), encoder, index, store


def test_concurrent_queries_share_one_forward_pass_one_index_search_and_one_sql_fetch() -> None:
    results, encoder, index, store = searches(max_size=32, queries=8)

    assert encoder.batches == [8]
    assert index.calls == [8]
    assert store.fetches == 1
    assert [row[0] for row in results] == [f"d{i % DOCUMENTS}" for i in range(8)]


def test_batches_of_searches_stay_within_the_batch_size() -> None:
    results, _, index, _ = searches(max_size=4, queries=10)

    assert max(index.calls) <= 4 and sum(index.calls) == 10
    assert [row[0] for row in results] == [f"d{i % DOCUMENTS}" for i in range(10)]


@pytest.mark.parametrize("queries", [1, 5])
def test_with_batching_off_every_query_is_embedded_and_searched_alone(queries: int) -> None:
    results, encoder, index, _ = searches(max_size=1, queries=queries)

    assert encoder.batches == [1] * queries
    assert index.calls == [1] * queries
    assert [row[0] for row in results] == [f"d{i % DOCUMENTS}" for i in range(queries)]


class RefittedAfterFirstSearch(Index):
    """An index whose map moves from version 1 to 2 just after its first search, as a refit's
    swap can come between two searches of one ranking."""

    def __init__(self) -> None:
        super().__init__()
        self.whitening_version = 1

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        found = super().search(queries, k, allowed_ids)
        self.whitening_version = 2
        return found


@pytest.mark.parametrize("max_size", [1, 32])
def test_a_ranking_says_the_map_version_it_was_made_in_even_across_a_refit(max_size: int) -> None:
    encoder, index, store = OneHotEncoder(), RefittedAfterFirstSearch(), Store()

    async def scenario() -> list[tuple[str, int]]:
        with ThreadPoolExecutor(max_workers=2) as executor:
            batcher = QueryBatcher(executor, max_size=max_size, max_wait_s=0.05, max_pending=100)
            service = SearchService(store, Catalog(encoder), Indexes(index), batcher, executor)
            rankings = [await service.search("c", "q2", 2), *(await service.search_batch("c", ["q1", "q3"], 2))]
            await batcher.close()
        return [(ranking.hits[0].external_id, ranking.whitening_version) for ranking in rankings]

    # The first ranking read version 1, then saw 2 after its search: ranked again, in version 2.
    assert asyncio.run(scenario()) == [("d2", 2), ("d1", 2), ("d3", 2)]
    assert index.calls == [1, 1, 2]
