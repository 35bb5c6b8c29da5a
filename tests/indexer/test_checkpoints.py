"""Checkpoints: folders and hub ids resolve locally, missing models say how to fetch them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.checkpoints import model_revision, resolve_model, tokenizer_hash
from indexer.config import EncoderConfig, config_from_environment
from indexer.encoder import Encoder
from indexer.errors import ModelNotFound
from indexer.records import CollectionSpec


def fake_hub_cache(cache: Path, repo_id: str, model_dir: Path, revision: str) -> Path:
    """Lay ``model_dir`` out as huggingface_hub does: blobs, a snapshot of links, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for source in model_dir.iterdir():
        blob = repo / "blobs" / f"{revision}-{source.name}"
        shutil.copyfile(source, blob)
        (snapshot / source.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def test_an_existing_folder_resolves_to_itself(tiny_albert_dir):
    assert resolve_model(str(tiny_albert_dir), None) == tiny_albert_dir.resolve()


def test_a_folder_without_config_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotFound, match="config.json"):
        resolve_model(str(tmp_path), None)


def test_a_hub_id_resolves_to_its_cached_snapshot(tiny_albert_dir, tmp_path):
    snapshot = fake_hub_cache(tmp_path / "hub", "albatross/tiny-albert", tiny_albert_dir, "abc123")
    assert resolve_model("albatross/tiny-albert", tmp_path / "hub") == snapshot
    # HF_HOME itself (holding hub/) is accepted too.
    assert resolve_model("albatross/tiny-albert", tmp_path) == snapshot


def test_without_refs_main_the_newest_snapshot_is_used(tiny_albert_dir, tmp_path):
    old = fake_hub_cache(tmp_path, "tiny-albert", tiny_albert_dir, "0ld")
    (tmp_path / "models--tiny-albert" / "refs" / "main").unlink()
    newer = old.parent / "n3w"
    shutil.copytree(old, newer, symlinks=True)
    os.utime(old, (1, 1))
    assert resolve_model("tiny-albert", tmp_path) == newer


def test_a_missing_hub_id_says_how_to_fetch_it(tmp_path):
    with pytest.raises(ModelNotFound) as caught:
        resolve_model("albert-base-v2", tmp_path)
    message = str(caught.value)
    assert "never downloads" in message
    assert "huggingface-cli download albert-base-v2" in message
    assert "save_pretrained('DIR')" in message and "--model DIR" in message
    assert str(tmp_path) in message


def test_a_missing_folder_is_named_with_a_generic_fetch_hint(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist") as caught:
        resolve_model(str(tmp_path / "nowhere"), tmp_path)
    assert "huggingface-cli download MODEL_ID" in str(caught.value)


def test_without_a_cache_only_folders_resolve(tiny_albert_dir):
    with pytest.raises(ModelNotFound, match="no Hugging Face cache"):
        resolve_model("org/name", None)


def test_the_encoder_loads_from_the_cache_like_from_the_folder(tiny_albert_dir, tmp_path):
    fake_hub_cache(tmp_path, "albatross/tiny-albert", tiny_albert_dir, "abc123")
    texts = ["Fresh bread from the corner bakery.", "The train was delayed."]
    from_folder = Encoder.load(str(tiny_albert_dir), CollectionSpec(model="x"), EncoderConfig())
    from_cache = Encoder.load(
        "albatross/tiny-albert", CollectionSpec(model="x"), EncoderConfig(hf_cache_dir=tmp_path)
    )
    assert from_cache.model_revision == from_folder.model_revision
    assert from_cache.tokenizer_hash == from_folder.tokenizer_hash
    np.testing.assert_array_equal(from_cache.encode(texts), from_folder.encode(texts))


def test_revision_and_tokenizer_hash_follow_the_bytes(tiny_albert_dir, tmp_path):
    copy = shutil.copytree(tiny_albert_dir, tmp_path / "copy")
    revision = model_revision(tiny_albert_dir)
    assert len(revision) == 16 and int(revision, 16) >= 0
    assert model_revision(copy) == revision
    assert tokenizer_hash(copy) == tokenizer_hash(tiny_albert_dir)
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    assert model_revision(copy) != revision
    (copy / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    assert tokenizer_hash(copy) != tokenizer_hash(tiny_albert_dir)


def test_a_folder_without_weights_or_tokenizer_has_no_fingerprint(tmp_path):
    with pytest.raises(ModelNotFound, match="no weights"):
        model_revision(tmp_path)
    with pytest.raises(ModelNotFound, match="no tokenizer"):
        tokenizer_hash(tmp_path)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"HF_HUB_CACHE": "/c/hub", "HF_HOME": "/h"}, Path("/c/hub")),
        ({"HF_HOME": "/h"}, Path("/h/hub")),
        ({"XDG_CACHE_HOME": "/x"}, Path("/x/huggingface/hub")),
        ({}, Path.home() / ".cache" / "huggingface" / "hub"),
    ],
)
def test_the_cache_folder_comes_from_the_environment_once(environ, expected):
    assert config_from_environment(environ).encoder.hf_cache_dir == expected
