"""Ingestion overlaps embedding with SQL commits, yet commits and reports batches in input order."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from indexer.config import AppConfig, IngestConfig, StoreConfig
from indexer.errors import StoreBusy
from indexer.ingest import encode_documents
from indexer.readers import Rejection
from indexer.records import CollectionSpec, Document
from indexer.store import Store
from indexer.workspace import Workspace

PER_TRANSACTION = 4


@pytest.fixture
def workspace(tiny_albert_dir: Path, tmp_path: Path) -> Workspace:
    config = AppConfig(
        store=StoreConfig(data_dir=tmp_path),
        ingest=IngestConfig(docs_per_transaction=PER_TRANSACTION, progress=False),
        default_model=tiny_albert_dir,
    )
    opened = Workspace.open(config)
    opened.catalog.create("c", CollectionSpec(model="", max_length=64, window=32, overlap=8))
    yield opened
    opened.close()


def documents(count: int) -> list[Document]:
    return [Document(f"d{i}", f"the owl number {i} hunts at night") for i in range(count)]


def test_every_batch_commits_in_order_on_the_writer_thread(workspace: Workspace, monkeypatch) -> None:
    writes: list[tuple[list[str], int]] = []
    write = Store.write_documents

    def recording(self, collection_id, docs, updates=()):  # type: ignore[no-untyped-def]
        writes.append(([d.document.external_id for d in docs], threading.get_ident()))
        return write(self, collection_id, docs, updates)

    monkeypatch.setattr(Store, "write_documents", recording)
    progress: list[int] = []
    items = [*documents(10), Rejection(record="line 12", message="bad")]

    summary = workspace.ingestor.ingest("c", items, on_progress=progress.append)

    assert [ids for ids, _ in writes] == [[f"d{i}" for i in range(s, min(s + 4, 10))] for s in (0, 4, 8)]
    assert {thread for _, thread in writes} != {threading.get_ident()}
    assert (summary.read, summary.written, summary.rejected) == (11, 10, 1)
    assert progress == [4, 4, 3]
    assert summary.last_sequence == workspace.store.last_sequence(workspace.catalog.get("c").id)


def test_a_second_run_finds_every_document_unchanged(workspace: Workspace) -> None:
    workspace.ingestor.ingest("c", documents(9))

    summary = workspace.ingestor.ingest("c", documents(9))

    assert (summary.written, summary.unchanged) == (0, 9)


def test_a_failed_commit_stops_the_run_and_earlier_batches_stay_committed(
    workspace: Workspace, monkeypatch
) -> None:
    write = Store.write_documents
    calls = []

    def failing_second(self, collection_id, docs, updates=()):  # type: ignore[no-untyped-def]
        calls.append(len(docs))
        if len(calls) == 2:
            raise StoreBusy("database is locked")
        return write(self, collection_id, docs, updates)

    monkeypatch.setattr(Store, "write_documents", failing_second)

    with pytest.raises(StoreBusy):
        workspace.ingestor.ingest("c", documents(20))

    # The first batch committed; the failed one did not; ones queued behind it were not written.
    assert workspace.catalog.stats("c").documents == PER_TRANSACTION
    assert len(calls) == 2


def test_a_long_title_never_cuts_the_tail_of_a_full_window(workspace: Workspace) -> None:
    """Every chunk is embedded from its whole window: two documents whose first windows differ
    only in their last character get different vectors, however long the shared title."""
    info = workspace.catalog.get("c")
    encoder = workspace.catalog.encoder_for(info)
    title = " ".join(["the night owl hunts"] * 40)  # alone longer than max_length
    text = " ".join(f"owl {i} hunts mice in the barn at night" for i in range(12))
    first = encoder.chunk(text, info.spec.window, info.spec.overlap)[0]
    changed = text[: first.end - 1] + ("x" if text[first.end - 1] != "x" else "y") + text[first.end :]

    original, edited = encode_documents(
        [Document("a", text, title=title), Document("b", changed, title=title)], encoder, info
    )

    assert len(original.chunks) > 1 and original.chunks[0].end == first.end
    assert not np.allclose(original.vectors[0], edited.vectors[0], atol=1e-4)
    np.testing.assert_allclose(original.vectors[-1], edited.vectors[-1], atol=1e-5)
