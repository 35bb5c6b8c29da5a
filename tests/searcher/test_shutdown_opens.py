"""A server stopped while indexes are still being opened shuts down cleanly (docs/OPERATIONS.md,
"Signals and shutdown"): no open starts once ``LiveIndexes.stop`` has begun, the ones already
running are waited for and get their final snapshot like any other, a request waiting on one
answers UNAVAILABLE, and nothing is left for asyncio to complain about ("Task exception was never
retrieved", "Task was destroyed but it is pending") or submitted to the closed executor."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from indexer.config import LogRetention, ServerConfig, StoreConfig
from indexer.errors import IndexNotReady
from indexer.records import CollectionInfo
from indexer.store import Store
from indexer.sync import SyncedIndex
from searcher.errors import status_for
from searcher.live import SHUTTING_DOWN, LiveIndex, LiveIndexes
from searcher.server import create_server
from tests.conftest_db import encoded, make_collection
from tests.searcher.serving import ServerThread, served_app

NEW_COLLECTIONS = 200


def create_collections(config: StoreConfig, stopped: threading.Event) -> None:
    """New collections, as another process keeps creating them, until ``stopped``."""
    writer = Store.open(config)
    try:
        for i in range(NEW_COLLECTIONS):
            if stopped.is_set():
                return
            info = make_collection(writer, f"new-{i}")
            writer.write_documents(info.id, [encoded(f"d{j}") for j in range(20)])
    finally:
        writer.close()


def asyncio_complaints(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING]


def test_collections_created_just_before_stop_leave_a_clean_shutdown(
    tmp_path: Path, tiny_albert_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Polled often, so the round that opens the new collections is under way when stop comes.
    app = served_app(tmp_path / "data", tiny_albert_dir, ServerConfig(poll_interval_s=0.01))
    thread = ServerThread()
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        try:
            running = thread.run(create_server(app, port=0))
            stopped = threading.Event()
            writing = threading.Thread(target=create_collections, args=(app.store, stopped))
            writing.start()
            try:
                time.sleep(0.3)  # a few poll rounds in
                started = time.monotonic()
                thread.run(running.stop(grace_s=0.0))
                took_s = time.monotonic() - started
            finally:
                stopped.set()
                writing.join()
        finally:
            thread.close()
        gc.collect()  # asyncio reports a lost task when it is collected
    assert asyncio_complaints(caplog) == []
    assert took_s < 10


# --- the same, step by step: an open held in the executor through the opener seam ----------------


class GatedOpener:
    """``SyncedIndex.open`` that, once in its thread, waits for ``release``: an open of a big
    collection, still replaying its log when stop comes."""

    def __init__(self, store: Store, snapshots: Path) -> None:
        self._store = store
        self._snapshots = snapshots
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, info: CollectionInfo) -> LiveIndex:
        self.calls += 1
        self.entered.set()
        assert self.release.wait(30), "the test never released the open"
        return SyncedIndex.open(self._store, info, self._snapshots, reader="searcher-1", retention=LogRetention())


def live_indexes(store: Store, opener: GatedOpener, executor: ThreadPoolExecutor) -> LiveIndexes:
    return LiveIndexes(store, opener, executor, poll_interval_s=3600.0, snapshot_every_changes=1000)


def test_an_open_running_at_stop_is_waited_for_and_snapshotted(
    sqlite_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    opener = GatedOpener(sqlite_store, tmp_path / "snapshots")

    async def scenario() -> None:
        with ThreadPoolExecutor(2) as executor:
            indexes = live_indexes(sqlite_store, opener, executor)
            await indexes.start()
            info = make_collection(sqlite_store)
            sqlite_store.write_documents(info.id, [encoded(f"d{i}") for i in range(3)])
            request = asyncio.create_task(indexes.get(info))
            await asyncio.to_thread(opener.entered.wait, 10)
            stopping = asyncio.create_task(indexes.stop())
            await asyncio.sleep(0.2)
            assert not stopping.done()  # the open is still running: stop waits for it
            opener.release.set()
            await asyncio.wait_for(stopping, 10)
            assert (await request).ntotal == 6
            with pytest.raises(IndexNotReady, match=SHUTTING_DOWN):
                await indexes.get(make_collection(sqlite_store, "later"))
        assert opener.calls == 1

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert asyncio_complaints(caplog) == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert list((tmp_path / "snapshots").iterdir()), "the index opened during stop got no final snapshot"


def test_a_request_waiting_on_an_open_still_queued_at_stop_is_unavailable(
    sqlite_store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    opener = GatedOpener(sqlite_store, tmp_path / "snapshots")
    busy = threading.Event()

    async def scenario() -> None:
        with ThreadPoolExecutor(1) as executor:
            indexes = live_indexes(sqlite_store, opener, executor)
            await indexes.start()
            info = make_collection(sqlite_store)
            sqlite_store.write_documents(info.id, [encoded("d0")])
            # The only worker is busy (a long forward pass): the open waits in the queue.
            occupied = asyncio.get_running_loop().run_in_executor(executor, busy.wait, 30)
            request = asyncio.create_task(indexes.get(info))
            await asyncio.sleep(0.1)
            stopping = asyncio.create_task(indexes.stop())
            await asyncio.sleep(0.1)
            busy.set()
            await occupied
            with pytest.raises(IndexNotReady, match=SHUTTING_DOWN) as refused:
                await request
            assert status_for(refused.value)[0] is grpc.StatusCode.UNAVAILABLE
            await asyncio.wait_for(stopping, 10)
        assert opener.calls == 0  # refused before it began: nothing ran after stop

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        asyncio.run(scenario())
        gc.collect()
    assert asyncio_complaints(caplog) == []
