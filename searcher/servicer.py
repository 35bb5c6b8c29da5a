"""The gRPC servicers: validate -> convert -> call an injected domain object -> convert back.

No NumPy, FAISS or SQL here. Blocking domain calls (catalog, ingestion) run in the executor;
search is already asynchronous. Every method is wrapped in ``maps_errors``, the one place where
domain errors become status codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import Protocol

import grpc
import numpy as np

from indexer.errors import InvalidArgument, InvalidDocument
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
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher import convert
from searcher.blocking import BlockingCalls
from searcher.errors import maps_errors
from searcher.fusion import FusionRequest
from searcher.live import IndexStatus
from searcher.results import Hit

# Documents per ingestion call on the Upsert stream: large enough to batch the encoder and the SQL
# transaction, small enough that acknowledgements keep flowing.
UPSERT_BATCH_SIZE = 64


class CollectionAdmin(Protocol):
    """The part of ``indexer.catalog.Catalog`` the Collections service uses."""

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
    ) -> list[Hit]: ...

    async def search_batch(
        self,
        collection: str,
        texts: Sequence[str],
        k: int,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
    ) -> list[list[Hit]]: ...

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
    ) -> list[list[Hit]]: ...

    async def get_documents(self, collection: str, external_ids: Sequence[str]) -> list[StoredDocument]: ...

    async def query_warnings(self, collection: str, texts: Sequence[str]) -> list[list[str]]: ...

    async def index_status(self, collection: str) -> tuple[CollectionInfo, CollectionStats, IndexStatus]: ...


class CollectionsServicer(pb_grpc.CollectionsServicer):
    def __init__(self, catalog: CollectionAdmin, searcher: Searcher, executor: Executor) -> None:
        self._catalog = catalog
        self._searcher = searcher
        self._run = BlockingCalls(executor)

    @maps_errors
    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        name = convert.require_name(request.name, "name")
        spec = convert.spec_from_pb(request.spec)
        dimension = request.dimension if request.HasField("dimension") else None
        info = await self._run(self._catalog.create, name, spec, dimension)
        return convert.collection_to_pb(info)

    @maps_errors
    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCollectionResponse:
        name = convert.require_name(request.name, "name")
        info, stats, status = await self._searcher.index_status(name)
        return pb.GetCollectionResponse(
            collection=convert.collection_to_pb(info),
            stats=convert.stats_to_pb(stats, status),
        )

    @maps_errors
    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        infos = await self._run(self._catalog.list)
        return pb.ListCollectionsResponse(collections=[convert.collection_to_pb(i) for i in infos])

    @maps_errors
    async def DropCollection(
        self, request: pb.DropCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DropCollectionResponse:
        await self._run(self._catalog.drop, convert.require_name(request.name, "name"))
        return pb.DropCollectionResponse()


class IngestServicer(pb_grpc.IngestServicer):
    """Writes; ``on_write`` is called after every committed write (to refresh local indexes), and
    ``on_outcomes(collection, statuses)`` with the status of every document of a batch, those
    rejected before reaching the writer included (for metrics)."""

    def __init__(
        self,
        ingestor: DocumentWriter,
        executor: Executor,
        *,
        batch_size: int = UPSERT_BATCH_SIZE,
        on_write: Callable[[], None] = lambda: None,
        on_outcomes: Callable[[str, Sequence[str]], None] = lambda collection, statuses: None,
    ) -> None:
        self._ingestor = ingestor
        self._run = BlockingCalls(executor)
        self._batch_size = batch_size
        self._on_write = on_write
        self._on_outcomes = on_outcomes

    @maps_errors
    async def Upsert(
        self, request_iterator: AsyncIterator[pb.UpsertRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.UpsertResponse]:
        collection: str | None = None
        batch: list[Document | pb.DocumentResult] = []
        position = 0
        async for request in request_iterator:
            collection = _stream_collection(request.collection, collection)
            for message in request.documents:
                batch.append(_document_or_rejection(message, position))
                position += 1
                if len(batch) >= self._batch_size:
                    yield await self._write(collection, batch)
                    batch = []
        if batch and collection is not None:
            yield await self._write(collection, batch)

    async def _write(self, collection: str, batch: list[Document | pb.DocumentResult]) -> pb.UpsertResponse:
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
        return pb.UpsertResponse(results=results)

    @maps_errors
    async def Delete(self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext) -> pb.DeleteResponse:
        collection = convert.require_name(request.collection, "collection")
        ids = convert.require_ids(request.ids)
        result = await self._run(self._ingestor.delete, collection, ids)
        self._on_write()
        return convert.delete_result_to_pb(result)


def _stream_collection(named: str, current: str | None) -> str:
    """The collection of an Upsert stream: named by the first message, never changed later."""
    if current is None:
        return convert.require_name(named, "collection")
    if named and named != current:
        raise InvalidArgument(
            f"collection: one Upsert stream writes to one collection ({current!r}), "
            f"a later message names {named!r}",
            field="collection",
        )
    return current


def _document_or_rejection(message: pb.Document, position: int) -> Document | pb.DocumentResult:
    try:
        return convert.document_from_pb(message, position)
    except InvalidDocument as error:
        return convert.rejected_to_pb(message.id, str(error))


class SearchServicer(pb_grpc.SearchServicer):
    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher

    @maps_errors
    async def Search(self, request: pb.SearchRequest, context: grpc.aio.ServicerContext) -> pb.SearchResponse:
        asked = convert.search_from_pb(request)
        if asked.vectors is not None:
            (hits,) = await self._searcher.search_vectors(
                asked.collection,
                asked.vectors,
                asked.k,
                asked.metadata_filter,
                texts=asked.queries,
                fusion=asked.fusion,
            )
            return convert.hits_to_pb(hits)
        hits = await self._searcher.search(
            asked.collection,
            asked.queries[0],
            asked.k,
            asked.metadata_filter,
            mode=asked.mode,
            fusion=asked.fusion,
        )
        (warnings,) = await self._searcher.query_warnings(asked.collection, asked.queries)
        return convert.hits_to_pb(hits, warnings)

    @maps_errors
    async def SearchBatch(
        self, request: pb.SearchBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchBatchResponse:
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
            return pb.SearchBatchResponse(results=[convert.hits_to_pb(hits) for hits in ranked])
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
            results=[convert.hits_to_pb(hits, said) for hits, said in zip(ranked, warnings, strict=True)]
        )

    @maps_errors
    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        collection = convert.require_name(request.collection, "collection")
        vectors = await self._searcher.embed(collection, convert.batch_queries(request.queries))
        return convert.vectors_to_pb(vectors)

    @maps_errors
    async def GetDocuments(
        self, request: pb.GetDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDocumentsResponse:
        collection = convert.require_name(request.collection, "collection")
        ids = convert.require_ids(request.ids)
        documents = await self._searcher.get_documents(collection, ids)
        by_id = {document.external_id: document for document in documents}
        return pb.GetDocumentsResponse(
            documents=[convert.stored_document_to_pb(by_id[i]) for i in dict.fromkeys(ids) if i in by_id],
            missing=[i for i in dict.fromkeys(ids) if i not in by_id],
        )
