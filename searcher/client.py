"""A small synchronous client for the Albatross gRPC API.

Every call takes an optional ``timeout`` (seconds, sent as the gRPC deadline) overriding the
client's default. ``token`` is sent as ``authorization: Bearer <token>`` on every call; ``tls_ca``
(the CA that signed the server's certificate) turns TLS on, and ``tls_cert`` + ``tls_key`` present a
client certificate to a server that asks for one (mutual TLS). Failures raise ``grpc.RpcError``; ``error.code()`` is the status code the server
mapped from its domain error (see ``searcher.errors``) and ``error.details()`` names the field.

An upsert streams for as long as it needs: its ``timeout`` bounds each wait for an acknowledgement,
not the whole stream, and a stall raises ``UpsertStalled`` (DEADLINE_EXCEEDED) with the statuses
acknowledged before it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from indexer.records import (
    CollectionSpec,
    Document,
    DocumentStatus,
    MetadataFilter,
    SearchMode,
    StoredDocument,
)
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher import convert
from searcher.auth import AUTHORIZATION, channel_credentials
from searcher.fusion import FusionRequest
from searcher.results import Hit

DEFAULT_TIMEOUT_S = 30.0
# Documents per streamed UpsertRequest: keeps each message far below the message size limit.
DOCUMENTS_PER_MESSAGE = 64


@dataclass(frozen=True)
class UpsertStatus:
    """What the server did with one document: ``status`` is a ``DocumentStatus`` (a string),
    or "unspecified" from a server that sent none; ``warning`` when a written document is mostly
    outside its model's vocabulary."""

    external_id: str
    status: DocumentStatus | str
    error: str | None
    sequence: int | None
    warning: str | None = None


class UpsertStalled(grpc.RpcError):
    """No acknowledgement came within the upsert's timeout; ``statuses`` are those that did."""

    def __init__(self, timeout: float, statuses: list[UpsertStatus]) -> None:
        super().__init__()
        self.timeout = timeout
        self.statuses = statuses

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return (
            f"no acknowledgement within {self.timeout:g} s; {len(self.statuses)} documents were "
            "acknowledged before (their statuses are on this error), the rest are not known to be written"
        )

    def __str__(self) -> str:
        return self.details()


class _Watchdog:
    """Calls ``expire`` unless ``reset`` comes within ``seconds`` (from the start, then from each reset)."""

    def __init__(self, seconds: float, expire: Callable[[], object]) -> None:
        self._seconds = seconds
        self._expire = expire
        self.fired = False
        self._timer: threading.Timer | None = None
        self.reset()

    def _fire(self) -> None:
        self.fired = True
        self._expire()

    def reset(self) -> None:
        self.stop()
        self._timer = threading.Timer(self._seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _status(result: pb.DocumentResult) -> UpsertStatus:
    return UpsertStatus(
        external_id=result.id,
        status=convert.STATUS_FROM_PB.get(result.status, "unspecified"),
        error=result.error or None,
        sequence=result.sequence or None,
        warning=result.warning or None,
    )


@dataclass(frozen=True)
class SearchOptions:
    """How a text search runs, the keywords every text-search method takes, carried down as one
    record: ``mode`` (dense, lexical or hybrid), ``fusion`` (a hybrid search's fusion; None: the
    collection's default), ``timeout`` (seconds; None: the client's default)."""

    mode: SearchMode = SearchMode.DENSE
    fusion: FusionRequest | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class SearchAnswer:
    """A router's answer that may leave shards out (``allow_partial``): ``missing_shards`` names them."""

    hits: list[Hit]
    missing_shards: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.missing_shards)


@dataclass(frozen=True)
class SearchBatchAnswer:
    """``search_batch_allowing_partial``'s answer: one ranked list per query, and the shards that
    none of them heard from (a router leaves the same shards out of every query of a batch)."""

    results: list[list[Hit]]
    missing_shards: tuple[str, ...]

    @property
    def partial(self) -> bool:
        return bool(self.missing_shards)


def _hits(response: pb.SearchResponse) -> list[Hit]:
    return [convert.hit_from_pb(hit) for hit in response.hits]


def _document_to_pb(document: Document) -> pb.Document:
    message = pb.Document(id=document.external_id, text=document.text, title=document.title)
    convert.dict_to_struct(document.metadata, message.metadata)
    if document.vector is not None:
        message.vector.values.extend(document.vector)
    return message


def _upsert_requests(collection: str, documents: Iterable[Document]) -> Iterator[pb.UpsertRequest]:
    iterator = iter(documents)
    first = True
    while batch := list(islice(iterator, DOCUMENTS_PER_MESSAGE)):
        yield pb.UpsertRequest(
            collection=collection if first else "", documents=[_document_to_pb(d) for d in batch]
        )
        first = False


