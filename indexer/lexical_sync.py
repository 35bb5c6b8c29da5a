"""A collection's lexical index kept in step with the SQL change log, as ``indexer.sync`` keeps
the vector index.

Layout, beside the collection's FAISS snapshots::

    <snapshot_dir>/<collection name>/lexical/           the Tantivy index (its own segment files)
    <snapshot_dir>/<collection name>/lexical.json       manifest: collection id, analyser, sequence

Every ``catch_up`` that applied changes commits the Tantivy index (which must happen anyway for
searches to see them) and *then* replaces the manifest atomically, so the manifest's sequence is
never ahead of what the index holds. It may lag it (a crash between the two): replay is idempotent
here too, since an ADD replaces whatever the index holds under that chunk id and a REMOVE of an
absent id does nothing, so replaying from an older sequence converges to the same state.

``open`` = the folder + replay after the manifest's sequence, or a rebuild from SQL when the folder
or the manifest is missing, torn, of another collection or analyser, or ahead of the database, or
when the log was compacted past it (``Store.log_floor``). The lexical index commits every round,
so it is never behind the vector index's snapshot, which is what pins the log against compaction.
When another process holds the folder (two servers sharing one data folder), this one builds a
private in-memory index from SQL instead of waiting.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from indexer.changelog import Replayed, pages_after
from indexer.errors import LexicalIndexBusy, SnapshotCorrupt
from indexer.lexical import LexicalIndex, body_of
from indexer.records import CollectionInfo, LexicalAnalyzer
from indexer.sharding import ChunkFilter
from indexer.snapshots import collection_folder, mismatched, read_manifest, write_manifest
from indexer.store import Store

log = logging.getLogger(__name__)

MANIFEST_FORMAT = 1
DEFAULT_PAGE = 10_000


def lexical_paths(snapshot_dir: Path, name: str) -> tuple[Path, Path]:
    """(index folder, manifest file) of collection ``name``."""
    folder = collection_folder(snapshot_dir, name)
    return folder / "lexical", folder / "lexical.json"


def _usable_sequence(manifest_path: Path, info: CollectionInfo, head: int) -> int | None:
    """The sequence the manifest says its index covers, or None when there is none to read, or it
    is not this collection's (a dropped namesake), was built with another analyser, or is ahead of
    the database."""
    try:
        manifest = read_manifest(manifest_path)
    except SnapshotCorrupt:
        return None
    expected = {
        "format": MANIFEST_FORMAT,
        "collection_id": info.id,
        "analyzer": LexicalAnalyzer(info.spec.lexical_analyzer).value,
    }
    sequence = manifest.get("sequence")
    fits = not mismatched(manifest, expected) and isinstance(sequence, int) and 0 <= sequence <= head
    return sequence if fits else None


def _fill_from_store(
    index: LexicalIndex, store: Store, info: CollectionInfo, keep: ChunkFilter | None
) -> int:
    """Index every live chunk (that ``keep`` accepts); returns the sequence it covers, read
    *before* the scan so that replaying from it covers concurrent writes."""
    sequence = store.last_sequence(info.id)
    for ids, texts in store.iter_chunk_texts(info.id, DEFAULT_PAGE):
        if keep is not None:
            mask = keep(ids)
            ids, texts = ids[mask], [pair for pair, kept in zip(texts, mask, strict=True) if kept]
        index.add(ids, [body_of(title, text) for title, text in texts])
    index.commit()
    return sequence


class SyncedLexicalIndex(Replayed):
    """One collection's lexical index, or the shard of it whose chunk ids ``keep`` accepts.
    Thread-safe: ``_write_lock`` lets one catch-up write at a time; searches read the last commit
    (a Tantivy searcher is an immutable view) and never wait for a writer."""

    def __init__(
        self,
        store: Store,
        info: CollectionInfo,
        index: LexicalIndex,
        sequence: int,
        manifest_path: Path | None,
        *,
        keep: ChunkFilter | None = None,
        page: int = DEFAULT_PAGE,
    ) -> None:
        self._store = store
        self._info = info
        self._index = index
        self._sequence = sequence
        self._manifest_path = manifest_path
        self._keep = keep
        self._page = page
        self._write_lock = threading.Lock()

    @classmethod
    def open(
        cls,
        store: Store,
        info: CollectionInfo,
        snapshot_dir: Path,
        *,
        keep: ChunkFilter | None = None,
        page: int = DEFAULT_PAGE,
    ) -> SyncedLexicalIndex:
        """The folder + replay, else a rebuild from SQL; caught up on return."""
        folder, manifest_path = lexical_paths(snapshot_dir, info.name)
        analyzer = LexicalAnalyzer(info.spec.lexical_analyzer)
        covered = _usable_sequence(manifest_path, info, store.last_sequence(info.id))
        if covered is not None and covered < store.log_floor(info.id):
            covered = None  # the changes after it were compacted away: only a rebuild is correct
        index: LexicalIndex | None = None
        try:
            if covered is not None:
                try:
                    index, sequence = LexicalIndex.open(folder, analyzer), covered
                except (OSError, ValueError) as exc:
                    log.warning(
                        "collection %r: lexical index unreadable (%s); rebuilding from SQL", info.name, exc
                    )
            if index is None:
                manifest_path.unlink(missing_ok=True)  # the manifest goes first: never one for a half index
                index = LexicalIndex.create(folder, analyzer)
                sequence = _fill_from_store(index, store, info, keep)
        except LexicalIndexBusy as exc:
            log.warning("collection %r: %s; serving a private in-memory copy", info.name, exc)
            index, manifest_path = LexicalIndex.in_memory(analyzer), None
            sequence = _fill_from_store(index, store, info, keep)
        synced = cls(store, info, index, sequence, manifest_path, keep=keep, page=page)
        synced._write_manifest()
        synced.catch_up()
        return synced

    # -- facts ----------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return self._index.ntotal

    def ids(self) -> np.ndarray:
        """Live chunk ids, int64 ascending: for consistency checks against SQL."""
        return self._index.ids()

    # -- reading --------------------------------------------------------------------------------

    def search(
        self, queries: list[str], k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``LexicalIndex.search``: scores float32 (nq, k), ids int64 (nq, k), -1 padded."""
        return self._index.search(queries, k, allowed_ids)

    # -- keeping up -----------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply and commit every change after ``sequence``; returns how many were applied."""
        with self._write_lock:
            applied = 0
            if self._store.log_floor(self._info.id) > self._sequence:
                # Compacted past this index (``Store.prune_log``): its replay would skip changes.
                log.info("collection %r: change log compacted past the lexical index; rebuilding", self._info.name)
                self._index.clear()
                self._sequence = _fill_from_store(self._index, self._store, self._info, self._keep)
                self._write_manifest()
            for page in pages_after(self._store, self._info.id, self._sequence, self._page, self._keep):
                # Only chunks that still exist come back: an ADD later undone by a REMOVE is a no-op.
                ids, texts = self._store.chunk_texts_for(self._info.id, page.adds)
                self._index.add(ids, [body_of(title, text) for title, text in texts])
                self._index.remove(page.removes)
                self._index.commit()
                self._sequence = page.sequence
                self._write_manifest()
                applied += page.entries
            return applied

    def _write_manifest(self) -> None:
        if self._manifest_path is None:
            return
        write_manifest(
            self._manifest_path, MANIFEST_FORMAT, self._info, self._sequence, analyzer=self._index.analyzer.value
        )

    def snapshot(self) -> None:
        """Nothing to write: every catch-up already committed the index and its manifest."""

    def close(self) -> None:
        """Release the writer's folder lock (a later ``open`` in this process needs it)."""
        with self._write_lock:
            self._index.close()
