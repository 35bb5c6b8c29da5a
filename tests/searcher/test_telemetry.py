"""Metrics and access logs of a real server (127.0.0.1, port 0), scraped over HTTP like Prometheus."""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from albatross.cli import build_parser
from albatross.commands import ingest_paths
from albatross.options import app_config
from indexer.config import AppConfig, ServerConfig
from indexer.records import Document
from indexer.telemetry import IngestMetrics
from protos.albatross.v1 import albatross_pb2 as pb
from protos.albatross.v1 import albatross_pb2_grpc as pb_grpc
from searcher.client import AlbatrossClient
from searcher.server import RunningServer
from searcher.telemetry import ACCESS_LOGGER, REQUEST_ID
from tests.searcher.serving import running_server, served_app

DOCUMENTS = [
    Document("heron", "A heron stood still in the shallow water."),
    Document("kettle", "The kettle clicked off just as the rain started."),
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    config = ServerConfig(metrics_port=0, poll_interval_s=0.05, batch_max_wait_ms=1.0)
    with running_server(
        served_app(tmp_path_factory.mktemp("telemetry-data"), tiny_albert_dir, config)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[AlbatrossClient]:
    with AlbatrossClient(server.target, timeout=60) as albatross:
        yield albatross


def scrape(server: RunningServer) -> Samples:
    """Every sample of ``/metrics`` as {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{server.metrics_port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def wait_until_indexed(client: AlbatrossClient, collection: str) -> None:
    deadline = time.monotonic() + 20
    while (stats := client.get_collection(collection).stats).index_sequence < stats.last_sequence:
        assert time.monotonic() < deadline, f"index of {collection!r} stuck at {stats}"
        time.sleep(0.02)


def test_calls_are_counted_by_method_and_status_and_timed(
    server: RunningServer, client: AlbatrossClient
) -> None:
    search = {"grpc_service": "albatross.v1.Search", "grpc_method": "Search"}
    before = scrape(server)
    client.create_collection("birds")
    statuses = client.upsert("birds", [*DOCUMENTS, Document("blank", "   ")])
    wait_until_indexed(client, "birds")
    client.search("birds", "a bird in water", k=1)
    client.search("birds", "rain", k=1)
    with pytest.raises(grpc.RpcError):
        client.search("absent", "rain", k=1)

    # An aborted call's status reaches the client a moment before the server has counted it.
    deadline = time.monotonic() + 5
    while (
        value(after := scrape(server), "albatross_grpc_server_handled_total", **search, grpc_code="NOT_FOUND")
        < 1
    ):
        assert time.monotonic() < deadline, "the NOT_FOUND search was never counted"
        time.sleep(0.02)
    moved = {
        key: value(after, key[0], **dict(key[1])) - value(before, key[0], **dict(key[1])) for key in after
    }
    assert [s.status for s in statuses] == ["written", "written", "rejected"]
    assert value(moved, "albatross_grpc_server_started_total", **search) == 3
    assert value(moved, "albatross_grpc_server_handled_total", **search, grpc_code="OK") == 2
    assert value(moved, "albatross_grpc_server_handled_total", **search, grpc_code="NOT_FOUND") == 1
    assert value(moved, "albatross_grpc_server_handling_seconds_count", **search) == 3
    assert value(moved, "albatross_grpc_server_handling_seconds_sum", **search) > 0
    upsert = {"grpc_service": "albatross.v1.Ingest", "grpc_method": "Upsert"}
    assert value(moved, "albatross_grpc_server_handled_total", **upsert, grpc_code="OK") == 1
    assert value(moved, "albatross_query_batch_size_count") == 2
    assert value(after, "albatross_query_queue_depth") == 0
    birds = {"collection": "birds"}
    assert value(moved, "albatross_ingest_documents_total", **birds, outcome="written") == 2
    assert value(moved, "albatross_ingest_documents_total", **birds, outcome="rejected") == 1
    assert value(moved, "albatross_ingest_documents_read_total", **birds) == 3
    assert (
        value(after, "albatross_index_vectors", collection="birds")
        == client.get_collection("birds").stats.index_vectors
    )


def access_entries(caplog: pytest.LogCaptureFixture, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The access-log entries by request id, once those of ``request_ids`` are all logged (the line
    of an aborted call may land a moment after its status reached the client)."""
    deadline = time.monotonic() + 5
    while True:
        entries = [json.loads(r.getMessage()) for r in caplog.records if r.name == ACCESS_LOGGER]
        by_id = {entry["request_id"]: entry for entry in entries}
        if set(request_ids) <= set(by_id) or time.monotonic() > deadline:
            return by_id
        time.sleep(0.02)


def test_the_request_id_comes_back_in_trailing_metadata_and_in_one_json_log_line(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    with grpc.insecure_channel(server.target) as channel:
        stub = pb_grpc.CollectionsStub(channel)
        _, call = stub.ListCollections.with_call(
            pb.ListCollectionsRequest(), metadata=((REQUEST_ID, "req-owl-1"),), timeout=10
        )
        with pytest.raises(grpc.RpcError) as raised:
            stub.GetCollection(pb.GetCollectionRequest(name="absent"), timeout=10)

    assert dict(call.trailing_metadata())[REQUEST_ID] == "req-owl-1"
    generated = dict(raised.value.trailing_metadata())[REQUEST_ID]  # type: ignore[attr-defined]
    assert len(generated) == 32 and int(generated, 16) >= 0
    by_id = access_entries(caplog, ["req-owl-1", generated])
    assert by_id["req-owl-1"]["method"] == "/albatross.v1.Collections/ListCollections"
    assert by_id["req-owl-1"]["code"] == "OK"
    assert by_id[generated]["code"] == "NOT_FOUND"
    assert by_id[generated]["duration_ms"] >= 0
    assert by_id[generated]["event"] == "rpc"


def test_an_unusable_request_id_is_replaced(server: RunningServer) -> None:
    with grpc.insecure_channel(server.target) as channel:
        _, call = pb_grpc.CollectionsStub(channel).ListCollections.with_call(
            pb.ListCollectionsRequest(), metadata=((REQUEST_ID, "x" * 500),), timeout=10
        )
    assert len(dict(call.trailing_metadata())[REQUEST_ID]) == 32


def test_the_ingest_worker_counts_documents_by_outcome(tmp_path: Path, tiny_albert_dir: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    lines = [
        {"_id": "a", "text": "first words"},
        {"_id": "b", "text": "more words"},
        {"_id": "c", "text": ""},
    ]
    corpus.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    args = build_parser().parse_args(
        ["ingest", str(corpus), "--collection", "docs", "--data-dir", str(tmp_path), "--no-progress"]
    )
    config = app_config(args)
    config = AppConfig(store=config.store, encoder=config.encoder, default_model=tiny_albert_dir)
    args.model = str(tiny_albert_dir)
    registry = CollectorRegistry()

    ingest_paths(config, args, IngestMetrics(registry))
    ingest_paths(config, args, IngestMetrics(CollectorRegistry()))  # the second run: all unchanged

    def count(outcome: str) -> float | None:
        return registry.get_sample_value(
            "albatross_ingest_documents_total", {"collection": "docs", "outcome": outcome}
        )

    assert (count("written"), count("unchanged"), count("rejected")) == (2, 0, 1)
    assert registry.get_sample_value("albatross_ingest_documents_read_total", {"collection": "docs"}) == 3

    lines[0] = {**lines[0], "metadata": {"tag": "new"}}
    corpus.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    retagged = CollectorRegistry()
    ingest_paths(config, args, IngestMetrics(retagged))
    outcomes = {"collection": "docs", "outcome": "metadata_updated"}
    assert retagged.get_sample_value("albatross_ingest_documents_total", outcomes) == 1
