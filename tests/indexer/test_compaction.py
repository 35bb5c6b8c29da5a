"""Change-log compaction: entries every live reader has passed are pruned, a reader behind the
pruned point rebuilds from SQL, and the log stays bounded however often the same documents are
rewritten. On SQLite and on a real PostgreSQL server (``store`` runs each test on both)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from indexer.config import LogRetention
from indexer.errors import CollectionNotFound
from indexer.records import CollectionInfo
from indexer.store import Store
from indexer.sync import SyncedIndex
from tests.conftest_db import encoded, make_collection
from tests.indexer.test_sync import live_chunk_ids

FOREVER = LogRetention(reader_ttl_s=3600.0, max_entries=None, heartbeat_s=60.0)


def rewrite(store: Store, info: CollectionInfo, docs: int, version: int) -> None:
    """The same ``docs`` ids with new text: every chunk removed and added again in the log."""
    store.write_documents(info.id, [encoded(f"d{i}", f"version {version}", chunks=2) for i in range(docs)])


def change_count(store: Store, info: CollectionInfo) -> int:
    return len(store.changes_since(info.id, 0, limit=10**9))


def reader(store: Store, info: CollectionInfo, folder: Path, name: str, retention: LogRetention) -> SyncedIndex:
    return SyncedIndex.open(store, info, folder / name, reader=name, retention=retention)


def test_nothing_is_pruned_past_a_reader_that_may_still_replay_it(store: Store, tmp_path: Path) -> None:
    info = make_collection(store)
    rewrite(store, info, 5, version=0)
    ahead = reader(store, info, tmp_path, "ahead", FOREVER)
    behind = reader(store, info, tmp_path, "behind", FOREVER)
    assert behind.snapshot() is not None
    pinned_at = store.last_sequence(info.id)
    rewrite(store, info, 5, version=1)
    ahead.catch_up()

    assert ahead.snapshot() is not None  # snapshots, then compacts

    assert store.log_floor(info.id) == pinned_at
    assert [c.sequence for c in store.changes_since(info.id, 0, limit=10**9)][0] == pinned_at + 1
    # "behind" restarts from its snapshot and replays what it needs: nothing was pruned under it.
    again = reader(store, info, tmp_path, "behind", FOREVER)
    np.testing.assert_array_equal(again.ids(), live_chunk_ids(store, info))


def test_a_reader_silent_past_its_ttl_stops_holding_the_log_and_rebuilds_when_back(
    store: Store, tmp_path: Path
) -> None:
    info = make_collection(store)
    rewrite(store, info, 5, version=0)
    gone = reader(store, info, tmp_path, "gone", FOREVER)
    assert gone.snapshot() is not None
    old_snapshot = gone.sequence
    for version in (1, 2):
        rewrite(store, info, 5, version=version)
    store.record_reader(info.id, "gone", old_snapshot, now=0.0)  # last seen at the epoch
    active = reader(store, info, tmp_path, "active", FOREVER)

    assert active.snapshot() is not None

    assert store.log_floor(info.id) == store.last_sequence(info.id) > old_snapshot
    assert change_count(store, info) == 0
    back = reader(store, info, tmp_path, "gone", FOREVER)  # its snapshot is behind the floor
    assert back.sequence == store.last_sequence(info.id)
    np.testing.assert_array_equal(back.ids(), live_chunk_ids(store, info))


def test_a_running_reader_pruned_past_by_the_bound_rebuilds_and_serves_what_sql_holds(
    store: Store, tmp_path: Path
) -> None:
    info = make_collection(store)
    rewrite(store, info, 6, version=0)
    bounded = LogRetention(reader_ttl_s=3600.0, max_entries=4, heartbeat_s=60.0)
    slow = reader(store, info, tmp_path, "slow", bounded)
    fast = reader(store, info, tmp_path, "fast", bounded)
    store.delete_documents(info.id, ["d0", "d1"])
    rewrite(store, info, 4, version=1)
    fast.catch_up()
    assert fast.snapshot() is not None
    assert store.log_floor(info.id) > slow.sequence  # the bound beat the slow reader's pin

    slow.catch_up()

    assert slow.sequence == store.last_sequence(info.id)
    np.testing.assert_array_equal(slow.ids(), live_chunk_ids(store, info))
    assert change_count(store, info) <= 4


@pytest.mark.parametrize("rounds", [10])
def test_the_log_stays_bounded_when_the_same_documents_are_rewritten(
    store: Store, tmp_path: Path, rounds: int
) -> None:
    info = make_collection(store)
    docs = 200
    searcher = reader(store, info, tmp_path, "searcher", FOREVER)
    counts = []
    for version in range(rounds):
        rewrite(store, info, docs, version)
        searcher.catch_up()
        searcher.snapshot()
        counts.append(change_count(store, info))

    # Without compaction the log would hold 2 chunks x (1 add + 1 remove) x docs per round.
    assert store.last_sequence(info.id) == 2 * docs + (rounds - 1) * 4 * docs
    assert max(counts) == 0
    np.testing.assert_array_equal(searcher.ids(), live_chunk_ids(store, info))


def test_a_reader_registering_for_a_dropped_collection_is_collection_not_found(
    store: Store, tmp_path: Path
) -> None:
    """Before: the insert into log_readers failed its FOREIGN KEY, an IntegrityError no caller
    expects (logged with a traceback by the searcher's refresh loop)."""
    info = make_collection(store)
    rewrite(store, info, 3, version=0)
    registered = reader(store, info, tmp_path, "registered", FOREVER)
    store.drop_collection(info.name)

    with pytest.raises(CollectionNotFound):
        store.record_reader(info.id, "late", 0, now=0.0)  # a reader registering as it opens
    with pytest.raises(CollectionNotFound):
        registered.compact()  # a registered one refreshing its pin


def test_readers_registering_while_the_collection_is_dropped_see_it_or_not_found(store: Store) -> None:
    """Readers registering in a loop as the drop commits: each registration lands before the drop
    (which deletes it with the collection) or fails cleanly after it."""
    info = make_collection(store)
    failures: list[BaseException] = []
    start = threading.Barrier(5)

    def register(name: str) -> None:
        start.wait()
        try:
            for position in range(200):
                store.record_reader(info.id, name, position, now=float(position))
        except CollectionNotFound:
            return
        except BaseException as exc:  # reported below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=register, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    store.drop_collection(info.name)
    for thread in threads:
        thread.join()
    assert failures == []
