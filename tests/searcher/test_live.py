"""The searcher's live indexes over a real store: a collection dropped while its index is open
and registered as a change-log reader is no error, even on shutdown, whose final snapshot
registers the reader's position once more."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from indexer.config import LogRetention
from indexer.records import CollectionInfo
from indexer.store import Store
from indexer.sync import SyncedIndex
from searcher.live import LiveIndex, LiveIndexes
from tests.conftest_db import encoded, make_collection


def live_indexes(store: Store, snapshots: Path, executor: ThreadPoolExecutor) -> LiveIndexes:
    def open_index(info: CollectionInfo) -> LiveIndex:
        return SyncedIndex.open(store, info, snapshots, reader="searcher-1", retention=LogRetention())

    return LiveIndexes(store, open_index, executor, poll_interval_s=3600.0, snapshot_every_changes=1)


def test_a_collection_dropped_under_an_open_reader_stops_without_an_error(
    sqlite_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    info = make_collection(sqlite_store)
    sqlite_store.write_documents(info.id, [encoded(f"d{i}") for i in range(3)])

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as executor:
            indexes = live_indexes(sqlite_store, tmp_path / "snapshots", executor)
            await indexes.start()
            assert indexes.vector_counts() == {"docs": 6}
            sqlite_store.drop_collection(info.name)
            await indexes.stop()  # before a refresh round has forgotten the dropped collection

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "collection 'docs' was dropped" in caplog.text
