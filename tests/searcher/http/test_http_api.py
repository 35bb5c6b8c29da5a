"""The HTTP/JSON API of a real server on loopback (gRPC and HTTP on port 0, SQLite, a tiny random
ALBERT): the same answers as gRPC, errors in the same vocabulary, NDJSON upserts, CORS, telemetry."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from indexer.config import ServerConfig
from indexer.records import Document
from indexer.version import installed_version
from protos.albatross.v1 import albatross_pb2 as pb
from searcher.client import AlbatrossClient
from searcher.errors import HTTP_STATUS_OF
from searcher.server import RunningServer
from searcher.telemetry import ACCESS_LOGGER
from tests.searcher.http.calls import call, http_server
from tests.searcher.serving import served_app

DOCUMENTS = [
    Document("kettle", "The kettle clicked off just as the rain started.", metadata={"room": "kitchen"}),
    Document("umbrella", "She left her umbrella on the bus again.", metadata={"room": "hall"}),
    Document("tomatoes", "Our neighbour grows tomatoes and beans every summer.", metadata={"room": "garden"}),
    Document("library", "The library closes early on Saturdays.", metadata={"room": "hall", "year": 2020}),
]
ORIGIN = "https://search.example"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    config = ServerConfig(poll_interval_s=0.05, metrics_port=0, cors_origins=(ORIGIN,))
    with http_server(served_app(tmp_path_factory.mktemp("http-data"), tiny_albert_dir, config)) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[AlbatrossClient]:
    with AlbatrossClient(server.target, timeout=60) as albatross:
        yield albatross


def wait_until_indexed(url: str, collection: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        stats = call("GET", f"{url}/v1/collections/{collection}").json()["stats"]
        if int(stats["indexSequence"]) >= int(stats["lastSequence"]):
            return
        assert time.monotonic() < deadline, f"index of {collection!r} stuck at {stats}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def notes(server: RunningServer, client: AlbatrossClient) -> str:
    client.create_collection("notes")
    client.upsert("notes", DOCUMENTS)
    wait_until_indexed(str(server.http_url), "notes")
    return "notes"


def ndjson(*records: dict[str, object] | str) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


# --- the same answers as gRPC ---------------------------------------------------------------------


def test_a_search_over_http_finds_what_the_grpc_search_finds(
    server: RunningServer, client: AlbatrossClient, notes: str
) -> None:
    # No content type, as `curl -d` sends it: the body is JSON all the same.
    answer = call("POST", f"{server.http_url}/v1/collections/{notes}/search", '{"query": "rain", "k": 3}')
    assert answer.status == 200
    hits = answer.json()["hits"]
    expected = client.search(notes, "rain", 3)
    assert [h["id"] for h in hits] == [h.external_id for h in expected]
    assert [h["score"] for h in hits] == pytest.approx([h.score for h in expected], abs=1e-6)
    first = next(h for h in hits if h["id"] == "library") if "library" in [h["id"] for h in hits] else hits[0]
    assert set(first) == {"id", "score", "title", "text", "start", "end", "metadata", "legs"}
    assert len(first["legs"]) == 1  # a dense search: one leg found it


def test_a_filtered_batch_search_is_the_proto3_json_of_the_grpc_request(
    server: RunningServer, client: AlbatrossClient, notes: str
) -> None:
    body = {
        "queries": ["rain", "vegetables"],
        "k": 4,
        "filter": {"conditions": [{"field": "room", "equals": {"stringValue": "hall"}}]},
    }
    answer = call("POST", f"{server.http_url}/v1/collections/{notes}/search/batch", body)
    assert answer.status == 200, answer.body
    results = [[hit["id"] for hit in result["hits"]] for result in answer.json()["results"]]
    assert len(results) == 2
    assert all(set(ids) <= {"umbrella", "library"} and ids for ids in results)


def test_collections_are_listed_described_created_and_dropped(server: RunningServer, notes: str) -> None:
    url = server.http_url
    created = call("POST", f"{url}/v1/collections/scratch", {"spec": {"window": 64, "overlap": 8}})
    assert created.status == 201, created.body
    assert created.json()["spec"]["window"] == 64
    assert call("POST", f"{url}/v1/collections/scratch", {}).json()["error"]["status"] == "ALREADY_EXISTS"
    names = [c["name"] for c in call("GET", f"{url}/v1/collections").json()["collections"]]
    assert {"notes", "scratch"} <= set(names)
    described = call("GET", f"{url}/v1/collections/{notes}").json()
    assert described["collection"]["name"] == notes and int(described["stats"]["documents"]) == len(DOCUMENTS)
    assert call("DELETE", f"{url}/v1/collections/scratch").status == 200
    assert call("GET", f"{url}/v1/collections/scratch").status == 404


def test_own_vectors_and_vocabulary_warnings_reach_http_as_they_reach_grpc(
    server: RunningServer, notes: str
) -> None:
    """Both front-ends go through searcher.operations: a model-less collection takes its dimension
    and its documents' vectors, and a query the model cannot read is warned about."""
    url = server.http_url
    created = call("POST", f"{url}/v1/collections/byo-http", {"spec": {"model": "none"}, "dimension": 2})
    assert created.status == 201, created.body
    assert created.json()["dimension"] == 2
    lines = call(
        "POST",
        f"{url}/v1/collections/byo-http/documents",
        ndjson({"id": "east", "text": "east", "vector": {"values": [1.0, 0.0]}}),
    ).lines()
    assert [line["status"] for line in lines] == ["DOCUMENT_STATUS_WRITTEN"], lines
    warned = call("POST", f"{url}/v1/collections/{notes}/search", {"query": "東京は日本の首都です。", "k": 1})
    assert warned.status == 200 and "outside the vocabulary" in warned.json()["warnings"][0]
    plain = call("POST", f"{url}/v1/collections/{notes}/search", {"query": "rain", "k": 1}).json()
    assert plain["warnings"] == []


