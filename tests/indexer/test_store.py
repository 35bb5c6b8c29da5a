"""The SQL store, run against SQLite and a real PostgreSQL server (the ``store`` fixture)."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, update

from indexer.config import StoreConfig
from indexer.errors import (
    CollectionExists,
    CollectionNotFound,
    InvalidArgument,
    InvalidCollectionSpec,
    InvalidDocument,
    StoreBusy,
)
from indexer.filter_indexes import managed_by_migrations
from indexer.records import (
    ChangeOp,
    CollectionSpec,
    Condition,
    Document,
    MetadataFilter,
    MetadataUpdate,
    StoredHashes,
)
from indexer.schema import Base, DocumentRow
from indexer.spec import complete_spec
from indexer.store import Store
from tests.conftest_db import DIMENSION, encoded, make_collection, store_config, unit_vectors


def test_collection_round_trip(store: Store) -> None:
    spec = complete_spec(
        CollectionSpec(model="m", layers=(-1, -2), index_spec="HNSW32", vector_dtype="float16"), {}
    )
    info = store.create_collection("news", spec, dimension=16, model_revision="r", tokenizer_hash="t")
    assert store.get_collection("news") == info
    assert info.spec == spec and info.dimension == 16
    assert [c.name for c in store.list_collections()] == ["news"]
    with pytest.raises(CollectionExists):
        store.create_collection("news", spec, dimension=16, model_revision="r", tokenizer_hash="t")
    store.drop_collection("news")
    with pytest.raises(CollectionNotFound):
        store.get_collection("news")
    assert store.list_collections() == []


@pytest.mark.parametrize(
    ("name", "dimension", "dtype", "error"),
    [
        ("../etc", 8, "float32", InvalidArgument),
        ("", 8, "float32", InvalidArgument),
        ("ok", 0, "float32", InvalidCollectionSpec),
        ("ok", 8, "int8", InvalidCollectionSpec),
    ],
)
def test_bad_collections_are_refused(
    store: Store, name: str, dimension: int, dtype: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        make_collection(store, name, dimension=dimension, vector_dtype=dtype)


def test_whitening_blob_round_trip_and_every_fit_is_a_new_version(store: Store) -> None:
    info = make_collection(store)
    assert store.whitening(info.id) is None and store.index_facts(info.id).whitening_version == 0

    assert store.set_whitening(info.id, b"\x00\x01whitening", fitted_on=10) == 1
    assert store.set_whitening(info.id, b"second", fitted_on=40) == 2

    stored = store.whitening(info.id)
    assert stored is not None and (stored.version, stored.fitted_on, stored.blob) == (2, 40, b"second")
    assert store.index_facts(info.id).whitening_version == 2


def test_documents_chunks_and_vectors_round_trip(store: Store) -> None:
    info = make_collection(store)
    doc = encoded("a", "some text", chunks=3, metadata={"lang": "en", "n": 2})
    result = store.write_documents(info.id, [doc])
    assert result.written == ("a",) and result.skipped == () and result.last_sequence == 3

    (stored,) = store.get_documents(info.id, ["a", "missing"])
    assert (stored.text, stored.title, stored.chunk_count) == ("some text", "title a", 3)
    assert dict(stored.metadata) == {"lang": "en", "n": 2}
    assert stored.content_hash == doc.content_hash
    assert store.document_hashes(info.id, ["a", "b"]) == {
        "a": StoredHashes(doc.content_hash, doc.document.embedding_hash())
    }

    ids, vectors = store.vectors_for(info.id, [c.chunk_id for c in store.changes_since(info.id, 0)])
    assert ids.dtype == np.int64 and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, doc.vectors)  # float32 is stored bit for bit
    chunks = store.chunks_by_id(ids)
    assert [chunks[int(i)].text for i in ids] == [c.text for c in doc.chunks]
    assert chunks[int(ids[0])].external_id == "a"
    assert store.stats(info.id).documents == 1 and store.stats(info.id).chunks == 3


def test_float16_collections_store_half_precision(store: Store) -> None:
    info = make_collection(store, vector_dtype="float16")
    doc = encoded("a", chunks=4)
    store.write_documents(info.id, [doc])
    _, vectors = next(store.iter_vectors(info.id))
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, doc.vectors, atol=1e-3)  # float16: ~3 decimal digits


def test_upsert_replaces_chunks_and_logs_remove_then_add(store: Store) -> None:
    info = make_collection(store)
    store.write_documents(info.id, [encoded("a", "v1", chunks=2)])
    old_ids = [c.chunk_id for c in store.changes_since(info.id, 0)]

    result = store.write_documents(info.id, [encoded("a", "v2", chunks=3)])

    changes = store.changes_since(info.id, 2)
    assert [c.op for c in changes] == [ChangeOp.REMOVE] * 2 + [ChangeOp.ADD] * 3
    assert [c.chunk_id for c in changes[:2]] == old_ids
    new_ids = [c.chunk_id for c in changes[2:]]
    assert min(new_ids) > max(old_ids)  # FAISS ids are never reused
    assert result.last_sequence == 7 == store.last_sequence(info.id)
    live, _ = store.vectors_for(info.id, old_ids + new_ids)
    assert live.tolist() == new_ids
    assert store.get_documents(info.id, ["a"])[0].text == "v2"


def test_unchanged_documents_are_skipped(store: Store) -> None:
    info = make_collection(store)
    store.write_documents(info.id, [encoded("a"), encoded("b")])
    result = store.write_documents(info.id, [encoded("a"), encoded("b", "changed")])
    assert result.skipped == ("a",) and result.written == ("b",)
    assert [c.op for c in store.changes_since(info.id, 4)] == [ChangeOp.REMOVE] * 2 + [ChangeOp.ADD] * 2


def _metadata_update(document: Document, metadata: dict[str, object], *kept: str) -> MetadataUpdate:
    changed = dataclasses.replace(document, metadata=metadata)
    return MetadataUpdate(changed, changed.content_hash(), changed.embedding_hash(), kept)


def test_a_metadata_update_replaces_the_metadata_and_keeps_chunks_vectors_and_the_log(store: Store) -> None:
    info = make_collection(store)
    doc = encoded("a", chunks=3, metadata={"room": "hall"})
    store.write_documents(info.id, [doc, encoded("b")])
    head = store.last_sequence(info.id)
    ids_before, vectors_before = next(store.iter_vectors(info.id))
    attic = MetadataFilter((Condition(field="room", equals="attic"),))
    assert store.chunk_ids_matching(info.id, attic).size == 0

    update = _metadata_update(doc.document, {"room": "attic"})
    result = store.write_documents(info.id, [], [update])

    assert (result.metadata_updated, result.written, result.stale) == (("a",), (), ())
    assert result.last_sequence == head == store.last_sequence(info.id)  # nothing for an index to replay
    assert store.changes_since(info.id, head) == []
    ids_after, vectors_after = next(store.iter_vectors(info.id))
    assert ids_after.tolist() == ids_before.tolist()
    assert vectors_after.tobytes() == vectors_before.tobytes()
    (stored,) = store.get_documents(info.id, ["a"])
    assert dict(stored.metadata) == {"room": "attic"} and stored.content_hash == update.content_hash
    chunks = store.chunks_by_id(store.chunk_ids_matching(info.id, attic))
    assert {c.external_id for c in chunks.values()} == {"a"} and len(chunks) == 3

    again = store.write_documents(info.id, [], [update])
    assert (again.metadata_updated, again.skipped) == ((), ("a",))  # already stored: unchanged


def test_a_metadata_update_keeps_the_stored_fields_it_names(store: Store) -> None:
    info = make_collection(store)
    doc = encoded("a", metadata={"room": "hall", "label": "pos", "label_score": 0.9})
    store.write_documents(info.id, [doc])

    store.write_documents(
        info.id, [], [_metadata_update(doc.document, {"room": "attic", "label": "x"}, "label", "label_score")]
    )

    (stored,) = store.get_documents(info.id, ["a"])
    assert dict(stored.metadata) == {"room": "attic", "label": "pos", "label_score": 0.9}


def test_a_metadata_update_of_a_document_whose_text_changed_meanwhile_is_stale(store: Store) -> None:
    info = make_collection(store)
    doc = encoded("a", "first text", metadata={"room": "hall"})
    store.write_documents(info.id, [doc])
    update = _metadata_update(doc.document, {"room": "attic"})  # prepared against "first text"
    store.write_documents(info.id, [encoded("a", "second text", metadata={"room": "hall"})])
    head = store.last_sequence(info.id)

    gone = Document("gone", "never stored")
    result = store.write_documents(
        info.id, [], [update, MetadataUpdate(gone, gone.content_hash(), gone.embedding_hash())]
    )

    assert result.stale == ("a", "gone") and result.metadata_updated == ()
    (stored,) = store.get_documents(info.id, ["a"])
    assert (stored.text, dict(stored.metadata)) == ("second text", {"room": "hall"})
    assert store.last_sequence(info.id) == head


def test_documents_written_before_embedding_hashes_were_kept_are_never_metadata_updated(store: Store) -> None:
    """Revision 0006 leaves old rows without a hash: a metadata update of one is stale."""
    info = make_collection(store)
    doc = encoded("a", metadata={"room": "hall"})
    store.write_documents(info.id, [doc])
    with store._session(write=True) as session:  # as revision 0006 left a row written before it
        session.execute(update(DocumentRow).values(embedding_hash=None))
    assert store.document_hashes(info.id, ["a"])["a"].embedding is None

    result = store.write_documents(info.id, [], [_metadata_update(doc.document, {"room": "attic"})])

    assert result.stale == ("a",)


def test_delete_logs_a_remove_per_chunk(store: Store) -> None:
    info = make_collection(store)
    store.write_documents(info.id, [encoded("a", chunks=2), encoded("b", chunks=1)])
    result = store.delete_documents(info.id, ["a", "nope"])
    assert result.deleted == ("a",) and result.missing == ("nope",) and result.last_sequence == 5
    removed = store.changes_since(info.id, 3)
    assert [c.op for c in removed] == [ChangeOp.REMOVE] * 2
    assert store.get_documents(info.id, ["a"]) == []
    assert store.stats(info.id).chunks == 1
    # a document written again after deletion gets new chunk ids
    store.write_documents(info.id, [encoded("a", chunks=2)])
    assert min(c.chunk_id for c in store.changes_since(info.id, 5)) > max(c.chunk_id for c in removed)


def test_sequences_are_gap_free_and_paged(store: Store) -> None:
    info = make_collection(store)
    other = make_collection(store, "other")
    for round_ in range(4):
        store.write_documents(info.id, [encoded(f"d{i}", f"r{round_}", chunks=1 + i % 3) for i in range(5)])
        store.write_documents(other.id, [encoded("x", f"r{round_}")])
    store.delete_documents(info.id, ["d0", "d3"])
    changes = store.changes_since(info.id, 0)
    assert [c.sequence for c in changes] == list(range(1, len(changes) + 1))
    assert store.last_sequence(info.id) == len(changes)
    assert store.last_sequence(other.id) == 2 + 3 * 4  # each collection counts on its own
    paged = store.changes_since(info.id, 10, limit=7)
    assert [c.sequence for c in paged] == list(range(11, 18))


def test_concurrent_writers_keep_the_log_gap_free(store: Store) -> None:
    info = make_collection(store)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for round_ in range(4):
                store.write_documents(info.id, [encoded(f"w{worker}", f"round {round_}", chunks=2)])
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    changes = store.changes_since(info.id, 0)
    assert [c.sequence for c in changes] == list(range(1, 4 * (2 + 3 * 4) + 1))
    assert store.stats(info.id).chunks == 8


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.zeros((2, DIMENSION + 1), np.float32), "shape"),
        (np.zeros((3, DIMENSION), np.float32), "shape"),
        (np.zeros((2, DIMENSION), np.float64), "float32"),
        (np.zeros(DIMENSION * 2, np.float32), "2-D"),
        (np.full((2, DIMENSION), np.nan, np.float32), "NaN"),
    ],
)
def test_bad_vectors_name_the_record_and_field(store: Store, vectors: np.ndarray, message: str) -> None:
    info = make_collection(store)
    good = encoded("good")
    with pytest.raises(InvalidDocument, match=message) as raised:
        store.write_documents(info.id, [good, encoded("bad-doc", chunks=2, vectors=vectors)])
    assert raised.value.record == "bad-doc" and raised.value.field == "vectors"
    assert store.last_sequence(info.id) == 0 and store.stats(info.id).documents == 0  # all or nothing


def test_values_beyond_float16_are_refused_not_stored_as_inf(store: Store) -> None:
    info = make_collection(store, vector_dtype="float16")
    with pytest.raises(InvalidDocument, match="overflow float16") as raised:
        store.write_documents(
            info.id, [encoded("big", chunks=1, vectors=np.full((1, DIMENSION), 1e6, np.float32))]
        )
    assert raised.value.field == "vectors"


def test_duplicate_ids_in_one_write_are_refused(store: Store) -> None:
    info = make_collection(store)
    with pytest.raises(InvalidDocument) as raised:
        store.write_documents(info.id, [encoded("a"), encoded("a", "again")])
    assert raised.value.field == "external_id"


def test_unknown_collection_id(store: Store) -> None:
    with pytest.raises(CollectionNotFound):
        store.write_documents(999, [encoded("a")])
    with pytest.raises(CollectionNotFound):
        store.stats(999)


def test_iter_vectors_pages_through_every_live_chunk(store: Store) -> None:
    info = make_collection(store)
    rng = np.random.default_rng(7)
    docs = [encoded(f"d{i}", chunks=3, rng=rng) for i in range(7)]
    store.write_documents(info.id, docs)
    store.delete_documents(info.id, ["d2"])
    pages = list(store.iter_vectors(info.id, batch=4))
    assert [len(ids) for ids, _ in pages] == [4, 4, 4, 4, 2]
    ids = np.concatenate([p[0] for p in pages])
    assert np.all(np.diff(ids) > 0)
    expected = np.concatenate([d.vectors for i, d in enumerate(docs) if i != 2])
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pages]), expected)


def test_drop_collection_removes_everything(store: Store) -> None:
    info = make_collection(store)
    store.write_documents(info.id, [encoded("a")])
    store.drop_collection("docs")
    again = make_collection(store)
    assert again.id != info.id
    assert store.stats(again.id).documents == 0 and store.changes_since(info.id, 0) == []
    assert store.chunks_by_id(list(range(1, 10))) == {}


def test_reopening_keeps_data_and_settings(tmp_path: Path) -> None:
    config = StoreConfig(data_dir=tmp_path / "data")
    first = Store.open(config)
    info = make_collection(first)
    first.write_documents(info.id, [encoded("a")])
    first.close()
    second = Store.open(config)  # upgrade head again: a no-op
    assert second.stats(info.id).chunks == 2
    second.close()
    connection = sqlite3.connect(tmp_path / "data" / "albatross.sqlite3")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_sqlite_lock_past_the_busy_timeout_is_store_busy(tmp_path: Path) -> None:
    store = Store.open(StoreConfig(data_dir=tmp_path / "data", busy_timeout_s=0.05))
    info = make_collection(store)
    path = tmp_path / "data" / "albatross.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the writer lock
    try:
        with pytest.raises(StoreBusy, match="another process is writing") as raised:
            store.write_documents(info.id, [encoded("a")])
        assert str(path) in str(raised.value)
        # readers are not blocked by a writer in WAL mode
        assert store.stats(info.id).documents == 0
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.write_documents(info.id, [encoded("a")])
    store.close()


@pytest.mark.postgres
def test_postgresql_row_lock_past_the_busy_timeout_is_store_busy(tmp_path: Path, postgres_url: str) -> None:
    """A writer stuck in another transaction holds the collection's row lock: the next writer
    gives up after busy_timeout_s with StoreBusy instead of waiting forever, and loses nothing."""
    import psycopg

    store = Store.open(StoreConfig(data_dir=tmp_path / "data", db_url=postgres_url, busy_timeout_s=0.2))
    info = make_collection(store)
    other = psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    try:
        other.execute("SELECT id FROM collections WHERE id = %s FOR UPDATE", (info.id,))
        with pytest.raises(StoreBusy, match="row lock stayed held"):
            store.write_documents(info.id, [encoded("a")])
        assert store.stats(info.id).documents == 0  # readers are not blocked
    finally:
        other.rollback()
        other.close()
    assert store.write_documents(info.id, [encoded("a")]).written == ("a",)
    store.close()


def test_vectors_for_skips_chunks_of_other_collections(store: Store) -> None:
    first = make_collection(store, "first")
    second = make_collection(store, "second")
    store.write_documents(first.id, [encoded("a", vectors=unit_vectors(np.random.default_rng(1), 2))])
    ids = [c.chunk_id for c in store.changes_since(first.id, 0)]
    assert store.vectors_for(second.id, ids)[0].size == 0
    assert store.vectors_for(second.id, ids)[1].shape == (0, DIMENSION)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_the_migration_builds_exactly_the_models(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str
) -> None:
    config = store_config(request, tmp_path, backend)
    Store.open(config).close()
    engine = create_engine(config.url)
    with engine.connect() as connection:
        # Filter indexes are made at run time (indexer.filter_indexes), earlier tests left some.
        opts = {"compare_type": True, "include_name": managed_by_migrations}
        context = MigrationContext.configure(connection, opts=opts)
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()
