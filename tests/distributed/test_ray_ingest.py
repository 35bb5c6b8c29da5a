"""Distributed ingestion on a local Ray instance (2 CPUs) into a real PostgreSQL server: the same
documents and vectors as the single-process path, rejections reported alike, and a job stopped
half-way and run again ends with every document exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from indexer.config import AppConfig, IngestConfig, StoreConfig
from indexer.distributed import RayIngestOptions, ingest_with_ray, read_part, split_inputs
from indexer.errors import InvalidArgument
from indexer.ingest import IngestSummary
from indexer.readers import Rejection, read_path
from indexer.records import ChangeOp
from indexer.workspace import Workspace
from tests.distributed.corpus import MULTI_CHUNK_SPEC, documents, write_jsonl
from tests.postgres import PostgresServer

ray = pytest.importorskip("ray", reason='the Ray engine is optional: pip install "albatross[ray]"')

DOCUMENTS = 60
BAD_LINES = '{"_id": "no-text", "title": "missing"}\nthis is not json\n{"_id": "", "text": "an empty id"}\n'


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def workspace(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory, tiny_albert_dir: Path
) -> Iterator[Workspace]:
    config = AppConfig(
        store=StoreConfig(data_dir=tmp_path_factory.mktemp("ray"), db_url=postgres_server.new_database()),
        # Small transactions: the corpus spans several actor batches.
        ingest=IngestConfig(docs_per_transaction=16, progress=False),
        default_model=tiny_albert_dir,
    )
    opened = Workspace.open(config)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two JSONL files (read in parallel) of DOCUMENTS documents in all, one with three bad lines."""
    folder = tmp_path_factory.mktemp("inputs")
    docs = documents(DOCUMENTS)
    first = write_jsonl(folder / "part-0.jsonl", docs[: DOCUMENTS // 2])
    second = write_jsonl(folder / "part-1.jsonl", docs[DOCUMENTS // 2 :])
    with second.open("a", encoding="utf-8") as out:
        out.write(BAD_LINES)
    return [first, second]


def chunk_vectors(workspace: Workspace, collection: str) -> dict[tuple[str, int, int], np.ndarray]:
    """(document id, chunk start, chunk end) -> vector, for every stored chunk of ``collection``."""
    info = workspace.catalog.get(collection)
    out = {}
    for ids, vectors in workspace.store.iter_vectors(info.id):
        chunks = workspace.store.chunks_by_id(ids)
        for chunk_id, vector in zip(ids.tolist(), vectors, strict=True):
            chunk = chunks[chunk_id]
            out[(chunk.external_id, chunk.start, chunk.end)] = vector
    return out


@dataclass
class Runs:
    """The single-process path, then the Ray job stopped half-way (only the first file) and run
    again on everything: the second run must finish the job as if it had never stopped."""

    rejected_by_one_process: list[str]
    first: IngestSummary
    again: IngestSummary
    reported: list[Rejection]


@pytest.fixture(scope="module")
def runs(local_ray: None, workspace: Workspace, inputs: list[Path]) -> Runs:
    workspace.catalog.create("one-process", MULTI_CHUNK_SPEC)
    rejected = []
    for path in inputs:
        rejected += [
            r.record for r in workspace.ingestor.ingest("one-process", read_path(str(path))).rejections
        ]
    workspace.catalog.create("on-ray", MULTI_CHUNK_SPEC)
    paths = [str(p) for p in inputs]
    reported: list[Rejection] = []
    first = ingest_with_ray(workspace.config, "on-ray", paths[:1], RayIngestOptions(workers=2))
    again = ingest_with_ray(
        workspace.config, "on-ray", paths, RayIngestOptions(workers=2), on_rejection=reported.append
    )
    return Runs(rejected, first, again, reported)


def test_ray_writes_the_same_documents_and_vectors_as_one_process(workspace: Workspace, runs: Runs) -> None:
    expected, got = chunk_vectors(workspace, "one-process"), chunk_vectors(workspace, "on-ray")

    assert sorted(got) == sorted(expected)
    for key, vector in expected.items():
        np.testing.assert_allclose(got[key], vector, atol=1e-5)
    ids = [d.external_id for d in documents(DOCUMENTS)]
    one, two = (
        workspace.store.get_documents(workspace.catalog.get(c).id, ids) for c in ("one-process", "on-ray")
    )
    assert [(d.external_id, d.content_hash, d.chunk_count) for d in two] == [
        (d.external_id, d.content_hash, d.chunk_count) for d in one
    ]


def test_rejections_are_reported_as_the_single_process_path_reports_them(runs: Runs) -> None:
    assert sorted(r.record for r in runs.reported) == sorted(runs.rejected_by_one_process)
    assert len(runs.reported) == runs.again.rejected == 3
    assert all(r.message.startswith(r.record) or r.field for r in runs.reported)


def test_a_stopped_job_run_again_resumes_without_duplicates_or_losses(
    workspace: Workspace, runs: Runs
) -> None:
    half = DOCUMENTS // 2
    assert (runs.first.read, runs.first.written, runs.first.rejected) == (half, half, 0)
    assert (runs.again.read, runs.again.written, runs.again.unchanged) == (
        DOCUMENTS + 3,
        DOCUMENTS - half,
        half,
    )
    info = workspace.catalog.get("on-ray")
    stats = workspace.store.stats(info.id)
    changes = workspace.store.changes_since(info.id, 0)
    assert stats.documents == DOCUMENTS
    assert stats.chunks == len(chunk_vectors(workspace, "on-ray")) == len(changes)
    assert {c.op for c in changes} == {ChangeOp.ADD}  # nothing written twice, so nothing replaced
    assert len({c.chunk_id for c in changes}) == len(changes)


def test_a_ray_job_that_changes_only_metadata_keeps_every_vector(
    workspace: Workspace, runs: Runs, tmp_path: Path
) -> None:
    info = workspace.catalog.get("on-ray")
    vectors, head = chunk_vectors(workspace, "on-ray"), workspace.store.last_sequence(info.id)
    docs = [
        replace(d, metadata={**d.metadata, "tag": "moved"}) if i % 6 == 0 else d
        for i, d in enumerate(documents(DOCUMENTS))
    ]
    path = write_jsonl(tmp_path / "retagged.jsonl", docs)

    summary = ingest_with_ray(workspace.config, "on-ray", [str(path)], RayIngestOptions(workers=2))

    assert (summary.written, summary.metadata_updated, summary.unchanged) == (
        0,
        DOCUMENTS // 6,
        DOCUMENTS - DOCUMENTS // 6,
    )
    assert workspace.store.last_sequence(info.id) == head
    after = chunk_vectors(workspace, "on-ray")
    assert sorted(after) == sorted(vectors) and all(np.array_equal(after[k], v) for k, v in vectors.items())


def test_standard_input_and_missing_files_are_refused_before_the_job_starts(
    workspace: Workspace, tmp_path: Path
) -> None:
    with pytest.raises(InvalidArgument, match="standard input"):
        ingest_with_ray(workspace.config, "any", ["-"])
    with pytest.raises(InvalidArgument, match="does not exist"):
        split_inputs([str(tmp_path / "missing.csv")], 16)


def test_jsonl_files_are_split_into_parts_that_number_their_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", documents(10))

    parts = split_inputs([str(path)], 4)

    assert [(p["first_line"], p["lines"]) for p in parts] == [(1, 4), (5, 4), (9, 2)]
    records = [record for part in parts for record in read_part(part)]
    assert records == documents(10)
