"""Domain errors become gRPC status codes in one place; unexpected ones become INTERNAL, logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from indexer.errors import (
    AlbatrossError,
    CollectionExists,
    CollectionNotFound,
    EmbeddingSpaceMismatch,
    IndexNotReady,
    InvalidArgument,
    InvalidDocument,
    InvalidFilter,
    ModelNotFound,
    Overloaded,
    StoreBusy,
)
from indexer.ingest import DocumentOutcome
from protos.albatross.v1 import albatross_pb2 as pb
from searcher.errors import INTERNAL_MESSAGE, status_for
from searcher.servicer import IngestServicer, SearchServicer

Code = grpc.StatusCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgument("bad", field="k"), Code.INVALID_ARGUMENT),
        (InvalidDocument("empty", record="doc 1", field="text"), Code.INVALID_ARGUMENT),
        (InvalidFilter("no op", field="filter.conditions[0]"), Code.INVALID_ARGUMENT),
        (CollectionNotFound("news"), Code.NOT_FOUND),
        (CollectionExists("news"), Code.ALREADY_EXISTS),
        (ModelNotFound("no model"), Code.FAILED_PRECONDITION),
        (EmbeddingSpaceMismatch("other space"), Code.FAILED_PRECONDITION),
        (IndexNotReady("loading"), Code.UNAVAILABLE),
        (StoreBusy("locked"), Code.UNAVAILABLE),
        (Overloaded("full"), Code.RESOURCE_EXHAUSTED),
        (AlbatrossError("unclassified"), Code.INTERNAL),
        (RuntimeError("bug"), Code.INTERNAL),
    ],
)
def test_each_error_has_its_status_code(error: Exception, code: grpc.StatusCode) -> None:
    assert status_for(error)[0] is code


def test_the_message_names_the_field() -> None:
    assert status_for(InvalidArgument("must be positive", field="k"))[1] == "k: must be positive"
    assert status_for(InvalidArgument("k must be positive", field="k"))[1] == "k must be positive"


def test_unexpected_errors_do_not_leak_their_message() -> None:
    assert status_for(RuntimeError("password=hunter2"))[1] == INTERNAL_MESSAGE


class AbortingContext:
    """Records the status a servicer ends the call with, as ``grpc.aio`` would."""

    def __init__(self) -> None:
        self.code: grpc.StatusCode | None = None
        self.details = ""

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError()


class FailingSearcher:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def search(self, *args: object, **options: object) -> list[object]:
        self.calls += 1
        raise self.error


def call_search(searcher: FailingSearcher, request: pb.SearchRequest) -> AbortingContext:
    context = AbortingContext()

    async def scenario() -> None:
        with pytest.raises(grpc.aio.AbortError):
            await SearchServicer(searcher).Search(request, context)

    asyncio.run(scenario())
    return context


def test_invalid_k_is_rejected_before_the_domain_is_called() -> None:
    searcher = FailingSearcher(AssertionError("not reached"))

    context = call_search(searcher, pb.SearchRequest(collection="c", query="q", k=0))

    assert context.code is Code.INVALID_ARGUMENT
    assert "k must be between 1 and 1000" in context.details
    assert searcher.calls == 0


def test_a_bad_filter_names_the_condition() -> None:
    request = pb.SearchRequest(
        collection="c", query="q", k=3, filter=pb.Filter(conditions=[pb.Condition(field="lang")])
    )

    context = call_search(FailingSearcher(AssertionError("not reached")), request)

    assert context.code is Code.INVALID_ARGUMENT
    assert "filter.conditions[0]" in context.details


def test_a_domain_error_keeps_its_code() -> None:
    context = call_search(FailingSearcher(CollectionNotFound("nope")), pb.SearchRequest(
        collection="nope", query="q", k=3
    ))

    assert context.code is Code.NOT_FOUND
    assert "'nope'" in context.details


def test_an_unexpected_error_is_internal_and_logged_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="searcher.errors"):
        context = call_search(
            FailingSearcher(ZeroDivisionError("boom")), pb.SearchRequest(collection="c", query="q", k=3)
        )

    assert context.code is Code.INTERNAL
    assert "boom" not in context.details
    (record,) = caplog.records
    assert "SearchServicer.Search" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[0] is ZeroDivisionError


class MissingCollectionIngestor:
    def upsert(self, collection: str, documents: object) -> list[object]:
        raise CollectionNotFound(collection)

    def delete(self, collection: str, external_ids: object) -> object:
        raise CollectionNotFound(collection)


async def _requests(*messages: pb.UpsertRequest) -> AsyncIterator[pb.UpsertRequest]:
    for message in messages:
        yield message


def run_upsert(*messages: pb.UpsertRequest) -> tuple[AbortingContext, list[pb.UpsertResponse]]:
    context = AbortingContext()
    responses: list[pb.UpsertResponse] = []

    async def scenario() -> None:
        with ThreadPoolExecutor(max_workers=1) as executor:
            servicer = IngestServicer(MissingCollectionIngestor(), executor)
            with pytest.raises(grpc.aio.AbortError):
                async for response in servicer.Upsert(_requests(*messages), context):
                    responses.append(response)

    asyncio.run(scenario())
    return context, responses


def test_streaming_methods_map_errors_too() -> None:
    context, responses = run_upsert(
        pb.UpsertRequest(collection="gone", documents=[pb.Document(id="a", text="x")])
    )

    assert context.code is Code.NOT_FOUND
    assert responses == []


def test_an_upsert_stream_must_name_its_collection_first() -> None:
    context, _ = run_upsert(pb.UpsertRequest(documents=[pb.Document(id="a", text="x")]))

    assert context.code is Code.INVALID_ARGUMENT
    assert context.details.startswith("collection")


def test_an_upsert_stream_cannot_switch_collections() -> None:
    context, _ = run_upsert(pb.UpsertRequest(collection="a"), pb.UpsertRequest(collection="b"))

    assert context.code is Code.INVALID_ARGUMENT
    assert "'b'" in context.details


class RecordingIngestor:
    """Writes everything it is given; records each call's ids."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def upsert(self, collection: str, documents: list[object]) -> list[DocumentOutcome]:
        self.calls.append([d.external_id for d in documents])  # type: ignore[attr-defined]
        return [DocumentOutcome(d.external_id, "written", sequence=len(self.calls)) for d in documents]  # type: ignore[attr-defined]


