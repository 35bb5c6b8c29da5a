"""A collection without a model stores the vectors its documents bring; one with a model refuses them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.config import AppConfig, IngestConfig, StoreConfig
from indexer.errors import InvalidArgument, InvalidCollectionSpec, InvalidDocument
from indexer.exporting import document_vector, export_lines
from indexer.readers import ReadOptions, Rejection, read_path
from indexer.records import NO_MODEL, CollectionSpec, Document
from indexer.validation import check_vector, vector_for_collection
from indexer.workspace import Workspace

DIMENSION = 4


@pytest.fixture
def workspace(tiny_albert_dir: Path, tmp_path: Path) -> Iterator[Workspace]:
    config = AppConfig(
        store=StoreConfig(data_dir=tmp_path),
        ingest=IngestConfig(docs_per_transaction=3, progress=False),
        default_model=tiny_albert_dir,
    )
    opened = Workspace.open(config)
    opened.catalog.create("own", CollectionSpec(model=NO_MODEL), DIMENSION)
    opened.catalog.create("embedded", CollectionSpec(model="", max_length=64, window=32, overlap=8))
    yield opened
    opened.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([1.0, float("nan"), 0.0, 0.0], r"'vector'\[1\] is nan"),
        ([1.0, float("inf"), 0.0, 0.0], r"'vector'\[1\] is inf"),
        ([1.0, "2", 0.0, 0.0], r"'vector'\[1\] must be a number"),
        ([1.0, True, 0.0, 0.0], r"'vector'\[1\] must be a number"),
        ([1.0, 2.0], "has 2 values, the collection takes 4"),
        ([0.0, 0.0, 0.0, 0.0], "all zeros"),
        ([1e300, 0.0, 0.0, 0.0], "beyond float32"),
        ("1,2,3,4", "non-empty array"),
        ([], "non-empty array"),
        (None, "missing field 'vector'"),
    ],
)
def test_a_bad_vector_is_refused_naming_the_record_and_the_field(value: object, message: str) -> None:
    with pytest.raises(InvalidDocument, match=message) as caught:
        vector_for_collection(value, record="in.jsonl:7", dimension=DIMENSION)
    assert caught.value.field == "vector" and "in.jsonl:7" in str(caught.value)


def test_a_collection_with_a_model_refuses_any_vector() -> None:
    with pytest.raises(InvalidDocument, match="takes no outside vectors"):
        vector_for_collection([1.0, 0.0], record="r", dimension=None)
    assert vector_for_collection(None, record="r", dimension=None) is None
    assert check_vector(np.array([1, 2], dtype=np.float32), record="r") == (1.0, 2.0)


def test_jsonl_and_parquet_vectors_are_read_and_checked_by_line(tmp_path: Path) -> None:
    jsonl = tmp_path / "v.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(row)
            for row in (
                {"_id": "a", "text": "A", "vector": [1, 0, 0, 0]},
                {"_id": "b", "text": "B", "vector": [1, 0]},
                {"_id": "c", "text": "C"},
            )
        )
        + "\n"
    )
    items = list(read_path(str(jsonl), options=ReadOptions(vector_dimension=DIMENSION)))
    assert items[0] == Document("a", "A", vector=(1.0, 0.0, 0.0, 0.0))
    assert [(r.record, r.field) for r in items[1:] if isinstance(r, Rejection)] == [
        (f"{jsonl}:2", "vector"),
        (f"{jsonl}:3", "vector"),
    ]
    parquet = tmp_path / "v.parquet"
    pq.write_table(
        pa.table({"_id": ["p", "q"], "text": ["P", "Q"], "vector": [[0.5, 0.5, 0.5, 0.5], [0.5, None, 1, 1]]}),
        parquet,
    )
    items = list(read_path(str(parquet), options=ReadOptions(vector_dimension=DIMENSION)))
    assert items[0] == Document("p", "P", vector=(0.5,) * 4)
    assert isinstance(items[1], Rejection) and items[1].record == f"{parquet}:row 2"
    refused = list(read_path(str(jsonl), options=ReadOptions(refuse_vectors=True)))
    assert isinstance(refused[0], Rejection) and "takes no outside vectors" in refused[0].message


def test_csv_cannot_carry_vectors_and_says_so(tmp_path: Path) -> None:
    with_column = tmp_path / "v.csv"
    with_column.write_text('_id,text,vector\na,A,"[1,0,0,0]"\n')
    with pytest.raises(InvalidArgument, match="CSV cannot carry vectors"):
        list(read_path(str(with_column)))
    plain = tmp_path / "p.csv"
    plain.write_text("_id,text\na,A\n")
    with pytest.raises(InvalidArgument, match="CSV cannot carry vectors"):
        list(read_path(str(plain), options=ReadOptions(vector_dimension=DIMENSION)))


def test_stored_vectors_are_searched_and_bad_ones_rejected_with_the_rest_committed(
    workspace: Workspace,
) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(6, DIMENSION)).astype(np.float32)
    good = [Document(f"d{i}", f"text {i}", vector=tuple(map(float, v))) for i, v in enumerate(vectors)]
    bad = [Document("short", "x", vector=(1.0, 2.0)), Document("none", "y")]
    summary = workspace.ingestor.ingest("own", [good[0], bad[0], *good[1:4], bad[1], *good[4:]])
    assert (summary.written, summary.rejected) == (6, 2)
    assert {r.record for r in summary.rejections} == {"document 'short'", "document 'none'"}
    info = workspace.catalog.get("own")
    assert (workspace.catalog.stats("own").documents, workspace.catalog.stats("own").chunks) == (6, 6)
    exported = [json.loads(line) for line in export_lines(workspace.store.iter_documents(info.id), normalize=True)]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(np.array([row["vector"] for row in exported]), unit, rtol=1e-6)
    assert [row["_id"] for row in exported] == [f"d{i}" for i in range(6)]
    again = workspace.ingestor.ingest("own", good)
    assert again.unchanged == 6  # same vectors: nothing rewritten
    moved = Document("d0", "text 0", vector=tuple(map(float, vectors[1])))
    assert workspace.ingestor.upsert("own", [moved])[0].status == "written"  # a new vector is a change


def test_a_collection_with_a_model_rejects_documents_that_bring_vectors(workspace: Workspace) -> None:
    outcomes = workspace.ingestor.upsert(
        "embedded", [Document("v", "owls hunt", vector=(1.0, 0.0)), Document("t", "owls hunt")]
    )
    assert [o.status for o in outcomes] == ["rejected", "written"]
    assert "takes no outside vectors" in (outcomes[0].error or "")
    with pytest.raises(InvalidArgument, match="has no model"):
        workspace.catalog.encoder_for(workspace.catalog.get("own"))


@pytest.mark.parametrize(
    ("spec", "dimension", "field"),
    [
        (CollectionSpec(model=NO_MODEL), None, "dimension"),
        (CollectionSpec(model=NO_MODEL), 0, "dimension"),
        (CollectionSpec(model=NO_MODEL, whitening=True), 8, "whitening"),
        (CollectionSpec(model=""), 7, "dimension"),
    ],
)
def test_specs_that_cannot_work_are_refused(
    workspace: Workspace, spec: CollectionSpec, dimension: int | None, field: str
) -> None:
    with pytest.raises(InvalidCollectionSpec) as caught:
        workspace.catalog.create("x", spec, dimension)
    assert caught.value.field == field


def test_a_document_of_several_chunks_exports_the_unit_mean_of_its_chunk_vectors() -> None:
    chunks = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(document_vector(chunks, normalize=True), [2**-0.5, 2**-0.5], rtol=1e-6)
    np.testing.assert_allclose(document_vector(chunks, normalize=False), [0.5, 0.5])
