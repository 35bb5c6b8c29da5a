"""Reading the SQL change log the way a derived index replays it: what the FAISS index
(``indexer.sync``) and the lexical index (``indexer.lexical_sync``) share.

Replay is idempotent in both (an ADD of an id already held replaces or skips it, a REMOVE of an
absent id does nothing) and chunk ids are never reused, so a page only needs splitting into the
ids to add and the ids to remove; applying the adds before the removes is the one order that
matters (docs/ARCHITECTURE.md, Invariants 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from indexer.records import ChangeOp, CollectionInfo
from indexer.sharding import ChunkFilter
from indexer.store import Store


class Replayed:
    """What a derived index kept by replay tells of itself: whose it is and how far it has
    applied the log (``SyncedIndex`` and ``SyncedLexicalIndex`` set ``_info`` and ``_sequence``)."""

    _info: CollectionInfo
    _sequence: int

    @property
    def info(self) -> CollectionInfo:
        return self._info

    @property
    def sequence(self) -> int:
        """The last change-log sequence applied to the index (and, for the lexical one, committed)."""
        return self._sequence


@dataclass(frozen=True)
class ChangePage:
    """One page of the change log: ``adds`` and ``removes`` int64 chunk ids, ``sequence`` the
    last entry's (the index's position once the page is applied), ``entries`` how many it held."""

    adds: np.ndarray
    removes: np.ndarray
    sequence: int
    entries: int


def pages_after(
    store: Store, collection_id: int, sequence: int, page: int, keep: ChunkFilter | None = None
) -> Iterator[ChangePage]:
    """The changes after ``sequence``, ``page`` entries at a time, until the log's head.

    Lazy: each page is read only once the caller asks for it, so changes committed while the
    previous page was being applied are seen. With ``keep``, adds of another shard's chunks are
    dropped here, before their vectors or texts are fetched; removes are kept (a no-op there)."""
    while True:
        changes = store.changes_since(collection_id, sequence, page)
        if not changes:
            return
        adds = np.array([c.chunk_id for c in changes if c.op is ChangeOp.ADD], dtype=np.int64)
        if keep is not None:
            adds = adds[keep(adds)]
        removes = np.array([c.chunk_id for c in changes if c.op is ChangeOp.REMOVE], dtype=np.int64)
        sequence = changes[-1].sequence
        yield ChangePage(adds=adds, removes=removes, sequence=sequence, entries=len(changes))
