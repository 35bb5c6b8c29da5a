"""The server's catalog remembers collections for its poll interval and never blocks its loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from indexer.config import AppConfig, StoreConfig
from indexer.errors import CollectionNotFound
from indexer.records import CollectionSpec
from indexer.workspace import Workspace


@pytest.fixture
def two_processes(tiny_albert_dir: Path, tmp_path: Path):
    """A server's workspace (collections remembered 60 s) and another process's (none), one store."""
    config = AppConfig(store=StoreConfig(data_dir=tmp_path), default_model=tiny_albert_dir)
    server, other = Workspace.open(config, collection_ttl_s=60.0), Workspace.open(config)
    yield server, other
    server.close()
    other.close()


def spec(**fields) -> CollectionSpec:
    return CollectionSpec(model="", max_length=64, window=32, overlap=8, **fields)


def test_a_collection_dropped_elsewhere_is_remembered_only_by_the_caching_catalog(two_processes) -> None:
    server, other = two_processes
    other.catalog.create("notes", spec())
    assert server.catalog.cached("notes") is None  # never looked up yet
    info = server.catalog.get("notes")
    assert server.catalog.cached("notes") == info

    other.catalog.drop("notes")
    assert server.catalog.get("notes") == info  # within its TTL, as its index would be
    with pytest.raises(CollectionNotFound):
        other.catalog.get("notes")


def test_a_drop_through_the_caching_catalog_is_seen_at_once(two_processes) -> None:
    server, _ = two_processes
    first = server.catalog.create("notes", spec())
    assert server.catalog.get("notes") == first
    server.catalog.drop("notes")
    assert server.catalog.cached("notes") is None
    with pytest.raises(CollectionNotFound):
        server.catalog.get("notes")
    second = server.catalog.create("notes", spec())
    assert server.catalog.get("notes").id == second.id != first.id


def test_without_a_ttl_nothing_is_remembered(two_processes) -> None:
    _, other = two_processes
    other.catalog.create("notes", spec())
    other.catalog.get("notes")
    assert other.catalog.cached("notes") is None


def test_a_ready_encoder_is_offered_only_when_nothing_would_block(tiny_albert_dir: Path, tmp_path: Path) -> None:
    config = AppConfig(store=StoreConfig(data_dir=tmp_path), default_model=tiny_albert_dir)
    workspace = Workspace.open(config)
    try:
        plain = workspace.catalog.create("plain", spec())
        whitened = workspace.catalog.create("whitened", spec(whitening=True))
        fresh = Workspace.open(config)  # a process whose encoder is not loaded yet
        try:
            assert fresh.catalog.ready_encoder(plain) is None
            loaded = fresh.catalog.encoder_for(plain)
            ready = fresh.catalog.ready_encoder(plain)
            assert ready is not None and ready.encoder is loaded.encoder
            # A whitening collection's encoder is ready alike: its index, not the encoder, whitens.
            ready = fresh.catalog.ready_encoder(whitened)
            assert ready is not None and ready.encoder is loaded.encoder
        finally:
            fresh.close()
    finally:
        workspace.close()
