"""Whitening refitted as a collection grows: stored vectors stay unwhitened, the index whitens.

A tiny random ALBERT embeds real text; the policy is shrunk (a map after 8 vectors, a refit at 2x)
so a few dozen documents walk through every stage: none fitted, first fit, refit, and a searcher
that follows each version by rebuilding in the new space.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from albatross.cli import main
from albatross.exit_codes import EXIT_INVALID, EXIT_OK
from indexer.config import AppConfig, IngestConfig, StoreConfig, WhiteningPolicy
from indexer.errors import InvalidArgument
from indexer.records import CollectionSpec, Document
from indexer.snapshots import latest
from indexer.sync import SyncedIndex, index_space
from indexer.whitening import refit_due
from indexer.workspace import Workspace
from tests.fixtures.tiny_models import sample_lines

POLICY = WhiteningPolicy(min_sample=8, growth=2.0, max_sample=1_000)
COLLECTION = "whitened"


@pytest.fixture
def workspace(tiny_albert_dir: Path, tmp_path: Path) -> Iterator[Workspace]:
    config = AppConfig(
        store=StoreConfig(data_dir=tmp_path / "data"),
        ingest=IngestConfig(progress=False, whitening=POLICY),
        default_model=tiny_albert_dir,
    )
    opened = Workspace.open(config)
    opened.catalog.create(COLLECTION, CollectionSpec(model="", whitening=True))
    try:
        yield opened
    finally:
        opened.close()


def _documents(start: int, count: int) -> list[Document]:
    lines = sample_lines()
    return [Document(f"doc-{i}", lines[i % len(lines)] + f" ({i})") for i in range(start, start + count)]


def _version(workspace: Workspace) -> int:
    info = workspace.catalog.get(COLLECTION)
    return workspace.store.index_facts(info.id).whitening_version


def _exact_top(workspace: Workspace, queries: np.ndarray, k: int) -> np.ndarray:
    """Brute force over the stored vectors, put in the collection's current index space."""
    info = workspace.catalog.get(COLLECTION)
    space = index_space(workspace.store, info)
    ids, vectors = zip(*workspace.store.iter_vectors(info.id), strict=True)
    ids, vectors = np.concatenate(ids), space.apply(np.concatenate(vectors))
    scores = space.apply(queries) @ vectors.T
    return ids[np.argsort(-scores, axis=1, kind="stable")[:, :k]]


def test_the_policy_waits_for_a_sample_then_refits_as_the_collection_grows() -> None:
    due = lambda fitted_on, vectors: refit_due(fitted_on, vectors, min_sample=8, growth=2.0, max_sample=100)  # noqa: E731

    assert not due(None, 7) and due(None, 8)
    assert not due(8, 15) and due(8, 16)
    assert not due(100, 10_000)  # fitted on the full sample: kept


def test_a_first_upsert_of_one_document_is_stored_and_searchable_without_a_map(workspace: Workspace) -> None:
    (outcome,) = workspace.ingestor.upsert(COLLECTION, _documents(0, 1))
    info = workspace.catalog.get(COLLECTION)
    index = SyncedIndex.open(workspace.store, info, workspace.config.store.snapshot_dir)
    query = workspace.catalog.encoder_for(info).encode([_documents(0, 1)[0].text])

    assert outcome.status == "written"
    assert _version(workspace) == 0 and workspace.store.whitening(info.id) is None
    assert index.search(query, 1)[1][0, 0] == next(iter(workspace.store.iter_vectors(info.id)))[0][0]


def test_the_map_is_fitted_at_the_minimum_sample_and_refitted_as_the_collection_grows(
    workspace: Workspace,
) -> None:
    versions = []
    for start in range(0, 40, 3):  # three documents at a time never fix the map for good
        workspace.ingestor.upsert(COLLECTION, _documents(start, 3))
        versions.append(_version(workspace))
    info = workspace.catalog.get(COLLECTION)
    stored = workspace.store.whitening(info.id)

    assert versions[0] == 0  # 3 vectors: too few for a map
    assert versions[-1] >= 2 and versions == sorted(versions)
    assert stored is not None and stored.fitted_on >= POLICY.min_sample
    # Stored vectors are the encoder's own (unit norm, unwhitened): a refit rewrote nothing.
    vectors = np.concatenate([v for _, v in workspace.store.iter_vectors(info.id)])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_searcher_follows_a_refit_by_rebuilding_in_the_new_space(workspace: Workspace) -> None:
    workspace.ingestor.upsert(COLLECTION, _documents(0, 12))
    info = workspace.catalog.get(COLLECTION)
    folder = workspace.config.store.snapshot_dir
    index = SyncedIndex.open(workspace.store, info, folder)
    assert index.snapshot() is not None
    before = _version(workspace)
    queries = workspace.catalog.encoder_for(info).encode([line for line in sample_lines()[40:46]])

    assert index.whitening_version == before
    after = workspace.catalog.refit_whitening(info, POLICY, force=True)
    assert index.whitening_version == before  # until it has rebuilt in the new map
    index.catch_up()

    assert after == before + 1 and index.whitening_version == after
    np.testing.assert_array_equal(index.search(queries, 5)[1], _exact_top(workspace, queries, 5))
    # The snapshot of the old space is not loaded in the new one: a reopen rebuilds.
    assert latest(folder, info, before) is not None and latest(folder, info, after) is None
    reopened = SyncedIndex.open(workspace.store, info, folder)
    np.testing.assert_array_equal(reopened.search(queries, 5)[1], _exact_top(workspace, queries, 5))


def test_refit_whitening_from_the_command_line_needs_the_minimum_sample(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = ["--data-dir", str(workspace.config.store.data_dir)]
    workspace.ingestor.upsert(COLLECTION, _documents(0, 2))
    info = workspace.catalog.get(COLLECTION)

    with pytest.raises(InvalidArgument, match="at least 8"):
        workspace.catalog.refit_whitening(info, POLICY, force=True)
    workspace.ingestor.upsert(COLLECTION, _documents(2, 10))
    assert workspace.catalog.refit_whitening(info, POLICY, force=True) is not None
    # The command line runs with the default policy: 12 vectors are below its 1,000.
    assert main(["collections", "refit-whitening", COLLECTION, *data_dir]) == EXIT_INVALID
    assert main(["collections", "refit-whitening", "no-such", *data_dir]) != EXIT_OK
    assert "1000" in capsys.readouterr().err.replace(",", "")
