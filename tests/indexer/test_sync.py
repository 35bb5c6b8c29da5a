"""SyncedIndex: snapshot + replay equals a rebuild from SQL, whatever happened in between."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from indexer.records import CollectionInfo
from indexer.store import Store
from indexer.sync import SyncedIndex, _outgrew_training, build_from_store, sample_vectors
from tests.conftest_db import DIMENSION, encoded, make_collection, unit_vectors

K = 5


def live_chunk_ids(store: Store, info: CollectionInfo) -> np.ndarray:
    return np.concatenate([ids for ids, _ in store.iter_vectors(info.id)] or [np.zeros(0, np.int64)])


def churn(store: Store, info: CollectionInfo, rng: np.random.Generator, rounds: int, docs: int = 12) -> None:
    """Seeded upserts (some unchanged), edits and deletes."""
    for round_ in range(rounds):
        batch = [
            encoded(f"d{i}", f"r{round_ // (1 + i % 3)}", chunks=1 + i % 4, rng=rng) for i in range(docs)
        ]
        store.write_documents(info.id, batch)
        store.delete_documents(info.id, [f"d{int(i)}" for i in rng.choice(docs, size=2, replace=False)])


def assert_same(a: SyncedIndex, b: SyncedIndex, queries: np.ndarray) -> None:
    np.testing.assert_array_equal(a.ids(), b.ids())
    scores_a, ids_a = a.search(queries, K)
    scores_b, ids_b = b.search(queries, K)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(scores_a, scores_b, atol=1e-6)


@pytest.mark.parametrize("spec", ["Flat", "HNSW16"])
def test_snapshot_plus_replay_equals_rebuild(sqlite_store: Store, tmp_path: Path, spec: str) -> None:
    store, rng = sqlite_store, np.random.default_rng(11)
    info = make_collection(store, index_spec=spec)
    churn(store, info, rng, rounds=3)
    first = SyncedIndex.open(store, info, tmp_path)
    assert first.snapshot() is not None
    churn(store, info, rng, rounds=3)  # changes after the snapshot, including removals

    replayed = SyncedIndex.open(store, info, tmp_path)
    rebuilt = SyncedIndex(store, info, tmp_path / "none", *build_from_store(store, info)[:2])
    rebuilt.catch_up()
    assert replayed.sequence == rebuilt.sequence == store.last_sequence(info.id)
    np.testing.assert_array_equal(replayed.ids(), live_chunk_ids(store, info))
    assert_same(replayed, rebuilt, unit_vectors(rng, 6))
    # and the first one, caught up, agrees too
    assert first.catch_up() > 0 and first.catch_up() == 0
    assert_same(first, rebuilt, unit_vectors(rng, 6))


def test_store_backends_agree(store: Store, tmp_path: Path) -> None:
    info = make_collection(store)
    churn(store, info, np.random.default_rng(2), rounds=2)
    synced = SyncedIndex.open(store, info, tmp_path)
    assert synced.ntotal == store.stats(info.id).chunks
    np.testing.assert_array_equal(synced.ids(), live_chunk_ids(store, info))


def test_corrupt_newest_snapshot_falls_back(sqlite_store: Store, tmp_path: Path) -> None:
    store, rng = sqlite_store, np.random.default_rng(4)
    info = make_collection(store)
    churn(store, info, rng, rounds=2)
    synced = SyncedIndex.open(store, info, tmp_path)
    synced.snapshot()
    churn(store, info, rng, rounds=1)
    synced.catch_up()
    newest = synced.snapshot()
    assert newest is not None
    newest.write_bytes(newest.read_bytes()[:100])  # torn
    churn(store, info, rng, rounds=1)

    reopened = SyncedIndex.open(store, info, tmp_path)
    np.testing.assert_array_equal(reopened.ids(), live_chunk_ids(store, info))
    for path in (tmp_path / "docs").glob("*.faiss"):
        path.write_bytes(b"garbage")
    rebuilt = SyncedIndex.open(store, info, tmp_path)  # nothing loads: rebuild from SQL
    assert_same(reopened, rebuilt, unit_vectors(rng, 4))


def test_replay_is_idempotent(sqlite_store: Store, tmp_path: Path) -> None:
    store, rng = sqlite_store, np.random.default_rng(8)
    info = make_collection(store)
    churn(store, info, rng, rounds=2)
    index, _, _ = build_from_store(store, info)
    behind = SyncedIndex(store, info, tmp_path, index, sequence=0)  # claims to have seen nothing
    assert behind.catch_up() == store.last_sequence(info.id)
    np.testing.assert_array_equal(behind.ids(), live_chunk_ids(store, info))


def test_untrainable_spec_serves_flat_until_enough_vectors(sqlite_store: Store, tmp_path: Path) -> None:
    """IVF16 needs 16 training points to run at all, but is only trained from 39 per list (624):
    below that the collection is served exactly by the Flat stand-in."""
    store, rng = sqlite_store, np.random.default_rng(9)
    info = make_collection(store, index_spec="IVF16,Flat")
    store.write_documents(info.id, [encoded(f"a{i}", chunks=4, rng=rng) for i in range(100)])
    synced = SyncedIndex.open(store, info, tmp_path)
    assert synced.fallback and synced.ntotal == 400  # enough to run k-means, not to do it well
    assert synced.snapshot() is None  # the stand-in is not the collection's index
    store.write_documents(info.id, [encoded(f"b{i}", chunks=4, rng=rng) for i in range(60)])
    synced.catch_up()
    assert not synced.fallback and synced.ntotal == 640
    np.testing.assert_array_equal(synced.ids(), live_chunk_ids(store, info))
    assert synced.snapshot() is not None


def test_an_index_that_outgrew_itssample_vectors_is_retrained(sqlite_store: Store, tmp_path: Path) -> None:
    """Trained on its first 640 vectors, an IVF16 collection that grows tenfold is rebuilt with a
    fresh (capped) sample; the sample size survives a snapshot, and a full sample is final."""
    store, rng = sqlite_store, np.random.default_rng(13)
    info = make_collection(store, index_spec="IVF16,Flat")
    store.write_documents(info.id, [encoded(f"a{i}", chunks=4, rng=rng) for i in range(160)])
    synced = SyncedIndex.open(store, info, tmp_path, train_sample=1000)
    assert not synced.fallback and synced._index.trained_on == 640
    store.write_documents(info.id, [encoded(f"b{i}", chunks=4, rng=rng) for i in range(1200)])
    synced.catch_up()
    assert synced._index.trained_on == 640 and synced.ntotal == 5440  # 8.5x: not yet
    store.write_documents(info.id, [encoded(f"c{i}", chunks=4, rng=rng) for i in range(300)])
    synced.catch_up()
    assert synced._index.trained_on == 1000 and synced.ntotal == 6640  # 10.4x: retrained, capped
    np.testing.assert_array_equal(synced.ids(), live_chunk_ids(store, info))
    synced.snapshot()
    reopened = SyncedIndex.open(store, info, tmp_path, train_sample=1000)
    assert reopened._index.trained_on == 1000


def test_thesample_vectors_spreads_over_the_whole_collection(sqlite_store: Store) -> None:
    store, rng = sqlite_store, np.random.default_rng(14)
    info = make_collection(store)
    store.write_documents(info.id, [encoded(f"d{i}", chunks=5, rng=rng) for i in range(205)])
    everything = np.concatenate([vectors for _, vectors in store.iter_vectors(info.id)])

    np.testing.assert_array_equal(sample_vectors(store, info.id, 100), everything[(np.arange(100) * 10.25).astype(int)])
    np.testing.assert_array_equal(sample_vectors(store, info.id, 5000), everything)


@pytest.mark.parametrize(
    ("trained_on", "live", "expected"),
    [(640, 6399, False), (640, 6400, True), (1000, 10**9, False), (None, 10**9, False)],
)
def test_retraining_for_growth_stops_at_a_full_sample(trained_on: int | None, live: int, expected: bool) -> None:
    assert _outgrew_training(trained_on, live, train_sample=1000) is expected


def test_many_tombstones_trigger_a_rebuild(sqlite_store: Store, tmp_path: Path) -> None:
    store, rng = sqlite_store, np.random.default_rng(10)
    info = make_collection(store, index_spec="HNSW16")
    store.write_documents(info.id, [encoded(f"d{i}", chunks=2, rng=rng) for i in range(10)])
    synced = SyncedIndex.open(store, info, tmp_path)
    store.delete_documents(info.id, [f"d{i}" for i in range(4)])
    synced.catch_up()
    assert synced.ntotal == 12
    np.testing.assert_array_equal(synced.ids(), live_chunk_ids(store, info))
    assert synced._index.tombstones == 0  # 40% dead: rebuilt from SQL


def test_searches_run_safely_during_catch_up(sqlite_store: Store, tmp_path: Path) -> None:
    store, rng = sqlite_store, np.random.default_rng(12)
    info = make_collection(store)
    synced = SyncedIndex.open(store, info, tmp_path)
    queries = unit_vectors(rng, 3, DIMENSION)
    stop, failures = threading.Event(), []

    def search_loop() -> None:
        while not stop.is_set():
            try:
                _, ids = synced.search(queries, K)
                assert ids.shape[0] == 3
            except BaseException as exc:  # reported below
                failures.append(exc)
                return

    thread = threading.Thread(target=search_loop)
    thread.start()
    try:
        for round_ in range(5):
            store.write_documents(info.id, [encoded(f"d{i}", f"r{round_}", rng=rng) for i in range(10)])
            synced.catch_up()
    finally:
        stop.set()
        thread.join()
    assert failures == [] and synced.ntotal == 20