class AlbatrossClient:
    """Synchronous client; use as a context manager or call ``close``."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        max_message_bytes: int = 64 * 1024 * 1024,
        token: str | None = None,
        tls_ca: Path | None = None,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] = ((AUTHORIZATION, f"Bearer {token}"),) if token else ()
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls_ca is None and tls_cert is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = channel_credentials(tls_ca, tls_cert, tls_key)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._collections = pb_grpc.CollectionsStub(self._channel)
        self._ingest = pb_grpc.IngestStub(self._channel)
        self._search = pb_grpc.SearchStub(self._channel)

    def __enter__(self) -> AlbatrossClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _deadline(self, timeout: float | None) -> float | None:
        return self._timeout if timeout is None else timeout

    # --- collections ---------------------------------------------------------------------------

    def create_collection(
        self,
        name: str,
        spec: CollectionSpec | None = None,
        *,
        dimension: int | None = None,
        timeout: float | None = None,
    ) -> pb.Collection:
        """``spec`` None (or a spec with model "") takes the server's default model and settings;
        ``dimension`` is the vector length of a collection with model "none"."""
        request = pb.CreateCollectionRequest(name=name, dimension=dimension)
        if spec is not None:
            request.spec.CopyFrom(convert.spec_to_pb(spec))
        return self._collections.CreateCollection(
            request, timeout=self._deadline(timeout), metadata=self._metadata
        )

    def get_collection(self, name: str, *, timeout: float | None = None) -> pb.GetCollectionResponse:
        """The collection with its stats (documents, chunks, last and index sequence...)."""
        return self._collections.GetCollection(
            pb.GetCollectionRequest(name=name), timeout=self._deadline(timeout), metadata=self._metadata
        )

    def list_collections(self, *, timeout: float | None = None) -> list[pb.Collection]:
        response = self._collections.ListCollections(
            pb.ListCollectionsRequest(), timeout=self._deadline(timeout), metadata=self._metadata
        )
        return list(response.collections)

    def drop_collection(self, name: str, *, timeout: float | None = None) -> None:
        self._collections.DropCollection(
            pb.DropCollectionRequest(name=name), timeout=self._deadline(timeout), metadata=self._metadata
        )

    # --- ingest --------------------------------------------------------------------------------

    def upsert(
        self, collection: str, documents: Iterable[Document], *, timeout: float | None = None
    ) -> list[UpsertStatus]:
        """Stream ``documents``; one status per document, in the order they were sent.

        ``timeout`` bounds each wait for an acknowledgement (the server commits and acknowledges
        every batch of 64), not the whole upsert; a stall raises ``UpsertStalled``.
        """
        statuses: list[UpsertStatus] = []
        try:
            statuses.extend(self.upsert_stream(collection, documents, timeout=timeout))
        except UpsertStalled as stalled:
            raise UpsertStalled(stalled.timeout, statuses) from stalled
        return statuses

    def upsert_stream(
        self, collection: str, documents: Iterable[Document], *, timeout: float | None = None
    ) -> Iterator[UpsertStatus]:
        """As ``upsert``, yielding each document's status as soon as its batch has committed."""
        limit = self._deadline(timeout)
        if limit is not None and limit <= 0:
            raise UpsertStalled(limit, [])
        # No deadline on the call itself: a stream of any length may take as long as it progresses.
        responses = self._ingest.Upsert(_upsert_requests(collection, documents), metadata=self._metadata)
        watchdog = None if limit is None else _Watchdog(limit, responses.cancel)
        try:
            for response in responses:
                if watchdog is not None:
                    watchdog.reset()
                yield from (_status(result) for result in response.results)
        except grpc.RpcError as error:
            if watchdog is not None and watchdog.fired:
                raise UpsertStalled(limit or 0.0, []) from error
            raise
        finally:
            if watchdog is not None:
                watchdog.stop()
            responses.cancel()  # a no-op once the call is over; ends it when the caller stops early

    def delete(
        self, collection: str, external_ids: Sequence[str], *, timeout: float | None = None
    ) -> pb.DeleteResponse:
        return self._ingest.Delete(
            pb.DeleteRequest(collection=collection, ids=list(external_ids)),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )

    # --- search --------------------------------------------------------------------------------

    def search(
        self,
        collection: str,
        query: str,
        k: int = 10,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
        timeout: float | None = None,
    ) -> list[Hit]:
        """``mode``: dense (the vector index), lexical (BM25) or hybrid (both, fused by ``fusion``,
        else the collection's default)."""
        options = SearchOptions(mode, fusion, timeout)
        return _hits(self._search_text(collection, query, k, metadata_filter, options, allow_partial=False))

    def search_with_warnings(
        self,
        collection: str,
        query: str,
        k: int = 10,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
        timeout: float | None = None,
    ) -> tuple[list[Hit], list[str]]:
        """As ``search``, with what the server warns about the query (e.g. a query mostly
        outside the vocabulary of the collection's model)."""
        options = SearchOptions(mode, fusion, timeout)
        response = self._search_text(collection, query, k, metadata_filter, options, allow_partial=False)
        return _hits(response), list(response.warnings)

    def search_vector(
        self,
        collection: str,
        vector: np.ndarray,
        k: int = 10,
        metadata_filter: MetadataFilter | None = None,
        *,
        timeout: float | None = None,
    ) -> list[Hit]:
        """Search with a vector float32 (d,) already in the collection's space (e.g. from ``embed``)."""
        request = pb.SearchRequest(
            collection=collection,
            vector=pb.Vector(values=np.asarray(vector, dtype=np.float32).tolist()),
            k=k,
            filter=convert.filter_to_pb(metadata_filter),
        )
        return _hits(self._search.Search(request, timeout=self._deadline(timeout), metadata=self._metadata))

    def search_allowing_partial(
        self,
        collection: str,
        query: str,
        k: int = 10,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
        timeout: float | None = None,
    ) -> SearchAnswer:
        """As ``search_with_warnings``, but a router answers from the shards it reaches (the answer
        names those it did not), in every mode. A partial lexical answer is the BM25 merge of the
        shards that answered, each scoring with its own statistics; a partial hybrid answer fuses
        both legs without every shard either leg lacked."""
        options = SearchOptions(mode, fusion, timeout)
        response = self._search_text(collection, query, k, metadata_filter, options, allow_partial=True)
        return SearchAnswer(_hits(response), tuple(response.missing_shards), tuple(response.warnings))

    def _search_text(
        self,
        collection: str,
        query: str,
        k: int,
        metadata_filter: MetadataFilter | None,
        options: SearchOptions,
        *,
        allow_partial: bool,
    ) -> pb.SearchResponse:
        request = pb.SearchRequest(
            collection=collection,
            query=query,
            k=k,
            filter=convert.filter_to_pb(metadata_filter),
            mode=convert.mode_to_pb(options.mode),
            fusion=convert.fusion_to_pb(options.fusion or FusionRequest()),
            allow_partial=allow_partial,
        )
        return self._search.Search(request, timeout=self._deadline(options.timeout), metadata=self._metadata)

    def embed(self, collection: str, queries: Sequence[str], *, timeout: float | None = None) -> np.ndarray:
        """The vectors the server searches with for ``queries``: float32 (n, d)."""
        request = pb.EmbedRequest(collection=collection, queries=list(queries))
        response = self._search.Embed(request, timeout=self._deadline(timeout), metadata=self._metadata)
        return np.array([list(v.values) for v in response.vectors], dtype=np.float32)

    def search_batch(
        self,
        collection: str,
        queries: Sequence[str],
        k: int = 10,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
        timeout: float | None = None,
    ) -> list[list[Hit]]:
        options = SearchOptions(mode, fusion, timeout)
        response = self._search_texts(collection, queries, k, metadata_filter, options, allow_partial=False)
        return [_hits(result) for result in response.results]

    def search_batch_allowing_partial(
        self,
        collection: str,
        queries: Sequence[str],
        k: int = 10,
        metadata_filter: MetadataFilter | None = None,
        *,
        mode: SearchMode = SearchMode.DENSE,
        fusion: FusionRequest | None = None,
        timeout: float | None = None,
    ) -> SearchBatchAnswer:
        """As ``search_batch``, but a router answers from the shards it reaches (as
        ``search_allowing_partial``)."""
        options = SearchOptions(mode, fusion, timeout)
        response = self._search_texts(collection, queries, k, metadata_filter, options, allow_partial=True)
        return SearchBatchAnswer(
            [_hits(result) for result in response.results], tuple(response.missing_shards)
        )

    def _search_texts(
        self,
        collection: str,
        queries: Sequence[str],
        k: int,
        metadata_filter: MetadataFilter | None,
        options: SearchOptions,
        *,
        allow_partial: bool,
    ) -> pb.SearchBatchResponse:
        request = pb.SearchBatchRequest(
            collection=collection,
            queries=list(queries),
            k=k,
            filter=convert.filter_to_pb(metadata_filter),
            mode=convert.mode_to_pb(options.mode),
            fusion=convert.fusion_to_pb(options.fusion or FusionRequest()),
            allow_partial=allow_partial,
        )
        return self._search.SearchBatch(request, timeout=self._deadline(options.timeout), metadata=self._metadata)

    def get_documents(
        self, collection: str, external_ids: Sequence[str], *, timeout: float | None = None
    ) -> list[StoredDocument]:
        """The stored documents among ``external_ids``, in request order; unknown ids left out."""
        response = self._search.GetDocuments(
            pb.GetDocumentsRequest(collection=collection, ids=list(external_ids)),
            timeout=self._deadline(timeout),
            metadata=self._metadata,
        )
        return [_stored_document(message) for message in response.documents]


def _stored_document(message: pb.StoredDocument) -> StoredDocument:
    metadata: Mapping[str, Any] = convert.struct_to_dict(message.metadata)
    return StoredDocument(
        external_id=message.id,
        title=message.title,
        text=message.text,
        metadata=metadata,
        content_hash=message.content_hash,
        chunk_count=message.chunk_count,
    )
