"""A collection's FAISS index kept in step with the SQL change log.

``SyncedIndex.open`` = newest valid snapshot + replay of the changes after it, or a rebuild from
SQL. ``catch_up`` replays new changes; replay is idempotent (an ADD of an id already present is
skipped, a REMOVE of an absent id does nothing), so replaying from any sequence at or before the
index's true position converges to the same state. That is what makes "read the sequence, then
scan the vectors, then replay" a correct rebuild while writers keep writing: chunk ids are never
reused, so ADD and REMOVE of one id never need ordering against each other beyond ADD-then-REMOVE.

The log is compacted (``Store.prune_log``): a ``SyncedIndex`` given a ``reader`` name records in
SQL the oldest sequence it may still replay (``_pin``) and prunes after each snapshot. Replaying
is only correct from at or above the collection's ``log_floor``; floors only rise, so reading the
floor *after* a replay tells whether anything that replay needed was pruned under it, and then
the index is rebuilt from SQL (docs/OPERATIONS.md, "Change-log compaction").
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path

import numpy as np

from indexer.changelog import Replayed, pages_after
from indexer.config import LogRetention
from indexer.errors import InvalidArgument
from indexer.index import VectorIndex
from indexer.index_spec import vectors_to_train_well
from indexer.records import CollectionInfo
from indexer.sharding import ChunkFilter
from indexer.snapshots import latest, write_snapshot
from indexer.store import Store
from indexer.whitening import IndexSpace, Whitening

log = logging.getLogger(__name__)

DEFAULT_TRAIN_SAMPLE = 100_000
# Retrain a trained index (rebuild from SQL) once the collection holds this many times the
# vectors it was trained on (see _outgrew_training).
RETRAIN_GROWTH = 10
DEFAULT_PAGE = 100_000
# Rebuild from SQL once this share of the stored vectors are tombstones (HNSW/IVF removals).
MAX_TOMBSTONE_FRACTION = 0.25
FALLBACK_SPEC = "Flat"


def sample_vectors(store: Store, collection_id: int, limit: int) -> np.ndarray:
    """Up to ``limit`` stored vectors spread evenly over the collection by id, float32 (n, d):
    training on the oldest vectors alone would fit the lists to what the collection held then.
    A collection smaller than ``limit`` is taken whole."""
    total = store.stats(collection_id).chunks
    count = min(limit, total)
    if count == 0:
        return np.zeros((0, 0), dtype=np.float32)
    wanted = np.unique((np.arange(count) * (total / count)).astype(np.int64))
    parts, position = [], 0
    for _, vectors in store.iter_vectors(collection_id, batch=10_000):
        here = wanted[(wanted >= position) & (wanted < position + len(vectors))] - position
        parts.append(vectors[here])
        position += len(vectors)
        if position > wanted[-1]:
            break
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def index_space(store: Store, info: CollectionInfo) -> IndexSpace:
    """The space ``info``'s index holds its vectors in: its current whitening, if it whitens."""
    stored = store.whitening(info.id) if info.spec.whitening else None
    if stored is None:
        return IndexSpace(normalize=info.spec.normalize)
    return IndexSpace(Whitening.from_bytes(stored.blob), stored.version, info.spec.normalize)


def build_from_store(
    store: Store,
    info: CollectionInfo,
    train_sample: int = DEFAULT_TRAIN_SAMPLE,
    keep: ChunkFilter | None = None,
    space: IndexSpace | None = None,
) -> tuple[VectorIndex, int, bool]:
    """A fresh index of every live vector (that ``keep`` accepts, when given), in ``space``:
    ``(index, sequence it covers, fell back to Flat)``.

    The sequence is read *before* the scan, so replaying from it covers concurrent writes. IVF/PQ
    training uses the unfiltered sample, so every shard of a collection trains alike.
    """
    space = space or IndexSpace(normalize=info.spec.normalize)
    sequence = store.last_sequence(info.id)
    index = VectorIndex.create(info.spec.index_spec, info.dimension)
    fallback = False
    if index.needs_training:
        sample = space.apply(sample_vectors(store, info.id, train_sample))
        needed = max(1, vectors_to_train_well(info.spec.index_spec))
        try:
            if len(sample) < needed:
                raise InvalidArgument(f"{len(sample)} stored vectors, {needed} needed")
            index.train(sample)
        except InvalidArgument as exc:
            log.info(
                "collection %r: cannot train %r yet (%s); serving a %s index until enough vectors",
                info.name,
                info.spec.index_spec,
                exc,
                FALLBACK_SPEC,
            )
            index, fallback = VectorIndex.create(FALLBACK_SPEC, info.dimension), True
    for ids, vectors in store.iter_vectors(info.id):
        if keep is not None:
            mask = keep(ids)
            ids, vectors = ids[mask], vectors[mask]
        index.add(ids, space.apply(vectors))
    return index, sequence, fallback


