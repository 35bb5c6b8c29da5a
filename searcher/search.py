"""``SearchService``: a query text becomes the top-k documents of one collection.

query -> the collection's encoder (through the micro-batcher) -> the collection's index (top chunks,
restricted to the chunks a metadata filter allows) -> chunks folded into documents -> their text and
metadata from SQL. SQL and FAISS calls block, so they run in the executor; the event loop only
waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

from indexer.errors import InvalidArgument
from indexer.records import (
    CollectionInfo,
    CollectionStats,
    MetadataFilter,
    StoredChunk,
    StoredDocument,
)
from indexer.vocabulary import is_mostly_unknown, mostly_unknown_warning
from searcher.batching import QueryBatcher, TextEncoder
from searcher.blocking import BlockingCalls
from searcher.live import LiveIndex, LiveIndexes
from searcher.results import Hit, chunk_fetch_size, fold_chunk_hits, should_fetch_more

# Each retry asks the index for this many times more chunks than the last try.
FETCH_GROWTH = 4


class QueryEncoder(TextEncoder, Protocol):
    """``indexer.catalog.CollectionEncoder``: embeds queries and says how much of them it reads."""

    @property
    def model_name(self) -> str: ...

    def unknown_shares(self, texts: Sequence[str]) -> list[float]: ...


class CollectionCatalog(Protocol):
    """The part of ``indexer.catalog.Catalog`` searching needs."""

    def get(self, name: str) -> CollectionInfo: ...

    def cached(self, name: str) -> CollectionInfo | None: ...

    def stats(self, name: str) -> CollectionStats: ...

    def encoder_for(self, info: CollectionInfo) -> QueryEncoder: ...

    def ready_encoder(self, info: CollectionInfo) -> QueryEncoder | None: ...


class SearchStore(Protocol):
    """The part of ``indexer.store.Store`` searching needs."""

    def chunks_by_id(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]: ...

    def get_documents(self, collection_id: int, external_ids: Sequence[str]) -> list[StoredDocument]: ...

    def chunk_ids_matching(self, collection_id: int, metadata_filter: MetadataFilter) -> np.ndarray: ...


class _RankBatcher:
    """Ranks concurrent queries of one lane (collection, index, k) in one ``_rank`` call.

    Queries embedded in one micro-batch resume in the same event-loop turn; the first one to
    arrive schedules a flush for the next turn, by which time the rest have joined. One FAISS
    search over (n, d) queries uses BLAS where n single searches scan the vectors n times, and
    one SQL fetch serves every query's chunks. Nothing waits on a timer here.
    """

    def __init__(self, executor: Executor, max_size: int) -> None:
        self._run = BlockingCalls(executor)
        self._max_size = max_size
        self._waiting: dict[Hashable, list[tuple[np.ndarray, asyncio.Future[list[Hit]]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # held so a running batch is not collected

    async def rank(
        self, key: Hashable, rank: Callable[[np.ndarray], list[list[Hit]]], query: np.ndarray
    ) -> list[Hit]:
        """``query`` float32 (d,) -> its hits, ranked together with its lane's other queries."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Hit]] = loop.create_future()
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = []
            loop.call_soon(self._flush, key, rank)
        waiting.append((query, future))
        return await future

    def _flush(self, key: Hashable, rank: Callable[[np.ndarray], list[list[Hit]]]) -> None:
        waiting = self._waiting.pop(key, [])
        for start in range(0, len(waiting), self._max_size):
            batch = waiting[start : start + self._max_size]
            task = asyncio.get_running_loop().create_task(self._rank_batch(rank, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _rank_batch(
        self,
        rank: Callable[[np.ndarray], list[list[Hit]]],
        batch: list[tuple[np.ndarray, asyncio.Future[list[Hit]]]],
    ) -> None:
        try:
            results = await self._run(rank, np.stack([q for q, _ in batch]))
        except Exception as error:  # delivered to every caller of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), hits in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(hits)


class SearchService:
    """Answers queries for every collection of one store."""

    def __init__(
        self,
        store: SearchStore,
        catalog: CollectionCatalog,
        indexes: LiveIndexes,
        batcher: QueryBatcher,
        executor: Executor,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._indexes = indexes
        self._batcher = batcher
        self._run = BlockingCalls(executor)
        self._ranks = _RankBatcher(executor, batcher.max_size)

    async def _collection(self, name: str) -> CollectionInfo:
        """From the catalog's memory when it has it: an executor hop would queue the call behind
        the forward passes of other searches."""
        return self._catalog.cached(name) or await self._run(self._catalog.get, name)

    async def search(
        self, collection: str, text: str, k: int, metadata_filter: MetadataFilter | None = None
    ) -> list[Hit]:
        """The top ``k`` documents of ``collection`` for one query, best first."""
        (hits,) = await self.search_batch(collection, [text], k, metadata_filter)
        return hits

    async def search_batch(
        self,
        collection: str,
        texts: Sequence[str],
        k: int,
        metadata_filter: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """One ranked list of at most ``k`` documents per query text, in order."""
        info = await self._collection(collection)
        queries = await self._embed(info, texts)
        return await self._search(info, queries, k, metadata_filter)

    async def embed(self, collection: str, texts: Sequence[str]) -> np.ndarray:
        """The vectors ``search_batch`` would search with: float32 (n, d)."""
        info = await self._collection(collection)
        return await self._embed(info, texts)

    async def search_vectors(
        self,
        collection: str,
        vectors: np.ndarray,
        k: int,
        metadata_filter: MetadataFilter | None = None,
    ) -> list[list[Hit]]:
        """As ``search_batch`` for vectors float32 (n, d) already in the collection's space."""
        info = await self._collection(collection)
        if vectors.ndim != 2 or vectors.shape[1] != info.dimension:
            raise InvalidArgument(
                f"vectors of collection {collection!r} have {info.dimension} dimensions, "
                f"got {vectors.shape[-1] if vectors.ndim else 0}",
                field="vector",
            )
        if info.spec.takes_vectors and info.spec.normalize:
            # Its documents' vectors were stored as unit rows; the query's length must not rank.
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return await self._search(info, vectors, k, metadata_filter)

    async def query_warnings(self, collection: str, texts: Sequence[str]) -> list[list[str]]:
        """For each query text, what its answer should warn about: a query mostly outside the
        vocabulary of the collection's model (``indexer.vocabulary``) gets near-noise hits."""
        info = await self._collection(collection)
        encoder = await self._encoder(info)
        shares = encoder.unknown_shares(texts)  # tokenizing a bounded query is cheap: no executor hop
        return [
            [mostly_unknown_warning(share, encoder.model_name)] if is_mostly_unknown(share) else []
            for share in shares
        ]

    async def _encoder(self, info: CollectionInfo) -> QueryEncoder:
        return self._catalog.ready_encoder(info) or await self._run(self._catalog.encoder_for, info)

    async def _embed(self, info: CollectionInfo, texts: Sequence[str]) -> np.ndarray:
        encoder = await self._encoder(info)
        if len(texts) == 1:
            # A lone query waits briefly for concurrent ones to share its forward pass.
            return (await self._batcher.embed(info.id, encoder, texts[0]))[None, :]
        return await self._batcher.embed_many(encoder, texts)

    async def _search(
        self, info: CollectionInfo, queries: np.ndarray, k: int, metadata_filter: MetadataFilter | None
    ) -> list[list[Hit]]:
        index = await self._indexes.get(info)
        if len(queries) == 1 and metadata_filter is None and self._batcher.max_size > 1:
            # A lone query shares its index search and SQL fetch with concurrent ones too.
            return [await self._ranks.rank((info.id, id(index), k), self._ranker(info, index, k), queries[0])]
        return await self._run(self._rank, info, index, queries, k, metadata_filter)

    def _ranker(self, info: CollectionInfo, index: LiveIndex, k: int) -> Callable[[np.ndarray], list[list[Hit]]]:
        def rank(queries: np.ndarray) -> list[list[Hit]]:
            return self._rank(info, index, queries, k, None)

        return rank

    def _rank(
        self,
        info: CollectionInfo,
        index: LiveIndex,
        queries: np.ndarray,
        k: int,
        metadata_filter: MetadataFilter | None,
    ) -> list[list[Hit]]:
        """queries: float32 (nq, d) -> top-k documents per query (blocking)."""
        allowed = None
        available = index.ntotal
        if metadata_filter is not None:
            allowed = self._store.chunk_ids_matching(info.id, metadata_filter)
            available = min(available, len(allowed))
        results: list[list[Hit]] = [[] for _ in range(len(queries))]
        pending = list(range(len(queries)))
        fetch = chunk_fetch_size(k, available)
        while pending and fetch > 0:
            scores, ids = index.search(queries[pending], fetch, allowed)
            scores, ids = np.atleast_2d(scores), np.atleast_2d(ids)
            chunks = self._store.chunks_by_id(sorted({int(i) for i in ids.ravel() if i >= 0}))
            still_short = []
            for row, query in enumerate(pending):
                hits = fold_chunk_hits(scores[row], ids[row], chunks, k)
                results[query] = hits
                returned = int(np.count_nonzero(ids[row] >= 0))
                if should_fetch_more(len(hits), k, fetch, returned, available):
                    still_short.append(query)
            pending = still_short
            fetch = min(available, fetch * FETCH_GROWTH)
        return results

    async def get_documents(self, collection: str, external_ids: Sequence[str]) -> list[StoredDocument]:
        """The stored documents among ``external_ids`` (unknown ids are left out)."""
        info = await self._collection(collection)
        return await self._run(self._store.get_documents, info.id, list(external_ids))

    async def index_status(self, collection: str) -> tuple[CollectionInfo, CollectionStats, int, int]:
        """(info, SQL stats, index sequence, index vectors) of ``collection`` on this server."""
        info = await self._collection(collection)
        stats = await self._run(self._catalog.stats, collection)
        sequence, vectors = self._indexes.status(info)
        return info, stats, sequence, vectors
