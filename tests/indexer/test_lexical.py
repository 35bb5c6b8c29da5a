"""The lexical index (real Tantivy): BM25 over chunk texts, kept in step with the change log like
the vector index, reopened from its folder, rebuilt from SQL when the folder is missing or torn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from indexer.lexical import LexicalIndex
from indexer.lexical_sync import SyncedLexicalIndex, lexical_paths
from indexer.records import CollectionInfo, LexicalAnalyzer
from indexer.sharding import ShardSpec
from indexer.store import Store
from tests.conftest_db import encoded, make_collection

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "omicron",
    "sigma",
]


def live_chunk_ids(store: Store, info: CollectionInfo) -> np.ndarray:
    return np.concatenate([ids for ids, _ in store.iter_vectors(info.id)] or [np.zeros(0, np.int64)])


def text_of(i: int, round_: int) -> str:
    """Seeded texts whose words differ by document and round, so that rankings are informative."""
    rng = np.random.default_rng(1000 * round_ + i)
    return " ".join(rng.choice(WORDS, size=6)) + f" part-{i}-{round_}"


def churn(store: Store, info: CollectionInfo, rng: np.random.Generator, rounds: int, docs: int = 12) -> None:
    """Seeded upserts (some unchanged), edits and deletes."""
    for round_ in range(rounds):
        batch = [encoded(f"d{i}", text_of(i, round_ // (1 + i % 3)), chunks=1 + i % 3) for i in range(docs)]
        store.write_documents(info.id, batch)
        store.delete_documents(info.id, [f"d{int(i)}" for i in rng.choice(docs, size=2, replace=False)])


QUERIES = ["alpha beta", "sigma", "gamma kappa lambda", "part-3-1", "title d4"]


def assert_same(a: SyncedLexicalIndex, b: SyncedLexicalIndex) -> None:
    np.testing.assert_array_equal(a.ids(), b.ids())
    scores_a, ids_a = a.search(QUERIES, 8)
    scores_b, ids_b = b.search(QUERIES, 8)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_allclose(scores_a, scores_b, rtol=1e-5)


# -- the engine ---------------------------------------------------------------------------------


def test_english_analyzer_stems_and_drops_stop_words() -> None:
    index = LexicalIndex.in_memory(LexicalAnalyzer.ENGLISH)
    assert index.terms("The running dogs of ZX-4471-B") == ["run", "dog", "zx", "4471", "b"]
    simple = LexicalIndex.in_memory(LexicalAnalyzer.SIMPLE)
    assert simple.terms("The running dogs") == ["the", "running", "dogs"]


def test_bm25_ranks_the_rarer_term_first_and_replaces_on_add() -> None:
    index = LexicalIndex.in_memory(LexicalAnalyzer.ENGLISH)
    index.add(np.array([1, 2, 3]), ["cats and dogs", "dogs dogs everywhere", "a zebra among dogs"])
    index.commit()
    scores, ids = index.search(["zebra dogs", "unicorn"], 3)
    assert ids[0, 0] == 3 and set(ids[0].tolist()) == {1, 2, 3}
    assert np.all(np.diff(scores[0]) <= 0)
    assert ids[1].tolist() == [-1, -1, -1]  # no term matches: nothing, padded like FAISS
    index.add(np.array([3]), ["only cats now"])  # same id: replaces the old text
    index.remove(np.array([2, 99]))  # 99 was never there
    index.commit()
    assert index.ids().tolist() == [1, 3]
    assert index.search(["zebra"], 2)[1][0].tolist() == [-1, -1]


def test_allowed_ids_filter_without_changing_scores() -> None:
    index = LexicalIndex.in_memory(LexicalAnalyzer.ENGLISH)
    index.add(np.arange(1, 6), [f"common word {'rare' if i == 2 else ''}" for i in range(1, 6)])
    index.commit()
    free_scores, free_ids = index.search(["common rare"], 5)
    scores, ids = index.search(["common rare"], 5, allowed_ids=np.array([2, 4]))
    assert ids[0, :2].tolist() == [2, 4] and ids[0, 2] == -1
    by_id = dict(zip(free_ids[0].tolist(), free_scores[0].tolist(), strict=True))
    np.testing.assert_allclose(scores[0, :2], [by_id[2], by_id[4]], rtol=1e-6)
    assert index.search(["common"], 3, allowed_ids=np.zeros(0, np.int64))[1][0].tolist() == [-1, -1, -1]


def test_a_query_of_stop_words_finds_nothing() -> None:
    index = LexicalIndex.in_memory(LexicalAnalyzer.ENGLISH)
    index.add(np.array([1]), ["the and of"])
    index.commit()
    assert index.search(["the of"], 1)[1].tolist() == [[-1]]


# -- kept in step with SQL ----------------------------------------------------------------------


def test_reopen_plus_replay_equals_rebuild(store: Store, tmp_path: Path) -> None:
    """Both SQL backends: the same store content gives the same ids, ranking and scores."""
    rng = np.random.default_rng(11)
    info = make_collection(store)
    churn(store, info, rng, rounds=3)
    first = SyncedLexicalIndex.open(store, info, tmp_path / "a")
    np.testing.assert_array_equal(first.ids(), live_chunk_ids(store, info))
    first.close()
    churn(store, info, rng, rounds=3)  # changes while it was closed, removals included

    replayed = SyncedLexicalIndex.open(store, info, tmp_path / "a")
    rebuilt = SyncedLexicalIndex.open(store, info, tmp_path / "b")
    assert replayed.sequence == rebuilt.sequence == store.last_sequence(info.id)
    np.testing.assert_array_equal(replayed.ids(), live_chunk_ids(store, info))
    assert_same(replayed, rebuilt)
    assert replayed.search(["part-3-1"], 1)[1][0, 0] >= 0


def test_catch_up_applies_upserts_and_deletes(sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store
    info = make_collection(store)
    store.write_documents(info.id, [encoded("a", "the old zebra"), encoded("b", "quiet cats")])
    synced = SyncedLexicalIndex.open(store, info, tmp_path)
    assert synced.search(["zebra"], 1)[1][0, 0] >= 0
    store.write_documents(info.id, [encoded("a", "a new giraffe")])  # replaces a's chunks
    store.delete_documents(info.id, ["b"])
    assert synced.catch_up() > 0 and synced.catch_up() == 0
    assert synced.search(["zebra"], 1)[1][0, 0] == -1
    assert synced.search(["cats"], 1)[1][0, 0] == -1
    assert synced.search(["giraffe"], 1)[1][0, 0] >= 0
    np.testing.assert_array_equal(synced.ids(), live_chunk_ids(store, info))
    manifest = json.loads(lexical_paths(tmp_path, info.name)[1].read_text())
    assert manifest["sequence"] == store.last_sequence(info.id) == synced.sequence


@pytest.mark.parametrize(
    "damage", ["delete segment files", "garbage meta", "manifest ahead", "other analyser"]
)
def test_a_torn_or_foreign_index_is_rebuilt_from_sql(
    sqlite_store: Store, tmp_path: Path, damage: str
) -> None:
    store = sqlite_store
    info = make_collection(store)
    churn(store, info, np.random.default_rng(3), rounds=2)
    SyncedLexicalIndex.open(store, info, tmp_path).close()
    folder, manifest_path = lexical_paths(tmp_path, info.name)
    if damage == "delete segment files":
        for path in folder.iterdir():
            if path.suffix in {".idx", ".fast", ".term"}:
                path.unlink()
    elif damage == "garbage meta":
        (folder / "meta.json").write_text("{not json")
    elif damage == "manifest ahead":
        manifest = json.loads(manifest_path.read_text())
        manifest_path.write_text(json.dumps({**manifest, "sequence": manifest["sequence"] + 100}))
    else:  # a collection of the same name, created again with another analyser
        store.drop_collection(info.name)
        info = make_collection(store, lexical_analyzer=LexicalAnalyzer.SIMPLE)
        churn(store, info, np.random.default_rng(3), rounds=2)
    reopened = SyncedLexicalIndex.open(store, info, tmp_path)
    np.testing.assert_array_equal(reopened.ids(), live_chunk_ids(store, info))
    assert reopened.sequence == store.last_sequence(info.id)


def test_a_second_writer_on_one_folder_serves_a_private_copy(sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store
    info = make_collection(store)
    churn(store, info, np.random.default_rng(5), rounds=1)
    owner = SyncedLexicalIndex.open(store, info, tmp_path)
    second = SyncedLexicalIndex.open(store, info, tmp_path)  # the folder's lock is held
    assert_same(owner, second)


def test_shards_split_the_chunks_between_them(sqlite_store: Store, tmp_path: Path) -> None:
    store = sqlite_store
    info = make_collection(store)
    churn(store, info, np.random.default_rng(6), rounds=2)
    parts = [
        SyncedLexicalIndex.open(store, info, tmp_path / str(i), keep=ShardSpec(3, i).chunk_filter())
        for i in range(3)
    ]
    held = np.sort(np.concatenate([part.ids() for part in parts]))
    np.testing.assert_array_equal(held, live_chunk_ids(store, info))
    for i, part in enumerate(parts):
        assert ShardSpec(3, i).keeps(part.ids()).all()
