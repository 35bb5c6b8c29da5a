"""Filter indexes: made on first use, used by the filtered query's plan on SQLite and PostgreSQL,
harmless when they cannot be made, and safe when processes race to make them."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from indexer import filter_indexes
from indexer.config import StoreConfig
from indexer.filter_indexes import INDEX_PREFIX, index_statement
from indexer.filters import indexed_expressions
from indexer.records import Condition, MetadataFilter, Range
from indexer.schema import DocumentRow
from indexer.store import Store, chunk_ids_query
from tests.conftest_db import encoded, make_collection, store_config

LANG = MetadataFilter((Condition("lang", equals="en"),))
YEAR = MetadataFilter((Condition("year", range=Range(gte=2000, lt=2010)),))
KIND = MetadataFilter((Condition("kind", one_of=("a", "b")),))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def config(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    """A store's configuration; on PostgreSQL without the filter indexes earlier tests made in the
    session's database (emptying its tables keeps them)."""
    made = store_config(request, tmp_path, request.param)
    if request.param == "postgresql":
        engine = create_engine(made.url)
        with engine.begin() as connection:
            for name in _filter_indexes(engine):
                connection.exec_driver_sql(f"DROP INDEX {name}")
        engine.dispose()
    return made


@pytest.fixture
def filled(config: StoreConfig) -> Iterator[tuple[Store, int, Engine]]:
    """A store with 200 documents, and a second engine of our own on the same database."""
    store = Store.open(config)
    info = make_collection(store)
    docs = [
        encoded(
            f"d{i}",
            chunks=1,
            metadata={
                "lang": "en" if i % 10 == 0 else "fr",
                "year": 1950 + i % 100,
                "kind": "abcdefghijklmnopqrst"[i % 20],
            },
        )
        for i in range(200)
    ]
    store.write_documents(info.id, docs)
    # A fresh connection per plan: SQLite's EXPLAIN does not re-read a schema changed by another
    # connection (a query does, so the store's own pooled connections use a new index at once).
    engine = create_engine(config.url, poolclass=NullPool)
    try:
        yield store, info.id, engine
    finally:
        engine.dispose()
        store.close()


def _plan(engine: Engine, collection_id: int, metadata_filter: MetadataFilter) -> str:
    sql = str(
        chunk_ids_query(collection_id, metadata_filter).compile(
            dialect=engine.dialect, compile_kwargs={"literal_binds": True}
        )
    )
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}").all()
            return "\n".join(str(row[-1]) for row in rows)
        # A 200-row table is cheaper to scan; the question is whether the index can serve at all.
        connection.exec_driver_sql("SET enable_seqscan = off")
        return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {sql}").all())


