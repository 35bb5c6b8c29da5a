"""HTTP handlers: JSON -> ``albatross.v1`` request -> ``searcher.operations`` -> JSON.

The gRPC servicers' twin: the same operations on the same messages, checked by the same
``searcher.convert``; only the wire differs. Errors propagate to ``middleware.errors``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from indexer.errors import InvalidArgument
from indexer.records import Document
from protos.albatross.v1 import albatross_pb2 as pb
from searcher import convert
from searcher.http import codec, ndjson
from searcher.http.middleware import REQUEST_ID_HEADER, error_body, request_id
from searcher.http.routes import JSON, NDJSON, Route
from searcher.operations import (
    UPSERT_BATCH_SIZE,
    CollectionOperations,
    SearchOperations,
    UpsertWriter,
    document_or_rejection,
)

Operation = Callable[[Any], Awaitable[Message]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
READ_CHUNK_BYTES = 64 * 1024


class Handlers:
    """One handler per route of ``routes.API_ROUTES``, over the injected operations."""

    def __init__(
        self,
        collections: CollectionOperations,
        search: SearchOperations,
        writer: UpsertWriter,
        *,
        max_line_bytes: int,  # the gRPC message limit: one document is one line
        batch_size: int = UPSERT_BATCH_SIZE,
    ) -> None:
        self._operations: dict[str, Operation] = {
            "list_collections": lambda request: collections.list(),
            "create_collection": collections.create,
            "get_collection": collections.get,
            "drop_collection": collections.drop,
            "search": search.search,
            "search_batch": search.search_batch,
            "embed": search.embed,
            "get_documents": search.get_documents,
            "delete_documents": writer.delete,
        }
        self._writer = writer
        self._max_line_bytes = max_line_bytes
        self._batch_size = batch_size

    def handler(self, route: Route) -> Handler:
        if route.body == NDJSON:
            return self.upsert
        operation = self._operations[route.operation]

        async def handle(request: web.Request) -> web.StreamResponse:
            answer = await operation(await request_message(request, route))
            return web.Response(text=codec.to_json(answer), status=route.status, content_type=JSON)

        return handle

    async def upsert(self, request: web.Request) -> web.StreamResponse:
        """NDJSON documents in, one NDJSON result per document out, batch by committed batch.

        The status line goes out with the first committed batch, so an error before it (unknown
        collection) is an ordinary error answer; one after it is the stream's last line.
        """
        collection = convert.require_name(request.match_info["name"], "collection")
        response: web.StreamResponse | None = None
        batch: list[Document | pb.DocumentResult] = []
        try:
            lines = ndjson.numbered_lines(
                request.content.iter_chunked(READ_CHUNK_BYTES), self._max_line_bytes
            )
            position = 0
            async for number, line in lines:
                batch.append(_line_document(number, line, position))
                position += 1
                if len(batch) >= self._batch_size:
                    response = await _send(request, response, await self._writer.write(collection, batch))
                    batch = []
            results = await self._writer.write(collection, batch) if batch else []
            response = await _send(request, response, results)
        except Exception as error:
            if response is None:
                raise
            _, body = error_body(error)
            await response.write((json.dumps(body, ensure_ascii=False) + "\n").encode())
        await response.write_eof()
        return response


def _line_document(number: int, line: bytes | None, position: int) -> Document | pb.DocumentResult:
    """One NDJSON line as a document, or its rejection naming the line (and the id when readable);
    ``line`` None: it was longer than the message limit."""
    where = f"line {number}"
    if line is None:
        return convert.rejected_to_pb("", f"{where} is longer than the message limit (max_message_bytes)")
    try:
        values = codec.parse_object(line, where)
    except InvalidArgument as error:
        return convert.rejected_to_pb("", str(error))
    try:
        message = codec.from_dict(values, pb.Document())
    except InvalidArgument as error:
        external_id = values.get("id")
        return convert.rejected_to_pb(
            external_id if isinstance(external_id, str) else "", f"{where}: {error}"
        )
    return document_or_rejection(message, position, record=where)


async def _send(
    request: web.Request, response: web.StreamResponse | None, results: list[pb.DocumentResult]
) -> web.StreamResponse:
    if response is None:
        response = web.StreamResponse(
            headers={"Content-Type": NDJSON, REQUEST_ID_HEADER: request_id(request)}
        )
        await response.prepare(request)
    if results:
        await response.write("".join(codec.to_json(result) + "\n" for result in results).encode())
    return response


async def request_message(request: web.Request, route: Route) -> Message:
    """``route.request`` filled from the JSON body, then the query string, then the path."""
    message = route.request()
    if route.body == JSON and request.can_read_body:
        raw = await request.read()
        if raw.strip():
            codec.from_dict(codec.parse_object(raw, "body"), message)
    if request.query:
        codec.from_dict(_query_values(request, message), message)
    if route.path_field is not None:
        _bind_path(message, route.path_field, request.match_info["name"])
    return message


def _query_values(request: web.Request, message: Message) -> dict[str, Any]:
    fields = {f.name: f for f in message.DESCRIPTOR.fields} | {
        f.json_name: f for f in message.DESCRIPTOR.fields
    }
    values: dict[str, Any] = {}
    for key in dict.fromkeys(request.query.keys()):
        field = fields.get(key)
        if field is None:
            known = ", ".join(f.json_name for f in message.DESCRIPTOR.fields)
            raise InvalidArgument(f"{key}: unknown query parameter (known here: {known})", field=key)
        repeated = field.is_repeated
        values[key] = request.query.getall(key) if repeated else request.query[key]
    return values


def _bind_path(message: Message, field: str, name: str) -> None:
    named = getattr(message, field)
    if named and named != name:
        raise InvalidArgument(f"{field}: the path names {name!r}, the request {named!r}", field=field)
    setattr(message, field, name)
