"""Database fixtures, loaded as a pytest plugin (``pytest_plugins = ["tests.conftest_db"]``).

``store`` runs every test that uses it twice: on a SQLite file and on a real PostgreSQL server
(``tests/postgres.py``), started once per session and only if a PostgreSQL case is collected.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.config import StoreConfig
from indexer.records import Chunk, CollectionInfo, CollectionSpec, Document, EncodedDocument
from indexer.spec import complete_spec
from indexer.store import Store
from tests.postgres import PostgresServer, start_postgres

DIMENSION = 8
STORE_TABLES = ("log_readers", "changes", "chunks", "documents", "collections")


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = start_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_database(postgres_server: PostgresServer) -> str:
    """One database for the session: CREATE DATABASE per test cost ~0.5 s on a busy machine."""
    return postgres_server.new_database()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer, postgres_database: str) -> str:
    """The session's database, emptied: every test starts without collections."""
    postgres_server.empty_tables(postgres_database, STORE_TABLES)
    return postgres_database


def store_config(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> StoreConfig:
    if backend == "sqlite":
        return StoreConfig(data_dir=tmp_path / "data", busy_timeout_s=5.0)
    return StoreConfig(data_dir=tmp_path / "data", db_url=request.getfixturevalue("postgres_url"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An open, migrated, empty store on each backend."""
    opened = Store.open(store_config(request, tmp_path, request.param))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(StoreConfig(data_dir=tmp_path / "data", busy_timeout_s=5.0))
    try:
        yield opened
    finally:
        opened.close()


def make_collection(
    store: Store, name: str = "docs", dimension: int = DIMENSION, **spec: Any
) -> CollectionInfo:
    return store.create_collection(
        name,
        complete_spec(CollectionSpec(model="test-model", **spec), {}),  # the store takes complete specs
        dimension=dimension,
        model_revision="rev-1",
        tokenizer_hash="tok-1",
    )


def unit_vectors(rng: np.random.Generator, n: int, dimension: int = DIMENSION) -> np.ndarray:
    """float32 (n, dimension), rows of norm 1."""
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def encoded(
    external_id: str,
    text: str = "alpha beta gamma",
    *,
    chunks: int = 2,
    metadata: Mapping[str, Any] | None = None,
    rng: np.random.Generator | None = None,
    dimension: int = DIMENSION,
    vectors: np.ndarray | None = None,
) -> EncodedDocument:
    """A document of ``chunks`` chunks with seeded random unit vectors."""
    document = Document(
        external_id=external_id, text=text, title=f"title {external_id}", metadata=metadata or {}
    )
    rng = rng if rng is not None else np.random.default_rng(zlib.crc32(f"{external_id}|{text}".encode()))
    return EncodedDocument(
        document=document,
        content_hash=document.content_hash(),
        chunks=tuple(Chunk(ordinal=i, start=i, end=i + 1, text=f"{text} #{i}") for i in range(chunks)),
        vectors=unit_vectors(rng, chunks, dimension) if vectors is None else vectors,
    )