def _filter_indexes(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'index'"
        else:
            query = "SELECT indexname FROM pg_indexes WHERE tablename = 'documents'"
        return {name for (name,) in connection.exec_driver_sql(query) if name.startswith(INDEX_PREFIX)}


@pytest.mark.parametrize("metadata_filter", [LANG, YEAR, KIND], ids=["equals", "range", "one_of"])
def test_the_filtered_query_uses_the_index_made_on_first_use(
    filled: tuple[Store, int, Engine], metadata_filter: MetadataFilter
) -> None:
    store, collection_id, engine = filled
    assert INDEX_PREFIX not in _plan(engine, collection_id, metadata_filter)
    ids = store.chunk_ids_matching(collection_id, metadata_filter)
    assert len(ids) == 20  # every filter above lets one document in ten through
    assert INDEX_PREFIX in _plan(engine, collection_id, metadata_filter)


def test_one_index_per_field_and_kind_made_once(filled: tuple[Store, int, Engine]) -> None:
    store, collection_id, engine = filled
    for _ in range(3):
        store.chunk_ids_matching(collection_id, LANG)
    assert len(_filter_indexes(engine)) == 1
    store.chunk_ids_matching(collection_id, MetadataFilter((Condition("lang", one_of=("en", "fr")),)))
    assert len(_filter_indexes(engine)) == 1  # the same expression
    store.chunk_ids_matching(collection_id, YEAR)
    assert len(_filter_indexes(engine)) == 2


def test_an_index_that_cannot_be_made_leaves_the_search_working(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another writer holds SQLite's lock past the busy timeout: the query runs without the index,
    and the index is made on a later query once the lock is gone."""
    store = Store.open(StoreConfig(data_dir=tmp_path / "data", busy_timeout_s=0.2))
    try:
        info = make_collection(store)
        store.write_documents(
            info.id, [encoded(f"d{i}", chunks=1, metadata={"lang": "en"}) for i in range(5)]
        )
        writer = sqlite3.connect(tmp_path / "data" / "albatross.sqlite3", isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        with caplog.at_level(logging.WARNING, logger=filter_indexes.__name__):
            assert len(store.chunk_ids_matching(info.id, LANG)) == 5
        writer.execute("ROLLBACK")
        writer.close()
        assert "without index" in caplog.text and "locked" in caplog.text
        engine = create_engine(StoreConfig(data_dir=tmp_path / "data").url)
        assert _filter_indexes(engine) == set()
        monkeypatch.setattr(filter_indexes, "RETRY_AFTER_S", 0.0)
        assert len(store.chunk_ids_matching(info.id, LANG)) == 5
        assert len(_filter_indexes(engine)) == 1
        engine.dispose()
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("config", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_processes_racing_to_make_an_index_and_a_writer_all_succeed(config: StoreConfig) -> None:
    """Four stores (as four searcher processes would) ask for the same new indexes at once while
    a fifth writes documents: no one fails, each index exists once, answers are right."""
    stores = [Store.open(config) for _ in range(5)]
    try:
        info = make_collection(stores[0])
        stores[0].write_documents(info.id, [encoded(f"d{i}", chunks=1, metadata={"n": i}) for i in range(50)])
        filters = [MetadataFilter((Condition(f"f{j}", equals="x"),)) for j in range(5)]
        start = threading.Barrier(5)
        errors: list[BaseException] = []

        def search(store: Store) -> None:
            start.wait()
            try:
                for metadata_filter in filters:
                    assert len(store.chunk_ids_matching(info.id, metadata_filter)) == 0
                assert (
                    len(store.chunk_ids_matching(info.id, MetadataFilter((Condition("n", equals=7),)))) == 1
                )
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        def write() -> None:
            start.wait()
            try:
                for i in range(50, 80):
                    stores[4].write_documents(info.id, [encoded(f"d{i}", chunks=1, metadata={"n": i})])
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=search, args=(s,)) for s in stores[:4]]
        threads.append(threading.Thread(target=write))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        engine = create_engine(config.url)
        assert len(_filter_indexes(engine)) == 6
        engine.dispose()
    finally:
        for store in stores:
            store.close()


def _validity(engine: Engine, name: str) -> bool | None:
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%(name)s)", {"name": name}
        ).scalar_one_or_none()


def _lang_index(engine: Engine) -> tuple[str, str]:
    (expression,) = indexed_expressions(LANG, DocumentRow.meta)
    return index_statement(expression, DocumentRow.__tablename__, engine)


def _waiting_builds(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'CREATE INDEX%%'"
        ).scalar_one()


@pytest.mark.parametrize("config", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_postgresql_build_lets_writes_to_documents_through(config: StoreConfig) -> None:
    """The build waits for a transaction already writing to ``documents``; meanwhile another write
    commits at once. A plain CREATE INDEX would queue its SHARE lock ahead of that write, which
    would then wait past the lock timeout and fail with StoreBusy."""
    store = Store.open(replace(config, busy_timeout_s=5.0))
    engine = create_engine(config.url, poolclass=NullPool)
    writing = engine.connect()
    try:
        info = make_collection(store)
        store.write_documents(
            info.id, [encoded(f"d{i}", chunks=1, metadata={"lang": "en"}) for i in range(5)]
        )
        writing.exec_driver_sql("LOCK TABLE documents IN ROW EXCLUSIVE MODE")  # as an open write does
        counted: list[int] = []
        search = threading.Thread(target=lambda: counted.append(len(store.chunk_ids_matching(info.id, LANG))))
        search.start()
        deadline = time.monotonic() + 10
        while _waiting_builds(engine) == 0:
            assert time.monotonic() < deadline, "the index build never started waiting"
            time.sleep(0.05)
        started = time.monotonic()
        store.write_documents(info.id, [encoded("late", chunks=1, metadata={"lang": "en"})])
        assert time.monotonic() - started < 2.0
        writing.commit()
        search.join()
        assert counted == [6]  # the query itself runs after the build, "late" committed by then
        assert INDEX_PREFIX in _plan(engine, info.id, LANG)
    finally:
        writing.close()
        engine.dispose()
        store.close()


@pytest.mark.parametrize("config", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_an_invalid_index_left_by_an_interrupted_build_is_built_again(
    filled: tuple[Store, int, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    """A concurrent build that failed part-way leaves an INVALID index under the name: IF NOT
    EXISTS alone would keep it, and the planner never uses it."""
    store, collection_id, engine = filled
    name, statement = _lang_index(engine)
    assert statement.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS")
    # A unique build over duplicate values fails after the catalog row exists, as a killed one would.
    with (
        engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection,
        pytest.raises(IntegrityError),
    ):
        connection.exec_driver_sql(statement.replace("CREATE INDEX", "CREATE UNIQUE INDEX"))
    assert _validity(engine, name) is False
    with caplog.at_level(logging.WARNING, logger=filter_indexes.__name__):
        assert len(store.chunk_ids_matching(collection_id, LANG)) == 20
    assert f"{name} was INVALID" in caplog.text
    assert _validity(engine, name) is True
    assert INDEX_PREFIX in _plan(engine, collection_id, LANG)
