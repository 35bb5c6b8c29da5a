"""FAISS snapshots on disk, replaced atomically (docs/ARCHITECTURE.md, Invariants 3).

Layout, per collection::

    <snapshot_dir>/<collection name>/<sequence:020d>.faiss   VectorIndex.to_bytes()
    <snapshot_dir>/<collection name>/<sequence:020d>.json    manifest, written *after* the data

The manifest is the commit marker: it exists only once its data file is complete, and it carries
the data's SHA-256, so a torn or altered data file is detected and skipped. A snapshot covers the
change log up to ``sequence``; loading one means replaying the changes after it.

The atomic write, a collection's folder and the manifest's common head (``write_manifest``,
``read_manifest``) serve the lexical index's files too (``indexer.lexical_sync``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from indexer.errors import InvalidArgument, SnapshotCorrupt
from indexer.index import VectorIndex
from indexer.records import CollectionInfo

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
KEEP = 2
# A writer killed mid-snapshot leaves its ``atomic_write`` temporary behind, as large as the index.
# Only old ones are removed: another process sharing the folder may be writing one right now.
STALE_TEMPORARY_S = 3600.0


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a crash at any instant leaves the old file or the new one.

    Temp file in the same folder (``os.replace`` is only atomic within a filesystem), fsync the
    file before the rename and the folder after it (so the rename itself is durable).
    """
    atomic_write_parts(path, [data])


def atomic_write_parts(path: Path, parts: Iterable[bytes]) -> None:
    """``atomic_write`` of data produced piece by piece (an export larger than memory)."""
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            for part in parts:
                handle.write(part)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def collection_folder(snapshot_dir: Path, name: str) -> Path:
    """The folder of one collection's snapshots; the name must be a plain file name."""
    if not name or name in {".", ".."} or "/" in name or "\\" in name or "\0" in name:
        raise InvalidArgument(f"collection name {name!r} cannot name a folder", field="name")
    return Path(snapshot_dir) / name


@dataclass(frozen=True)
class Snapshot:
    """A loaded snapshot: ``index`` covers the change log up to and including ``sequence``."""

    sequence: int
    index: VectorIndex
    path: Path


def write_manifest(
    path: Path, manifest_format: int, info: CollectionInfo, sequence: int, **facts: Any
) -> None:
    """Replace a derived index's manifest: its format, whose it is (the collection's id as well as
    its name: a recreated namesake has another id), the sequence its data covers, then ``facts``.
    The FAISS snapshots and the lexical index (``indexer.lexical_sync``) both describe themselves so."""
    manifest = {
        "format": manifest_format,
        "collection": info.name,
        "collection_id": info.id,
        "sequence": sequence,
        **facts,
    }
    atomic_write(path, json.dumps(manifest, indent=1).encode("utf-8"))


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest in ``path``; ``SnapshotCorrupt`` when it is missing, torn or not an object."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SnapshotCorrupt(f"cannot read {path.name}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise SnapshotCorrupt(f"{path.name} is not a JSON object")
    return manifest


