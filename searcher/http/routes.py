"""The HTTP API's routes: one table, from which the application and its OpenAPI document are built.

A request message is filled from three places, as grpc-gateway does with ``body: "*"``: the path
(``{name}`` sets ``path_field``), the query string (``?ids=a&ids=b`` for a repeated field) and the
JSON body. The path wins over a body that names another collection only by refusing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from protos.albatross.v1 import albatross_pb2 as pb

JSON = "application/json"
NDJSON = "application/x-ndjson"


@dataclass(frozen=True)
class Route:
    """One operation of the API: ``operation`` names the ``Handlers`` callable that serves it."""

    method: str
    path: str
    operation: str
    summary: str
    request: type[Message]
    response: type[Message]
    path_field: str | None = None
    body: str | None = JSON  # content type of the request body, None when it has none
    answer: str = JSON
    status: int = 200


COLLECTION = "/v1/collections/{name}"

API_ROUTES: tuple[Route, ...] = (
    Route(
        "GET", "/v1/collections", "list_collections", "List the collections",
        pb.ListCollectionsRequest, pb.ListCollectionsResponse, body=None,
    ),
    Route(
        "POST", COLLECTION, "create_collection",
        "Create a collection (the body's spec fixes how its vectors are made; unset fields take defaults)",
        pb.CreateCollectionRequest, pb.Collection, path_field="name", status=201,
    ),
    Route(
        "GET", COLLECTION, "get_collection", "A collection, its sizes and how far this server's index is",
        pb.GetCollectionRequest, pb.GetCollectionResponse, path_field="name", body=None,
    ),
    Route(
        "DELETE", COLLECTION, "drop_collection", "Drop a collection with its documents",
        pb.DropCollectionRequest, pb.DropCollectionResponse, path_field="name", body=None,
    ),
    Route(
        "POST", COLLECTION + "/search", "search", "The top k documents for a query text or vector",
        pb.SearchRequest, pb.SearchResponse, path_field="collection",
    ),
    Route(
        "POST", COLLECTION + "/search/batch", "search_batch", "One ranked list per query, in order",
        pb.SearchBatchRequest, pb.SearchBatchResponse, path_field="collection",
    ),
    Route(
        "POST", COLLECTION + "/embed", "embed", "The vectors a search would use for these query texts",
        pb.EmbedRequest, pb.EmbedResponse, path_field="collection",
    ),
    Route(
        "POST", COLLECTION + "/documents", "upsert",
        "Upsert documents: one Document per NDJSON line; one DocumentResult line per document, "
        "sent once its transaction has committed",
        pb.Document, pb.DocumentResult, path_field="collection", body=NDJSON, answer=NDJSON,
    ),
    Route(
        "GET", COLLECTION + "/documents", "get_documents", "Stored documents by id (?ids=a&ids=b)",
        pb.GetDocumentsRequest, pb.GetDocumentsResponse, path_field="collection", body=None,
    ),
    Route(
        "DELETE", COLLECTION + "/documents", "delete_documents",
        "Delete documents by id (?ids=a&ids=b, or a JSON body {\"ids\": [...]})",
        pb.DeleteRequest, pb.DeleteResponse, path_field="collection",
    ),
)  # fmt: skip

# Routes anyone may call: probes and scrapers carry no secrets, the pages hold no data.
HEALTH_PATHS = ("/healthz", "/readyz")
OPEN_PATHS = (*HEALTH_PATHS, "/metrics", "/openapi.json", "/docs", "/")
STATIC_PREFIX = "/static/"
