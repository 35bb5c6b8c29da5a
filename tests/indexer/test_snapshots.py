"""Snapshot files: atomic replacement, checksummed manifests, fallback past damaged ones."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

from indexer.index import VectorIndex
from indexer.records import CollectionInfo, CollectionSpec
from indexer.snapshots import atomic_write, latest, latest_sequence, write_snapshot

D = 8
INFO = CollectionInfo(
    id=3, name="docs", spec=CollectionSpec(model="m"), dimension=D, model_revision="r", tokenizer_hash="t"
)


def index_with(n: int) -> VectorIndex:
    rng = np.random.default_rng(n)
    index = VectorIndex.create("Flat", D)
    index.add(np.arange(1, n + 1, dtype=np.int64), rng.standard_normal((n, D)).astype(np.float32))
    return index


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file.bin"
    atomic_write(target, b"old")

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_latest_loads_the_newest_and_keeps_two(tmp_path: Path) -> None:
    for sequence in (5, 9, 12):
        write_snapshot(tmp_path, INFO, sequence, index_with(sequence).to_bytes())
    names = sorted(p.name for p in (tmp_path / "docs").iterdir())
    assert names == [f"{s:020d}.{ext}" for s in (9, 12) for ext in ("faiss", "json")]
    snapshot = latest(tmp_path, INFO)
    assert snapshot is not None and snapshot.sequence == 12 and snapshot.index.ntotal == 12
    assert latest_sequence(tmp_path, "docs") == 12
    assert latest_sequence(tmp_path, "other") is None
    assert latest(tmp_path / "nowhere", INFO) is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "delete"])
def test_damaged_newest_falls_back_to_the_previous(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_snapshot(tmp_path, INFO, 9, index_with(9).to_bytes())
    newest = write_snapshot(tmp_path, INFO, 12, index_with(12).to_bytes())
    data = newest.read_bytes()
    if damage == "truncate":
        newest.write_bytes(data[: len(data) // 2])  # a torn write
    elif damage == "flip":
        newest.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif damage == "manifest":
        newest.with_suffix(".json").write_text("{not json")
    else:
        newest.unlink()
    with caplog.at_level(logging.WARNING, logger="indexer.snapshots"):
        snapshot = latest(tmp_path, INFO)
    assert snapshot is not None and snapshot.sequence == 9 and snapshot.index.ntotal == 9
    assert "skipping snapshot" in caplog.text


def test_snapshots_of_another_space_are_ignored(tmp_path: Path) -> None:
    write_snapshot(tmp_path, INFO, 9, index_with(9).to_bytes())
    recreated = CollectionInfo(
        id=4, name="docs", spec=INFO.spec, dimension=D, model_revision="r", tokenizer_hash="t"
    )
    assert latest(tmp_path, recreated) is None  # same name, new collection: not its snapshot
