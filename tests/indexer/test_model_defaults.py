"""A model folder describes itself: its albatross_pooling.json gives a new collection's defaults."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from indexer.catalog import EncoderRegistry
from indexer.checkpoints import model_defaults
from indexer.config import DEFAULT_MODEL_DIR, AppConfig, EncoderConfig, StoreConfig
from indexer.errors import ModelNotFound
from indexer.records import CollectionSpec, PoolingMode
from indexer.spec import MODEL_DEFAULTS_FILE, complete_spec, validate_spec
from indexer.workspace import Workspace


@pytest.fixture
def described_model(tiny_albert_dir: Path, tmp_path: Path) -> Path:
    """The tiny ALBERT with the pooling file ``albatross.training.export`` writes."""
    folder = tmp_path / "described"
    shutil.copytree(tiny_albert_dir, folder)
    pooling = {"pooling": "max", "layers": [-2], "normalize": False, "max_length": 48}
    (folder / MODEL_DEFAULTS_FILE).write_text(json.dumps(pooling, indent=2) + "\n")
    return folder


def test_a_collection_takes_what_its_model_folder_says(described_model: Path, tmp_path: Path) -> None:
    workspace = Workspace.open(AppConfig(store=StoreConfig(data_dir=tmp_path / "data")))
    try:
        info = workspace.catalog.create("c", CollectionSpec(model=str(described_model)))
        given = workspace.catalog.create("d", CollectionSpec(model=str(described_model), max_length=40, window=30))
    finally:
        workspace.close()

    assert (info.spec.pooling, info.spec.layers, info.spec.normalize) == (PoolingMode.MAX, (-2,), False)
    # window: half of max_length (the rest leaves room for the title); overlap a quarter of it
    assert (info.spec.max_length, info.spec.window, info.spec.overlap) == (48, 24, 6)
    assert (given.spec.max_length, given.spec.window, given.spec.overlap, given.spec.pooling) == (
        40, 30, 7, PoolingMode.MAX,
    )


def test_a_folder_without_the_file_takes_the_fallbacks(tiny_albert_dir: Path) -> None:
    spec = complete_spec(CollectionSpec(model="m"), model_defaults(tiny_albert_dir))

    assert (spec.pooling, spec.layers, spec.normalize) == (PoolingMode.MEAN, (-1,), True)
    assert (spec.max_length, spec.window, spec.overlap) == (512, 256, 64)


def test_the_shipped_model_s_collections_default_to_what_it_was_built_for() -> None:
    written = json.loads((DEFAULT_MODEL_DIR / MODEL_DEFAULTS_FILE).read_text())

    spec = EncoderRegistry(EncoderConfig(), DEFAULT_MODEL_DIR).complete(CollectionSpec(model="default"))

    assert spec.max_length == written["max_length"]
    assert (spec.pooling, list(spec.layers), spec.normalize) == (
        written["pooling"], written["layers"], written["normalize"],
    )
    validate_spec(spec)


def test_an_unreadable_pooling_file_names_itself(tiny_albert_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(tiny_albert_dir, folder)
    (folder / MODEL_DEFAULTS_FILE).write_text("{not json")

    with pytest.raises(ModelNotFound, match=MODEL_DEFAULTS_FILE):
        model_defaults(folder)


def test_specs_that_agree_on_the_encoder_fields_share_one_encoder(tiny_albert_dir: Path) -> None:
    registry = EncoderRegistry(EncoderConfig(), tiny_albert_dir)
    base = CollectionSpec(model="", max_length=64, window=32, overlap=8)

    shared = registry.load(base)

    assert registry.load(replace(base, window=24, overlap=4, index_spec="HNSW32")) is shared
    assert registry.load(replace(base, pooling=PoolingMode.MAX)) is not shared