def _outgrew_training(trained_on: int | None, live: int, train_sample: int) -> bool:
    """Whether an index trained on ``trained_on`` vectors should be retrained now that the
    collection holds ``live``: IVF lists fitted to the first 40k vectors of what became millions
    no longer split the data evenly. Retraining samples up to ``train_sample`` vectors, so an index
    trained on a full sample is never retrained for growth (unknown counts are left alone)."""
    if trained_on is None or trained_on >= train_sample:
        return False
    return live >= RETRAIN_GROWTH * trained_on


class SyncedIndex(Replayed):
    """One collection's index, or the shard of it whose chunk ids ``keep`` accepts. Thread-safe: ``_lock`` guards the FAISS index (not safe for
    concurrent add + search); ``_catch_up_lock`` lets one catch-up run at a time, so SQL reads
    happen outside ``_lock`` and searches are only blocked while changes are applied."""

    def __init__(
        self,
        store: Store,
        info: CollectionInfo,
        snapshot_dir: Path,
        index: VectorIndex,
        sequence: int,
        *,
        fallback: bool = False,
        train_sample: int = DEFAULT_TRAIN_SAMPLE,
        page: int = DEFAULT_PAGE,
        keep: ChunkFilter | None = None,
        reader: str | None = None,
        retention: LogRetention | None = None,
        pinned: int | None = None,
        space: IndexSpace | None = None,
    ) -> None:
        self._store = store
        self._info = info
        self._snapshot_dir = Path(snapshot_dir)
        self._index = index
        self._sequence = sequence
        self._fallback = fallback
        # While on the fallback: how many vectors to wait for before trying to train again.
        self._train_after = max(1, vectors_to_train_well(info.spec.index_spec))
        self._train_sample = train_sample
        self._page = page
        self._keep = keep
        self._lock = threading.RLock()
        self._catch_up_lock = threading.Lock()
        self._reader = reader
        self._retention = retention or LogRetention()
        # Sequence of the snapshot on disk a restart would load, None when there is none to use.
        self._pinned = pinned
        self._recorded_at = float("-inf")
        self._space = space or IndexSpace(normalize=info.spec.normalize)

    @classmethod
    def open(
        cls,
        store: Store,
        info: CollectionInfo,
        snapshot_dir: Path,
        *,
        train_sample: int = DEFAULT_TRAIN_SAMPLE,
        page: int = DEFAULT_PAGE,
        keep: ChunkFilter | None = None,
        reader: str | None = None,
        retention: LogRetention | None = None,
    ) -> SyncedIndex:
        """Newest valid snapshot + replay, else a rebuild from SQL; caught up on return.

        With a ``reader`` name, it is recorded before anything is read, so no compaction prunes
        what this open is about to replay."""
        space = index_space(store, info)
        snapshot = latest(snapshot_dir, info, space.version)
        head = store.last_sequence(info.id)
        if reader is not None:
            position = head if snapshot is None else min(snapshot.sequence, head)
            store.record_reader(info.id, reader, position, time.time())
        floor = store.log_floor(info.id)
        pinned = None
        if snapshot is not None and floor <= snapshot.sequence <= head:
            index, sequence, fallback = snapshot.index, snapshot.sequence, False
            pinned = snapshot.sequence
        else:
            if snapshot is not None:
                log.warning(
                    "collection %r: snapshot at sequence %d is outside the replayable log (%d, %d]; rebuilding",
                    info.name,
                    snapshot.sequence,
                    floor,
                    head,
                )
            index, sequence, fallback = build_from_store(store, info, train_sample, keep, space)
        synced = cls(
            store,
            info,
            snapshot_dir,
            index,
            sequence,
            fallback=fallback,
            train_sample=train_sample,
            page=page,
            keep=keep,
            reader=reader,
            retention=retention,
            pinned=pinned,
            space=space,
        )
        synced.catch_up()
        return synced

    # -- facts ----------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        with self._lock:
            return self._index.ntotal

    @property
    def fallback(self) -> bool:
        """True while a Flat index stands in for a spec that cannot be trained yet."""
        return self._fallback

    @property
    def whitening_version(self) -> int:
        """The version of the map the index searches in now (0: none). It changes only when a
        rebuild swaps index and map together, under the lock searches hold, and only rises."""
        with self._lock:
            return self._space.version

    def ids(self) -> np.ndarray:
        """Live ids, int64 (ntotal,) ascending: for consistency checks against SQL."""
        with self._lock:
            return self._index.ids()

    # -- reading --------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``VectorIndex.search``: scores float32 (nq, k'), ids int64 (nq, k'), -1 padded.

        ``queries`` are in the stored vectors' space: the index whitens them as it whitened what it
        holds, under the same lock, so a refit never pairs one map's queries with another's index."""
        with self._lock:
            return self._index.search(self._space.apply(queries), k, allowed_ids)

    def sample_ids(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """As ``VectorIndex.sample_ids``."""
        with self._lock:
            return self._index.sample_ids(count, rng)

    # -- keeping up -----------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply every change committed after ``sequence``; returns how many were applied."""
        with self._catch_up_lock:
            start = self._sequence
            applied, self._sequence = self._replay(self._index, self._space, self._sequence, self._lock)
            facts = self._store.index_facts(self._info.id)
            if facts.log_floor > start:
                log.warning(
                    "collection %r: the change log was pruned past sequence %d; rebuilding", self._info.name, start
                )
                self._rebuild()
            elif self._info.spec.whitening and facts.whitening_version != self._space.version:
                log.info("collection %r: whitening version %d; rebuilding", self._info.name, facts.whitening_version)
                self._rebuild()
            elif self._needs_rebuild():
                self._rebuild()
            self._heartbeat()
            return applied

    def _replay(
        self,
        index: VectorIndex,
        space: IndexSpace,
        sequence: int,
        lock: contextlib.AbstractContextManager[object],
    ) -> tuple[int, int]:
        """Replay changes after ``sequence`` into ``index`` (vectors put in ``space``), page by
        page, holding ``lock`` only while FAISS is touched. Returns ``(changes applied, new sequence)``."""
        applied = 0
        for page in pages_after(self._store, self._info.id, sequence, self._page, self._keep):
            # Only chunks that still exist come back: an ADD later undone by a REMOVE is a no-op.
            if page.adds.size:
                ids, vectors = self._store.vectors_for(self._info.id, page.adds)
            else:
                ids, vectors = page.adds, np.zeros((0, self._info.dimension), np.float32)
            vectors = space.apply(vectors)
            with lock:
                fresh = ~index.contains(ids, include_removed=True)
                index.add(ids[fresh], vectors[fresh])
                index.remove(page.removes)
            sequence = page.sequence
            applied += page.entries
        return applied, sequence

    def _needs_rebuild(self) -> bool:
        with self._lock:
            live, dead, trained_on = self._index.ntotal, self._index.tombstones, self._index.trained_on
        if self._fallback:
            return live >= self._train_after
        if _outgrew_training(trained_on, live, self._train_sample):
            return True
        return dead > 0 and dead >= MAX_TOMBSTONE_FRACTION * (live + dead)

    def _rebuild(self) -> None:
        """Build a fresh index from SQL beside the serving one, catch it up, then swap it in."""
        log.info("collection %r: rebuilding the index from SQL", self._info.name)
        space = index_space(self._store, self._info)
        index, sequence, fallback = build_from_store(self._store, self._info, self._train_sample, self._keep, space)
        _, sequence = self._replay(index, space, sequence, contextlib.nullcontext())
        if fallback:
            # Training failed again: wait for twice as many vectors instead of retrying each time.
            self._train_after = 2 * max(index.ntotal, self._train_after)
        with self._lock:
            self._index, self._fallback, self._sequence, self._space = index, fallback, sequence, space
            # The snapshot on disk no longer describes this index: until the next one, a restart
            # rebuilds, and this reader needs only what it has not applied yet.
            self._pinned = None
        # Then whatever was committed while the new index was being built.
        _, self._sequence = self._replay(self._index, self._space, self._sequence, self._lock)
        # The line an operator waits for on every shard after a refit (docs/OPERATIONS.md, "Whitening").
        log.info(
            "collection %r: rebuilt index serving, whitening version %d, %d vectors",
            self._info.name,
            space.version,
            index.ntotal,
        )

    def snapshot(self) -> Path | None:
        """Write a snapshot atomically; None (and nothing written) while on the Flat fallback,
        which is small by definition and would not match the collection's spec."""
        with self._lock:
            if self._fallback:
                log.info("collection %r: no snapshot of the fallback index", self._info.name)
                return None
            data, sequence, trained_on = self._index.to_bytes(), self._sequence, self._index.trained_on
            version = self._space.version
        path = write_snapshot(self._snapshot_dir, self._info, sequence, data, trained_on, version)
        self._pinned = sequence
        self.compact()
        return path

    # -- compaction -----------------------------------------------------------------------------

    @property
    def _pin(self) -> int:
        """The oldest sequence this reader may still replay from: its snapshot's, or, without one
        a restart could load, what it has applied (it only tails from there)."""
        return self._sequence if self._pinned is None else min(self._pinned, self._sequence)

    def _heartbeat(self) -> None:
        now = time.time()
        if self._reader is not None and now - self._recorded_at >= self._retention.heartbeat_s:
            self._store.record_reader(self._info.id, self._reader, self._pin, now)
            self._recorded_at = now

    def compact(self) -> None:
        """Record this reader's pin, then prune what every live reader has passed."""
        if self._reader is None:
            return
        now = time.time()
        self._store.record_reader(self._info.id, self._reader, self._pin, now)
        self._recorded_at = now
        done = self._store.prune_log(
            self._info.id,
            now,
            reader_ttl_s=self._retention.reader_ttl_s,
            max_entries=self._retention.max_entries,
        )
        if done.removed:
            log.info("collection %r: pruned %d log entries (floor %d)", self._info.name, done.removed, done.floor)
