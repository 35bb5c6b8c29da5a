"""What both front-ends do with a checked request, over the injected domain services.

The gRPC servicers (``searcher.servicer``) and the HTTP handlers (``searcher.http.handlers``) are
two thin translations of the same calls: each decodes its wire format into ``albatross.v1``
messages, checks them with ``searcher.convert``, runs the operation here and encodes the answer.
Neither calls the other, and a new request field checked by ``convert`` reaches both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

from indexer.errors import InvalidDocument
from indexer.records import (
    CollectionInfo,
    CollectionSpec,
    CollectionStats,
    DeleteResult,
    Document,
    DocumentStatus,
    MetadataFilter,
    SearchMode,
    StoredDocument,
)
from protos.albatross.v1 import albatross_pb2 as pb
from searcher import convert
from searcher.blocking import BlockingCalls
from searcher.fusion import FusionRequest
from searcher.live import IndexStatus
from searcher.results import Ranking

# Documents per ingestion call of a streamed upsert: large enough to batch the encoder and the SQL
# transaction, small enough that acknowledgements keep flowing.
UPSERT_BATCH_SIZE = 64


class CollectionAdmin(Protocol):
    """The part of ``indexer.catalog.Catalog`` the Collections operations use."""

    def create(self, name: str, spec: CollectionSpec, dimension: int | None = None) -> CollectionInfo: ...

    def list(self) -> list[CollectionInfo]: ...

    def drop(self, name: str) -> None: ...


class DocumentWriter(Protocol):
    """``indexer.ingest.Ingestor``: blocking writes, one outcome per document."""

    def upsert(
        self, collection: str, documents: Sequence[Document]
    ) -> Sequence[convert.DocumentOutcomeLike]: ...

    def delete(self, collection: str, external_ids: Sequence[str]) -> DeleteResult: ...


class Searcher(Protocol):
    """``searcher.search.SearchService``."""

    async def search(
        self,
        collection: str,
        text: str,
        k: int,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
    ) -> Ranking: ...

    async def search_batch(
        self,
        collection: str,
        texts: Sequence[str],
        k: int,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
    ) -> list[Ranking]: ...

    async def embed(self, collection: str, texts: Sequence[str]) -> np.ndarray: ...

    async def search_vectors(
        self,
        collection: str,
        vectors: np.ndarray,
        k: int,
        metadata_filter: MetadataFilter | None = None,
        *,
        texts: Sequence[str] = (),
        fusion: FusionRequest | None = None,
    ) -> list[Ranking]: ...

    async def get_documents(self, collection: str, external_ids: Sequence[str]) -> list[StoredDocument]: ...

    async def query_warnings(self, collection: str, texts: Sequence[str]) -> list[list[str]]: ...

    async def index_status(self, collection: str) -> tuple[CollectionInfo, CollectionStats, IndexStatus]: ...


# --- collections ---------------------------------------------------------------------------------


class CollectionOperations:
    """Create, describe, list and drop collections."""

    def __init__(self, catalog: CollectionAdmin, searcher: Searcher, executor: Executor) -> None:
        self._catalog = catalog
        self._searcher = searcher
        self._run = BlockingCalls(executor)

    async def create(self, request: pb.CreateCollectionRequest) -> pb.Collection:
        name = convert.require_name(request.name, "name")
        spec = convert.spec_from_pb(request.spec)
        dimension = request.dimension if request.HasField("dimension") else None
        return convert.collection_to_pb(await self._run(self._catalog.create, name, spec, dimension))

    async def get(self, request: pb.GetCollectionRequest) -> pb.GetCollectionResponse:
        name = convert.require_name(request.name, "name")
        info, stats, status = await self._searcher.index_status(name)
        return pb.GetCollectionResponse(
            collection=convert.collection_to_pb(info),
            stats=convert.stats_to_pb(stats, status),
        )

    async def list(self) -> pb.ListCollectionsResponse:
        infos = await self._run(self._catalog.list)
        return pb.ListCollectionsResponse(collections=[convert.collection_to_pb(i) for i in infos])

    async def drop(self, request: pb.DropCollectionRequest) -> pb.DropCollectionResponse:
        await self._run(self._catalog.drop, convert.require_name(request.name, "name"))
        return pb.DropCollectionResponse()


# --- search --------------------------------------------------------------------------------------


class SearchOperations:
    """Search by text or vector, embed, and read stored documents."""

    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher

    async def search(self, request: pb.SearchRequest) -> pb.SearchResponse:
        asked = convert.search_from_pb(request)
        if asked.vectors is not None:
            (ranking,) = await self._searcher.search_vectors(
                asked.collection,
                asked.vectors,
                asked.k,
                asked.metadata_filter,
                texts=asked.queries,
                fusion=asked.fusion,
            )
            return convert.ranking_to_pb(ranking)
        ranking = await self._searcher.search(
            asked.collection,
            asked.queries[0],
            asked.k,
            asked.metadata_filter,
            mode=asked.mode,
            fusion=asked.fusion,
        )
        (warnings,) = await self._searcher.query_warnings(asked.collection, asked.queries)
        return convert.ranking_to_pb(ranking, warnings)

    async def search_batch(self, request: pb.SearchBatchRequest) -> pb.SearchBatchResponse:
        asked = convert.search_batch_from_pb(request)
        if asked.vectors is not None:
            ranked = await self._searcher.search_vectors(
                asked.collection,
                asked.vectors,
                asked.k,
                asked.metadata_filter,
                texts=asked.queries,
                fusion=asked.fusion,
            )
            return pb.SearchBatchResponse(results=[convert.ranking_to_pb(ranking) for ranking in ranked])
        ranked = await self._searcher.search_batch(
            asked.collection,
            asked.queries,
            asked.k,
            asked.metadata_filter,
            mode=asked.mode,
            fusion=asked.fusion,
        )
        warnings = await self._searcher.query_warnings(asked.collection, asked.queries)
        return pb.SearchBatchResponse(
            results=[
                convert.ranking_to_pb(ranking, said) for ranking, said in zip(ranked, warnings, strict=True)
            ]
        )

    async def embed(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        collection = convert.require_name(request.collection, "collection")
        queries = convert.batch_queries(request.queries)
        vectors = await self._searcher.embed(collection, queries)
        return convert.vectors_to_pb(vectors, await self._searcher.query_warnings(collection, queries))

    async def get_documents(self, request: pb.GetDocumentsRequest) -> pb.GetDocumentsResponse:
        """The stored documents among ``request.ids``, in request order, and the ids not found."""
        collection = convert.require_name(request.collection, "collection")
        ids = list(dict.fromkeys(convert.require_ids(request.ids)))
        documents = await self._searcher.get_documents(collection, ids)
        by_id = {document.external_id: document for document in documents}
        return pb.GetDocumentsResponse(
            documents=[convert.stored_document_to_pb(by_id[i]) for i in ids if i in by_id],
            missing=[i for i in ids if i not in by_id],
        )


# --- writes --------------------------------------------------------------------------------------


def document_or_rejection(
    message: pb.Document, position: int, record: str | None = None
) -> Document | pb.DocumentResult:
    """A valid document, or its rejection naming the record and field (never raised: one bad
    document must not stop the others)."""
    try:
        return convert.document_from_pb(message, position, record)
    except InvalidDocument as error:
        return convert.rejected_to_pb(message.id, str(error))


class UpsertWriter:
    """Commits batches of a streamed upsert; ``on_write`` is called after every committed write
    (to refresh local indexes), and ``on_outcomes(collection, statuses)`` with the status of every
    document of a batch, those rejected before reaching the writer included (for metrics)."""

    def __init__(
        self,
        ingestor: DocumentWriter,
        executor: Executor,
        *,
        on_write: Callable[[], None] = lambda: None,
        on_outcomes: Callable[[str, Sequence[str]], None] = lambda collection, statuses: None,
    ) -> None:
        self._ingestor = ingestor
        self._run = BlockingCalls(executor)
        self._on_write = on_write
        self._on_outcomes = on_outcomes

    async def write(
        self, collection: str, batch: Sequence[Document | pb.DocumentResult]
    ) -> list[pb.DocumentResult]:
        """Commit the valid documents of ``batch``; results keep the order they were sent in."""
        documents = [item for item in batch if isinstance(item, Document)]
        outcomes = list(await self._run(self._ingestor.upsert, collection, documents) if documents else [])
        if documents:
            self._on_write()
        remaining = iter(outcomes)
        results = [
            item if isinstance(item, pb.DocumentResult) else convert.outcome_to_pb(next(remaining))
            for item in batch
        ]
        rejected_here = [DocumentStatus.REJECTED] * (len(batch) - len(documents))
        self._on_outcomes(collection, [outcome.status for outcome in outcomes] + rejected_here)
        return results

    async def delete(self, request: pb.DeleteRequest) -> pb.DeleteResponse:
        collection = convert.require_name(request.collection, "collection")
        ids = convert.require_ids(request.ids)
        result = await self._run(self._ingestor.delete, collection, ids)
        self._on_write()
        return convert.delete_result_to_pb(result)