def test_documents_are_read_by_id_with_the_missing_ones_named(server: RunningServer, notes: str) -> None:
    answer = call(
        "GET", f"{server.http_url}/v1/collections/{notes}/documents?ids=library&ids=nope&ids=kettle"
    )
    assert answer.status == 200
    body = answer.json()
    assert [d["id"] for d in body["documents"]] == ["library", "kettle"]
    assert body["documents"][0]["metadata"] == {"room": "hall", "year": 2020}
    assert body["missing"] == ["nope"]


# --- NDJSON upserts ---------------------------------------------------------------------------------


def test_an_ndjson_upsert_commits_the_good_lines_and_names_the_bad_one(server: RunningServer) -> None:
    url = server.http_url
    assert call("POST", f"{url}/v1/collections/bulk", {}).status == 201
    body = ndjson(
        {"id": "a", "text": "Apples fall in autumn.", "metadata": {"n": 1}},
        '{"id": "b", "text": "broken',
        {"id": "c", "txet": "a misspelt field"},
        "",
        {"id": "d", "text": "Dates grow on palms.", "title": "Dates"},
        {"id": "e", "text": "   "},
    )
    answer = call("POST", f"{url}/v1/collections/bulk/documents", body)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/x-ndjson")
    results = answer.lines()
    assert [(r["id"], r["status"]) for r in results] == [
        ("a", "DOCUMENT_STATUS_WRITTEN"),
        ("", "DOCUMENT_STATUS_REJECTED"),
        ("c", "DOCUMENT_STATUS_REJECTED"),
        ("d", "DOCUMENT_STATUS_WRITTEN"),
        ("e", "DOCUMENT_STATUS_REJECTED"),
    ]
    assert results[1]["error"].startswith("line 2 is not JSON")
    assert "line 3" in results[2]["error"] and "txet" in results[2]["error"]
    assert "line 6" in results[4]["error"] and "text" in results[4]["error"]
    assert int(results[0]["sequence"]) > 0
    stored = call("GET", f"{url}/v1/collections/bulk/documents?ids=a&ids=b&ids=d").json()
    assert [d["id"] for d in stored["documents"]] == ["a", "d"] and stored["missing"] == ["b"]
    again = call(
        "POST",
        f"{url}/v1/collections/bulk/documents",
        ndjson({"id": "a", "text": "Apples fall in autumn.", "metadata": {"n": 1}}),
    )
    assert again.lines()[0]["status"] == "DOCUMENT_STATUS_UNCHANGED"
    retagged = call(
        "POST",
        f"{url}/v1/collections/bulk/documents",
        ndjson({"id": "a", "text": "Apples fall in autumn.", "metadata": {"n": 2}}),
    )
    assert retagged.lines()[0]["status"] == "DOCUMENT_STATUS_METADATA_UPDATED"


