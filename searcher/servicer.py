"""The gRPC servicers: decode -> run the operation (``searcher.operations``) -> encode.

No NumPy, FAISS or SQL here, and no logic the HTTP API would need too: that lives in
``searcher.operations``, which both front-ends call. Every method is wrapped in ``maps_errors``,
the one place where domain errors become status codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor

import grpc

from indexer.errors import InvalidArgument
from indexer.records import Document
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher import convert
from searcher.errors import maps_errors
from searcher.operations import (
    UPSERT_BATCH_SIZE,
    CollectionAdmin,
    CollectionOperations,
    DocumentWriter,
    Searcher,
    SearchOperations,
    UpsertWriter,
    document_or_rejection,
)


class CollectionsServicer(pb_grpc.CollectionsServicer):
    def __init__(self, catalog: CollectionAdmin, searcher: Searcher, executor: Executor) -> None:
        self._collections = CollectionOperations(catalog, searcher, executor)

    @maps_errors
    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.Collection:
        return await self._collections.create(request)

    @maps_errors
    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCollectionResponse:
        return await self._collections.get(request)

    @maps_errors
    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        return await self._collections.list()

    @maps_errors
    async def DropCollection(
        self, request: pb.DropCollectionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DropCollectionResponse:
        return await self._collections.drop(request)


class IngestServicer(pb_grpc.IngestServicer):
    """Writes (see ``UpsertWriter`` for ``on_write`` and ``on_outcomes``)."""

    def __init__(
        self,
        ingestor: DocumentWriter,
        executor: Executor,
        *,
        batch_size: int = UPSERT_BATCH_SIZE,
        on_write: Callable[[], None] = lambda: None,
        on_outcomes: Callable[[str, Sequence[str]], None] = lambda collection, statuses: None,
    ) -> None:
        self._writer = UpsertWriter(ingestor, executor, on_write=on_write, on_outcomes=on_outcomes)
        self._batch_size = batch_size

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
                batch.append(document_or_rejection(message, position))
                position += 1
                if len(batch) >= self._batch_size:
                    yield pb.UpsertResponse(results=await self._writer.write(collection, batch))
                    batch = []
        if batch and collection is not None:
            yield pb.UpsertResponse(results=await self._writer.write(collection, batch))

    @maps_errors
    async def Delete(
        self, request: pb.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteResponse:
        return await self._writer.delete(request)


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


class SearchServicer(pb_grpc.SearchServicer):
    def __init__(self, searcher: Searcher) -> None:
        self._search = SearchOperations(searcher)

    @maps_errors
    async def Search(
        self, request: pb.SearchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchResponse:
        return await self._search.search(request)

    @maps_errors
    async def SearchBatch(
        self, request: pb.SearchBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.SearchBatchResponse:
        return await self._search.search_batch(request)

    @maps_errors
    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        return await self._search.embed(request)

    @maps_errors
    async def GetDocuments(
        self, request: pb.GetDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDocumentsResponse:
        return await self._search.get_documents(request)