def test_rejected_documents_keep_their_place_and_never_reach_the_ingestor() -> None:
    ingestor = RecordingIngestor()
    messages = (
        pb.UpsertRequest(
            collection="c",
            documents=[pb.Document(id="a", text="x"), pb.Document(id="b", text=" ")],
        ),
        pb.UpsertRequest(documents=[pb.Document(id="c", text="y"), pb.Document(text="z")]),
    )

    async def scenario() -> list[pb.UpsertResponse]:
        with ThreadPoolExecutor(max_workers=1) as executor:
            servicer = IngestServicer(ingestor, executor, batch_size=3)
            return [r async for r in servicer.Upsert(_requests(*messages), AbortingContext())]

    responses = asyncio.run(scenario())

    assert ingestor.calls == [["a", "c"]]
    results = [r for response in responses for r in response.results]
    assert [(r.id, r.status, r.sequence) for r in results] == [
        ("a", pb.DOCUMENT_STATUS_WRITTEN, 1),
        ("b", pb.DOCUMENT_STATUS_REJECTED, 0),
        ("c", pb.DOCUMENT_STATUS_WRITTEN, 1),
        ("", pb.DOCUMENT_STATUS_REJECTED, 0),
    ]
    assert "documents[1]" in results[1].error and "text" in results[1].error
    assert "documents[3]" in results[3].error and "id" in results[3].error
    assert [len(response.results) for response in responses] == [3, 1]