def test_an_upsert_of_many_documents_streams_a_result_for_each(server: RunningServer) -> None:
    url = server.http_url
    call("POST", f"{url}/v1/collections/many", {})
    body = ndjson(*({"id": f"doc-{i}", "text": f"Note number {i} about the weather."} for i in range(150)))
    results = call("POST", f"{url}/v1/collections/many/documents", body).lines()
    assert [r["id"] for r in results] == [f"doc-{i}" for i in range(150)]
    assert {r["status"] for r in results} == {"DOCUMENT_STATUS_WRITTEN"}
    assert int(call("GET", f"{url}/v1/collections/many").json()["stats"]["documents"]) == 150


def test_an_upsert_to_an_unknown_collection_is_404_before_any_result(server: RunningServer) -> None:
    answer = call(
        "POST", f"{server.http_url}/v1/collections/nowhere/documents", ndjson({"id": "x", "text": "y"})
    )
    assert answer.status == 404
    assert answer.json()["error"]["status"] == "NOT_FOUND"


def test_documents_are_deleted_by_query_ids_or_a_json_body(server: RunningServer) -> None:
    url = server.http_url
    call("POST", f"{url}/v1/collections/trash", {})
    call(
        "POST",
        f"{url}/v1/collections/trash/documents",
        ndjson(*({"id": i, "text": f"text {i}"} for i in "xyz")),
    )
    by_query = call("DELETE", f"{url}/v1/collections/trash/documents?ids=x&ids=nope").json()
    assert by_query["deleted"] == ["x"] and by_query["missing"] == ["nope"]
    by_body = call("DELETE", f"{url}/v1/collections/trash/documents", {"ids": ["y"]}).json()
    assert by_body["deleted"] == ["y"]
    assert call("GET", f"{url}/v1/collections/trash/documents?ids=z").json()["missing"] == []


# --- errors: the gRPC vocabulary, HTTP statuses ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ('{"qurey": "rain"}', 400, "qurey"),
        ('{"query": "rain", "k": 0}', 400, "k"),
        ('{"query": "rain", "k": "many"}', 400, "k"),
        ('{"query": ""}', 400, "query"),
        (
            '{"query": "rain", "k": 2, "filter": {"conditions": [{"field": "room"}]}}',
            400,
            "filter.conditions[0]",
        ),
        ('{"query": "rain", "collection": "other"}', 400, "collection"),
        ("[1, 2]", 400, "body"),
        ("{not json", 400, "body"),
    ],
)
def test_a_bad_search_body_is_400_naming_the_field(
    server: RunningServer, notes: str, body: str, status: int, field: str
) -> None:
    answer = call("POST", f"{server.http_url}/v1/collections/{notes}/search", body)
    assert answer.status == status
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == status
    assert error["field"] == field and field in error["message"]


def test_the_error_messages_are_the_grpc_ones(
    server: RunningServer, client: AlbatrossClient, notes: str
) -> None:
    with pytest.raises(grpc.RpcError) as grpc_error:
        client.search(notes, "rain", 0)
    answer = call("POST", f"{server.http_url}/v1/collections/{notes}/search", {"query": "rain", "k": 0})
    assert answer.json()["error"]["message"] == grpc_error.value.details()  # type: ignore[attr-defined]


def test_an_unknown_collection_route_and_method_are_named(server: RunningServer) -> None:
    url = server.http_url
    missing = call("POST", f"{url}/v1/collections/nope/search", {"query": "x", "k": 1})
    assert (missing.status, missing.json()["error"]["status"]) == (404, "NOT_FOUND")
    assert "nope" in missing.json()["error"]["message"]
    assert call("GET", f"{url}/v2/anything").json()["error"]["status"] == "NOT_FOUND"
    assert call("PUT", f"{url}/v1/collections").status == 405


def test_an_unknown_query_parameter_is_named(server: RunningServer, notes: str) -> None:
    answer = call("GET", f"{server.http_url}/v1/collections/{notes}/documents?id=kettle")
    assert answer.status == 400
    assert answer.json()["error"]["field"] == "id"


