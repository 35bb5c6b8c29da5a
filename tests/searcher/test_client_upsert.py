"""The client's upsert against a real server on loopback: the timeout bounds each acknowledgement,
not the stream, statuses stream as batches commit, and a stall keeps what was acknowledged."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from indexer.config import ServerConfig
from indexer.records import Document
from searcher.client import DOCUMENTS_PER_MESSAGE, AlbatrossClient, UpsertStalled
from searcher.server import RunningServer
from tests.searcher.serving import running_server, served_app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path) -> Iterator[RunningServer]:
    app = served_app(
        tmp_path_factory.mktemp("client-upsert"), tiny_albert_dir, ServerConfig(poll_interval_s=0.05)
    )
    with running_server(app) as running:
        with AlbatrossClient(running.target, timeout=60) as client:
            client.create_collection("notes")
            # Loads the collection's encoder: the first acknowledgement would wait for it.
            client.upsert("notes", [Document("warm-up", "the encoder loads on the first write")])
        yield running


def _batches(prefix: str, count: int, pause_s: float) -> Iterator[Document]:
    """``count`` messages' worth of documents, pausing before every message after the first."""
    for batch in range(count):
        if batch:
            time.sleep(pause_s)
        for i in range(DOCUMENTS_PER_MESSAGE):
            yield Document(f"{prefix}-{batch}-{i}", f"note {i} of batch {batch}, written by {prefix}")


def test_an_upsert_longer_than_its_timeout_finishes_while_it_progresses(server: RunningServer) -> None:
    with AlbatrossClient(server.target) as client:
        began = time.monotonic()
        statuses = client.upsert("notes", _batches("slow", 5, pause_s=1.0), timeout=3.0)
        took = time.monotonic() - began
    assert took > 3.0  # longer than the timeout: a deadline on the whole stream would have ended it
    assert len(statuses) == 5 * DOCUMENTS_PER_MESSAGE
    assert {s.status for s in statuses} == {"written"}


def test_a_stall_raises_deadline_exceeded_with_what_was_acknowledged(server: RunningServer) -> None:
    with AlbatrossClient(server.target) as client:
        with pytest.raises(UpsertStalled) as stalled:
            client.upsert("notes", _batches("stall", 2, pause_s=6.0), timeout=2.0)
        assert stalled.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        acknowledged = stalled.value.statuses
        assert [s.external_id for s in acknowledged] == [f"stall-0-{i}" for i in range(DOCUMENTS_PER_MESSAGE)]
        assert {s.status for s in acknowledged} == {"written"}
        stored = client.get_documents("notes", [s.external_id for s in acknowledged])
        assert len(stored) == DOCUMENTS_PER_MESSAGE


def test_statuses_stream_as_their_batch_commits(server: RunningServer) -> None:
    first_seen = threading.Event()

    def documents() -> Iterator[Document]:
        yield from (Document(f"stream-0-{i}", f"first batch note {i}") for i in range(DOCUMENTS_PER_MESSAGE))
        # The second batch is only made once the first one's status has reached the caller.
        assert first_seen.wait(30), "no status arrived before the stream ended"
        yield Document("stream-1-0", "second batch note")

    with AlbatrossClient(server.target) as client:
        seen = []
        for status in client.upsert_stream("notes", documents(), timeout=30):
            seen.append(status.external_id)
            first_seen.set()
    assert seen == [f"stream-0-{i}" for i in range(DOCUMENTS_PER_MESSAGE)] + ["stream-1-0"]


def test_a_timeout_already_past_sends_nothing(server: RunningServer) -> None:
    with AlbatrossClient(server.target) as client:
        with pytest.raises(UpsertStalled):
            client.upsert("notes", [Document("never", "never sent")], timeout=-1.0)
        assert client.get_documents("notes", ["never"]) == []
