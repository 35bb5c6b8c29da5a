"""Keeps each collection's indexes fresh by tailing the SQL change log (docs/ARCHITECTURE.md, Invariants 2).

A collection has a vector index and, when the server opens them, a lexical one; both follow the
same log, each from the sequence it covers. One asyncio task polls every ``poll_interval_s`` (or sooner, when ``wake`` is called after a local
write): it opens indexes of collections created since the last round, forgets dropped ones and runs
``catch_up`` on the rest. All of that blocks on SQL and FAISS, so it runs in the executor. An index
is snapshotted after every ``snapshot_every_changes`` applied changes and once more on ``stop``, so
a restart replays a short tail of the log instead of the whole collection.

``stop`` comes before the executor shuts down, so it leaves nothing to run there: it refuses new
opens (``IndexNotReady``, UNAVAILABLE), and waits for the ones in flight, which then get their
final snapshot like every other index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from indexer.errors import AlbatrossError, CollectionNotFound, IndexNotReady
from indexer.records import CollectionInfo
from searcher.blocking import BlockingCalls

log = logging.getLogger(__name__)

# In the refusal's message, as the batcher words its own (searcher.batching).
SHUTTING_DOWN = "the searcher is shutting down"


class LiveIndex(Protocol):
    """The part of ``indexer.sync.SyncedIndex`` the searcher uses."""

    @property
    def sequence(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    @property
    def whitening_version(self) -> int: ...

    def catch_up(self) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def sample_ids(self, count: int, rng: np.random.Generator) -> np.ndarray: ...

    def snapshot(self) -> None: ...


class LiveLexicalIndex(Protocol):
    """The part of ``indexer.lexical_sync.SyncedLexicalIndex`` the searcher uses."""

    @property
    def sequence(self) -> int: ...

    @property
    def ntotal(self) -> int: ...

    def catch_up(self) -> int: ...

    def search(
        self, queries: list[str], k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def snapshot(self) -> None: ...

    def close(self) -> None: ...


class CollectionLister(Protocol):
    def list_collections(self) -> list[CollectionInfo]: ...


IndexOpener = Callable[[CollectionInfo], LiveIndex]
LexicalOpener = Callable[[CollectionInfo], LiveLexicalIndex]


@dataclass(frozen=True)
class IndexStatus:
    """How far this server's indexes of one collection are: zeros for one not open (yet)."""

    sequence: int = 0
    vectors: int = 0
    lexical_sequence: int = 0
    lexical_chunks: int = 0


@dataclass
class _Entry:
    info: CollectionInfo
    index: LiveIndex
    lexical: LiveLexicalIndex | None = None
    changes_since_snapshot: int = 0