def test_every_grpc_status_has_one_http_status() -> None:
    assert set(HTTP_STATUS_OF) == set(grpc.StatusCode)
    assert HTTP_STATUS_OF[grpc.StatusCode.INVALID_ARGUMENT] == 400
    assert HTTP_STATUS_OF[grpc.StatusCode.NOT_FOUND] == 404
    assert HTTP_STATUS_OF[grpc.StatusCode.ALREADY_EXISTS] == 409
    assert HTTP_STATUS_OF[grpc.StatusCode.UNAUTHENTICATED] == 401
    assert HTTP_STATUS_OF[grpc.StatusCode.RESOURCE_EXHAUSTED] == 429
    assert HTTP_STATUS_OF[grpc.StatusCode.UNAVAILABLE] == 503


# --- CORS -----------------------------------------------------------------------------------------------


def test_a_preflight_from_an_allowed_origin_is_answered(server: RunningServer, notes: str) -> None:
    answer = call(
        "OPTIONS",
        f"{server.http_url}/v1/collections/{notes}/search",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]


def test_a_preflight_from_another_origin_is_refused(server: RunningServer, notes: str) -> None:
    answer = call(
        "OPTIONS",
        f"{server.http_url}/v1/collections/{notes}/search",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert answer.status == 403
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert "https://evil.example" in answer.json()["error"]["message"]


def test_answers_to_an_allowed_origin_are_readable_by_its_pages(server: RunningServer) -> None:
    allowed = call("GET", f"{server.http_url}/v1/collections", headers={"Origin": ORIGIN})
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "X-Request-Id" in allowed.headers["Access-Control-Expose-Headers"]
    other = call("GET", f"{server.http_url}/v1/collections", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


# --- health, telemetry, OpenAPI -----------------------------------------------------------------------


def test_health_and_readiness_answer(server: RunningServer) -> None:
    assert call("GET", f"{server.http_url}/healthz").json() == {"status": "SERVING"}
    ready = call("GET", f"{server.http_url}/readyz")
    assert (ready.status, ready.json()) == (200, {"status": "SERVING"})


def test_the_request_id_is_kept_and_the_call_logged(
    server: RunningServer, notes: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        answer = call(
            "GET", f"{server.http_url}/v1/collections/{notes}", headers={"X-Request-Id": "trace-42"}
        )
        deadline = time.monotonic() + 5
        while not any("trace-42" in r.getMessage() for r in caplog.records) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert answer.headers["X-Request-Id"] == "trace-42"
    assert "dur=" in answer.headers["Server-Timing"]
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if "trace-42" in r.getMessage()]
    assert line["event"] == "http" and line["route"] == "/v1/collections/{name}"
    assert (line["status"], line["code"], line["method"]) == (200, "OK", "GET")


def test_metrics_count_http_requests_by_route(server: RunningServer, notes: str) -> None:
    call("POST", f"{server.http_url}/v1/collections/{notes}/search", {"query": "x", "k": 0})
    text = call("GET", f"{server.http_url}/metrics").body.decode()
    assert (
        'albatross_http_server_handled_total{method="POST",route="/v1/collections/{name}/search",status="400"}'
        in text
    )


def test_the_openapi_document_is_derived_from_the_proto(server: RunningServer) -> None:
    doc = call("GET", f"{server.http_url}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == installed_version()  # as ``albatross --version`` says
    search = doc["paths"]["/v1/collections/{name}/search"]["post"]
    assert search["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("SearchRequest")
    properties = doc["components"]["schemas"]["albatross.v1.SearchRequest"]["properties"]
    assert set(properties) == {f.json_name for f in pb.SearchRequest.DESCRIPTOR.fields}
    status = doc["components"]["schemas"]["albatross.v1.DocumentResult"]["properties"]["status"]
    assert status["enum"] == [v.name for v in pb.DocumentStatus.DESCRIPTOR.values]
    assert (
        "application/x-ndjson"
        in doc["paths"]["/v1/collections/{name}/documents"]["post"]["requestBody"]["content"]
    )
    assert "/metrics" in doc["paths"]


def test_the_pages_load_only_from_this_server(server: RunningServer) -> None:
    for path in ("/", "/docs"):
        page = call("GET", f"{server.http_url}{path}")
        assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert b"http://" not in page.body and b"https://" not in page.body
