"""``SearchService``: a query text becomes the top-k documents of one collection.

Dense: query -> the collection's encoder (through the micro-batcher) -> the collection's vector
index (top chunks, restricted to the chunks a metadata filter allows) -> chunks folded into
documents -> their text and metadata from SQL. Lexical: the query's words -> the collection's
BM25 index (same filter, same folding). Hybrid: both legs, each asked for ``HYBRID_CANDIDATES``
documents, concurrently, then fused (``searcher.fusion``) with the request's fusion or the
collection's default. SQL, FAISS and Tantivy calls block, so they run in the executor; the event
loop only waits.
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
    Fusion,
    MetadataFilter,
    SearchMode,
    StoredChunk,
    StoredDocument,
)
from indexer.vocabulary import is_mostly_unknown, mostly_unknown_warning
from searcher.batching import QueryBatcher, TextEncoder
from searcher.blocking import BlockingCalls
from searcher.filtered import AllowedIdsCache, FilteredSearch, FilterStore
from searcher.fusion import FusionRequest, fuse
from searcher.live import IndexStatus, LiveIndex, LiveIndexes, LiveLexicalIndex
from searcher.results import Hit, Ranking, chunk_fetch_size, fold_chunk_hits, should_fetch_more

# Each retry asks the index for this many times more chunks than the last try.
FETCH_GROWTH = 4
# Documents each leg of a hybrid search contributes to the fusion, at least (k when larger; the
# rank_window_size of Elasticsearch, whose default is k itself): a document ranked past this by
# both legs cannot reach the fused top k. Three times the usual k=10; every candidate's chunk is
# fetched from SQL, which is most of what hybrid adds to a dense search.
HYBRID_CANDIDATES = 30

# rows of the request, chunks wanted per row -> scores float32 (n, m), chunk ids int64 (n, m)
ChunkSearch = Callable[[list[int], int], tuple[np.ndarray, np.ndarray]]


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


class SearchStore(FilterStore, Protocol):
    """The part of ``indexer.store.Store`` searching needs (filtering's part included)."""

    def chunks_by_id(self, chunk_ids: Sequence[int]) -> dict[int, StoredChunk]: ...

    def get_documents(self, collection_id: int, external_ids: Sequence[str]) -> list[StoredDocument]: ...


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
        self._waiting: dict[Hashable, list[tuple[np.ndarray, asyncio.Future[Ranking]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # held so a running batch is not collected

    async def rank(
        self, key: Hashable, rank: Callable[[np.ndarray], list[Ranking]], query: np.ndarray
    ) -> Ranking:
        """``query`` float32 (d,) -> its ranking, made together with its lane's other queries."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ranking] = loop.create_future()
        waiting = self._waiting.get(key)
        if waiting is None:
            waiting = self._waiting[key] = []
            loop.call_soon(self._flush, key, rank)
        waiting.append((query, future))
        return await future

    def _flush(self, key: Hashable, rank: Callable[[np.ndarray], list[Ranking]]) -> None:
        waiting = self._waiting.pop(key, [])
        for start in range(0, len(waiting), self._max_size):
            batch = waiting[start : start + self._max_size]
            task = asyncio.get_running_loop().create_task(self._rank_batch(rank, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _rank_batch(
        self,
        rank: Callable[[np.ndarray], list[Ranking]],
        batch: list[tuple[np.ndarray, asyncio.Future[Ranking]]],
    ) -> None:
        try:
            results = await self._run(rank, np.stack([q for q, _ in batch]))
        except Exception as error:  # delivered to every caller of the batch
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), ranking in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(ranking)


class SearchService:
    """Answers queries for every collection of one store."""

    def __init__(
        self,
        store: SearchStore,
        catalog: CollectionCatalog,
        indexes: LiveIndexes,
        batcher: QueryBatcher,
        executor: Executor,
        filter_cache: AllowedIdsCache | None = None,
    ) -> None:
        self._store = store
        self._filtered = FilteredSearch(store, filter_cache or AllowedIdsCache())
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
        self,
        collection: str,
        text: str,
        k: int,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
    ) -> Ranking:
        """The top ``k`` documents of ``collection`` for one query, best first."""
        (ranking,) = await self.search_batch(collection, [text], k, metadata_filter, mode=mode, fusion=fusion)
        return ranking

    async def search_batch(
        self,
        collection: str,
        texts: Sequence[str],
        k: int,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
    ) -> list[Ranking]:
        """One ranking of at most ``k`` documents per query text, in order."""
        info = await self._collection(collection)
        if mode is SearchMode.LEXICAL:
            return await self._search_lexical(info, list(texts), k, metadata_filter)
        queries = await self._embed(info, texts)
        if mode is SearchMode.DENSE:
            return await self._search(info, queries, k, metadata_filter)
        return await self._search_hybrid(info, queries, list(texts), k, metadata_filter, fusion)

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
        *,
        texts: Sequence[str] = (),
        fusion: FusionRequest | None = None,
    ) -> list[Ranking]:
        """As ``search_batch`` for vectors float32 (n, d) already in the collection's space; with
        ``texts`` (one per vector), a hybrid search whose dense leg uses the vectors."""
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
        if texts:
            return await self._search_hybrid(info, vectors, list(texts), k, metadata_filter, fusion)
        return await self._search(info, vectors, k, metadata_filter)

    async def query_warnings(self, collection: str, texts: Sequence[str]) -> list[list[str]]:
        """For each query text, what its answer should warn about: a query mostly outside the
        vocabulary of the collection's model (``indexer.vocabulary``) gets near-noise hits."""
        info = await self._collection(collection)
        if info.spec.takes_vectors:
            return [[] for _ in texts]  # no model, no vocabulary: its vectors came from elsewhere
        encoder = await self._encoder(info)
        shares = encoder.unknown_shares(texts)  # tokenizing a bounded query is cheap: no executor hop
        return [
            [mostly_unknown_warning(share, encoder.model_name)] if is_mostly_unknown(share) else []
            for share in shares
        ]

    async def _encoder(self, info: CollectionInfo) -> QueryEncoder:
        return self._catalog.ready_encoder(info) or await self._run(self._catalog.encoder_for, info)

    async def _search_lexical(
        self, info: CollectionInfo, texts: list[str], k: int, metadata_filter: MetadataFilter | None
    ) -> list[Ranking]:
        index = await self._indexes.get_lexical(info)
        ranked = await self._run(self._rank_lexical, info, index, texts, k, metadata_filter)
        return [Ranking(hits) for hits in ranked]

    async def _search_hybrid(
        self,
        info: CollectionInfo,
        queries: np.ndarray,
        texts: list[str],
        k: int,
        metadata_filter: MetadataFilter | None,
        fusion: FusionRequest | None,
    ) -> list[Ranking]:
        """Both legs at once (their SQL and index work overlap in the executor), then fused; the
        fused ranking is in the dense leg's whitening version."""
        chosen = (fusion or FusionRequest()).resolve(Fusion.of(info.spec))
        depth = max(k, HYBRID_CANDIDATES)
        dense, lexical = await asyncio.gather(
            self._search(info, queries, depth, metadata_filter),
            self._search_lexical(info, texts, depth, metadata_filter),
        )
        return [
            Ranking(fuse(d.hits, w.hits, chosen, k, query=text), d.whitening_version)
            for d, w, text in zip(dense, lexical, texts, strict=True)
        ]

    async def _embed(self, info: CollectionInfo, texts: Sequence[str]) -> np.ndarray:
        encoder = await self._encoder(info)
        if len(texts) == 1:
            # A lone query waits briefly for concurrent ones to share its forward pass.
            return (await self._batcher.embed(info.id, encoder, texts[0]))[None, :]
        return await self._batcher.embed_many(encoder, texts)

    async def _search(
        self, info: CollectionInfo, queries: np.ndarray, k: int, metadata_filter: MetadataFilter | None
    ) -> list[Ranking]:
        index = await self._indexes.get(info)
        if len(queries) == 1 and metadata_filter is None and self._batcher.max_size > 1:
            # A lone query shares its index search and SQL fetch with concurrent ones too.
            return [await self._ranks.rank((info.id, id(index), k), self._ranker(info, index, k), queries[0])]
        return await self._run(self._rank_in_one_map, info, index, queries, k, metadata_filter)

    def _ranker(
        self, info: CollectionInfo, index: LiveIndex, k: int
    ) -> Callable[[np.ndarray], list[Ranking]]:
        def rank(queries: np.ndarray) -> list[Ranking]:
            return self._rank_in_one_map(info, index, queries, k, None)

        return rank

    def _rank_in_one_map(
        self,
        info: CollectionInfo,
        index: LiveIndex,
        queries: np.ndarray,
        k: int,
        metadata_filter: MetadataFilter | None,
    ) -> list[Ranking]:
        """``_rank``, with the whitening version every index search of it was made in (blocking).

        A ranking may search the index more than once (``_fold_ranked`` asks again for more), and
        a refit may swap index and map between two searches. Versions only rise, so one read
        before and one after that agree mean no swap came between: the version is the one that
        ranked. When they differ the queries are ranked again, in the new map; a rebuild takes far
        longer than a ranking, so that happens at most once per refit."""
        while True:
            version = index.whitening_version
            ranked = self._rank(info, index, queries, k, metadata_filter)
            if index.whitening_version == version:
                return [Ranking(hits, version) for hits in ranked]

    def _allowed(
        self, info: CollectionInfo, ntotal: int, metadata_filter: MetadataFilter | None
    ) -> tuple[np.ndarray | None, int]:
        """(chunk ids the filter allows or None for all, how many chunks a search can return)."""
        if metadata_filter is None:
            return None, ntotal
        allowed = self._filtered.allowed(info.id, metadata_filter)
        return allowed, min(ntotal, len(allowed))

    def _rank(
        self,
        info: CollectionInfo,
        index: LiveIndex,
        queries: np.ndarray,
        k: int,
        metadata_filter: MetadataFilter | None,
    ) -> list[list[Hit]]:
        """queries: float32 (nq, d) -> top-k documents per query (blocking).

        A filter is applied by ``searcher.filtered``, which chooses per filter between listing
        what it allows and checking the candidates of a deeper search."""

        def search(rows: list[int], fetch: int) -> tuple[np.ndarray, np.ndarray]:
            if metadata_filter is None:
                return index.search(queries[rows], fetch)
            return self._filtered.search(info.id, index, queries[rows], fetch, metadata_filter)

        # Filtered, the count allowed is not known up front; a search short of ``fetch`` says
        # that all were found, which ends the folding loop.
        return self._fold_ranked(len(queries), search, index.ntotal, k, "dense")

    def _rank_lexical(
        self,
        info: CollectionInfo,
        index: LiveLexicalIndex,
        texts: list[str],
        k: int,
        metadata_filter: MetadataFilter | None,
    ) -> list[list[Hit]]:
        """Query texts -> top-k documents per query by BM25 (blocking)."""
        allowed, available = self._allowed(info, index.ntotal, metadata_filter)

        def search(rows: list[int], fetch: int) -> tuple[np.ndarray, np.ndarray]:
            return index.search([texts[row] for row in rows], fetch, allowed)

        return self._fold_ranked(len(texts), search, available, k, "lexical")

    def _fold_ranked(
        self, count: int, search: ChunkSearch, available: int, k: int, leg: str
    ) -> list[list[Hit]]:
        """Ask ``search`` for chunks, fold them into documents, and ask again, for more, for the
        queries left with fewer than ``k`` documents (blocking)."""
        results: list[list[Hit]] = [[] for _ in range(count)]
        pending = list(range(count))
        fetch = chunk_fetch_size(k, available)
        while pending and fetch > 0:
            scores, ids = search(pending, fetch)
            scores, ids = np.atleast_2d(scores), np.atleast_2d(ids)
            chunks = self._store.chunks_by_id(sorted({int(i) for i in ids.ravel() if i >= 0}))
            still_short = []
            for row, query in enumerate(pending):
                hits = fold_chunk_hits(scores[row], ids[row], chunks, k, leg)
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

    async def index_status(self, collection: str) -> tuple[CollectionInfo, CollectionStats, IndexStatus]:
        """(info, SQL stats, this server's indexes) of ``collection``."""
        info = await self._collection(collection)
        stats = await self._run(self._catalog.stats, collection)
        return info, stats, self._indexes.status(info)