class LiveIndexes:
    """The open index of every collection, kept fresh from the change log. Use from one event loop."""

    def __init__(
        self,
        store: CollectionLister,
        open_index: IndexOpener,
        executor: Executor,
        *,
        poll_interval_s: float,
        snapshot_every_changes: int,
        open_lexical: LexicalOpener | None = None,
    ) -> None:
        self._store = store
        self._open_index = open_index
        self._open_lexical = open_lexical
        self._run = BlockingCalls(executor)
        self._poll_interval_s = poll_interval_s
        self._snapshot_every = snapshot_every_changes
        self._entries: dict[int, _Entry] = {}
        self._opening: dict[int, asyncio.Task[_Entry]] = {}
        # Set by ``stop`` on the loop, read by opens in the executor too (a bool: atomic under the GIL).
        self._stopping = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def get(self, info: CollectionInfo) -> LiveIndex:
        """The index of ``info``, opened (snapshot + replay) on first use."""
        return (await self._entry(info)).index

    async def get_lexical(self, info: CollectionInfo) -> LiveLexicalIndex:
        """The lexical index of ``info``; ``IndexNotReady`` when this server keeps none."""
        lexical = (await self._entry(info)).lexical
        if lexical is None:
            raise IndexNotReady(f"collection {info.name!r}: this server keeps no lexical index")
        return lexical

    async def _entry(self, info: CollectionInfo) -> _Entry:
        entry = self._entries.get(info.id)
        if entry is not None:
            return entry
        task = self._opening.get(info.id)
        if task is None:
            self._refuse_if_stopping(info)
            task = asyncio.get_running_loop().create_task(self._open(info), name=f"open {info.name!r}")
            self._opening[info.id] = task
        return await asyncio.shield(task)

    async def _open(self, info: CollectionInfo) -> _Entry:
        try:
            entry = await self._run(self._open_entry, info)
            self._entries[info.id] = entry
            return entry
        finally:
            self._opening.pop(info.id, None)

    def _open_entry(self, info: CollectionInfo) -> _Entry:
        """Both indexes of ``info``, in one executor call: an open never needs the executor again
        once ``stop`` may have begun, and one still queued when it begins is refused, not run."""
        self._refuse_if_stopping(info)
        index = self._open_index(info)
        lexical = self._open_lexical(info) if self._open_lexical else None
        return _Entry(info, index, lexical)

    def _refuse_if_stopping(self, info: CollectionInfo) -> None:
        if self._stopping:
            raise IndexNotReady(f"collection {info.name!r}: {SHUTTING_DOWN}")

    def status(self, info: CollectionInfo) -> IndexStatus:
        """Sequences applied and sizes of this server's indexes of ``info``."""
        entry = self._entries.get(info.id)
        if entry is None:
            return IndexStatus()
        lexical = entry.lexical
        return IndexStatus(
            entry.index.sequence,
            entry.index.ntotal,
            lexical.sequence if lexical else 0,
            lexical.ntotal if lexical else 0,
        )

    def vector_counts(self) -> dict[str, int]:
        """Vectors held per collection name. Safe from another thread (a metrics scrape): it
        reads a copy of the open indexes, taken atomically under the GIL."""
        return {entry.info.name: entry.index.ntotal for entry in dict(self._entries).values()}

    async def start(self) -> None:
        """Open every existing collection's index, then start tailing the log."""
        await self.refresh()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    def wake(self) -> None:
        """Ask for a refresh now (a local write just committed)."""
        self._wake.set()

    async def refresh(self) -> None:
        """One round: open new collections, forget dropped ones, apply new changes."""
        infos = await self._run(self._store.list_collections)
        current = {info.id: info for info in infos}
        for collection_id in set(self._entries) - set(current):
            log.info("collection %r was dropped: closing its index", self._entries[collection_id].info.name)
            dropped = self._entries.pop(collection_id)
            if dropped.lexical is not None:
                await self._run(dropped.lexical.close)
        for collection_id, info in current.items():
            if collection_id not in self._entries:
                await self.get(info)
            else:
                await self._catch_up(self._entries[collection_id])

    async def _catch_up(self, entry: _Entry) -> None:
        if entry.lexical is not None:
            await self._run(entry.lexical.catch_up)  # commits as it goes: nothing to snapshot
        applied = await self._run(entry.index.catch_up)
        entry.changes_since_snapshot += applied
        if entry.changes_since_snapshot >= self._snapshot_every:
            await self._run(entry.index.snapshot)
            entry.changes_since_snapshot = 0

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()
            try:
                await self.refresh()
            except CollectionNotFound:
                continue  # dropped mid-round: the next round forgets it
            except AlbatrossError as error:
                log.warning("index refresh failed, retrying next round: %s", error)
            except Exception:
                log.exception("index refresh failed, retrying next round")

    async def stop(self) -> None:
        """Stop tailing, let the opens in flight finish, and snapshot every open index."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._settle_opens()
        for entry in list(self._entries.values()):
            try:
                # Catch up first: the final snapshot then covers every write drained on shutdown.
                await self._run(entry.index.catch_up)
                await self._run(entry.index.snapshot)
                if entry.lexical is not None:
                    await self._run(entry.lexical.catch_up)
                    await self._run(entry.lexical.close)
            except CollectionNotFound:
                log.info("collection %r was dropped: no final snapshot", entry.info.name)
            except Exception:
                log.exception("final snapshot of %r failed", entry.info.name)

    async def _settle_opens(self) -> None:
        """Wait for the opens in flight, with no bound of our own: one running in a thread cannot
        be interrupted, and the executor's shutdown would wait for it anyway, so its index is kept
        and snapshotted; one still queued ends at once, refused. Each outcome is retrieved here,
        as nobody else may await it (a cancelled poll round, a request cut off by the grace)."""
        opening = list(self._opening.values())
        if not opening:
            return
        await asyncio.wait(opening)
        for task in opening:
            error = None if task.cancelled() else task.exception()
            if error is not None and not (isinstance(error, IndexNotReady) and SHUTTING_DOWN in str(error)):
                log.warning("an index still opening at shutdown did not open: %s", error)