def mismatched(manifest: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``expected`` that ``manifest`` does not hold, with what it holds instead."""
    return {key: manifest.get(key) for key, value in expected.items() if manifest.get(key) != value}


def write_snapshot(
    snapshot_dir: Path,
    info: CollectionInfo,
    sequence: int,
    data: bytes,
    trained_on: int | None = None,
    whitening_version: int = 0,
) -> Path:
    """Write ``data`` (``VectorIndex.to_bytes()`` covering ``sequence``) and its manifest (with
    ``trained_on``, the index's training sample size), then keep only the newest ``KEEP``
    snapshots. Returns the data file's path."""
    folder = collection_folder(snapshot_dir, info.name)
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / f"{sequence:020d}.faiss"
    atomic_write(data_path, data)
    write_manifest(
        folder / f"{sequence:020d}.json",
        MANIFEST_FORMAT,
        info,
        sequence,
        dimension=info.dimension,
        index_spec=info.spec.index_spec,
        model_revision=info.model_revision,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        trained_on=trained_on,
        whitening_version=whitening_version,
        created_at=datetime.now(UTC).isoformat(),
    )
    prune(folder, KEEP)
    return data_path


def _sequences(folder: Path, suffix: str) -> list[int]:
    """Sequences of the ``<sequence>.<suffix>`` files in ``folder``, newest first."""
    found = []
    for path in folder.glob(f"*{suffix}"):
        if path.stem.isdigit():
            found.append(int(path.stem))
    return sorted(found, reverse=True)


def prune(folder: Path, keep: int = KEEP) -> None:
    """Delete all but the newest ``keep`` snapshots (manifest first, so none is left half-there),
    and the temporaries of writes that died more than ``STALE_TEMPORARY_S`` ago."""
    if not folder.is_dir():
        return
    _remove_stale_temporaries(folder, time.time() - STALE_TEMPORARY_S)
    manifests = _sequences(folder, ".json")
    for sequence in manifests[keep:]:
        (folder / f"{sequence:020d}.json").unlink(missing_ok=True)
    if not manifests:
        return
    oldest_kept = manifests[:keep][-1]
    for sequence in _sequences(folder, ".faiss"):
        # Only older data goes: a newer one without manifest may be being written right now.
        if sequence < oldest_kept:
            (folder / f"{sequence:020d}.faiss").unlink(missing_ok=True)


def _remove_stale_temporaries(folder: Path, older_than: float) -> None:
    for temporary in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):  # gone meanwhile: another process pruned it
            if temporary.stat().st_mtime < older_than:
                temporary.unlink()


def _load(folder: Path, sequence: int, info: CollectionInfo, whitening_version: int) -> Snapshot:
    """Load one snapshot; ``SnapshotCorrupt`` when it is unreadable or belongs to another space."""
    manifest = read_manifest(folder / f"{sequence:020d}.json")
    data_path = folder / f"{sequence:020d}.faiss"
    try:
        data = data_path.read_bytes()
    except OSError as exc:
        raise SnapshotCorrupt(f"cannot read snapshot {sequence}: {exc}") from exc
    expected = {
        "format": MANIFEST_FORMAT,
        "collection_id": info.id,
        "sequence": sequence,
        "dimension": info.dimension,
        "index_spec": info.spec.index_spec,
        "model_revision": info.model_revision,
    }
    wrong = mismatched(manifest, expected)
    # Written before whitening had versions: only a collection that never whitened matches.
    if manifest.get("whitening_version", 0) != whitening_version:
        wrong["whitening_version"] = manifest.get("whitening_version", 0)
    if wrong:
        raise SnapshotCorrupt(f"snapshot {sequence} is for another index: {wrong}")
    if len(data) != manifest.get("bytes") or hashlib.sha256(data).hexdigest() != manifest.get("sha256"):
        raise SnapshotCorrupt(f"snapshot {sequence}: data does not match its checksum (torn write?)")
    index = VectorIndex.from_bytes(data, info.spec.index_spec)
    trained_on = manifest.get("trained_on")
    index.trained_on = trained_on if isinstance(trained_on, int) else None
    if index.dimension != info.dimension:
        raise SnapshotCorrupt(f"snapshot {sequence} has dimension {index.dimension}")
    return Snapshot(sequence=sequence, index=index, path=data_path)


def latest_sequence(snapshot_dir: Path, name: str) -> int | None:
    """Sequence of the newest snapshot manifest of collection ``name`` (not loaded nor verified),
    or None when there is none: for status displays."""
    folder = collection_folder(snapshot_dir, name)
    sequences = _sequences(folder, ".json") if folder.is_dir() else []
    return sequences[0] if sequences else None


def latest(snapshot_dir: Path, info: CollectionInfo, whitening_version: int = 0) -> Snapshot | None:
    """The newest snapshot of ``info`` that loads, or None. Bad ones are logged and skipped,
    never raised: the caller falls back to an older one or a rebuild from SQL."""
    folder = collection_folder(snapshot_dir, info.name)
    if not folder.is_dir():
        return None
    for sequence in _sequences(folder, ".json"):
        try:
            return _load(folder, sequence, info, whitening_version)
        except SnapshotCorrupt as exc:
            log.warning("skipping snapshot of collection %r in %s: %s", info.name, folder, exc)
    return None
