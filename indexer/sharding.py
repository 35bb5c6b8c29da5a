"""Which shard of a collection a chunk belongs to (pure functions, no I/O).

A sharded searcher holds only the chunks whose id hashes to its shard; a router asks every shard
and merges their answers (``searcher.router``). Shards are chosen by a hash of the **chunk id**:

- the chunk id is all the change log and the vector pages carry, so a shard decides what to keep
  without an extra SQL lookup per replayed page (a document key would need a join per page);
- chunk ids are never reused, so a chunk never moves between shards, and a re-embedded document's
  new chunks simply land wherever their new ids hash to;
- vectors, not documents, fill memory: hashing chunks balances memory even when documents have
  very different chunk counts.

The price is that one document's chunks can live on several shards, so several shards may return
the same document: the router keeps its best score, which is exactly what an unsharded searcher
reports (a document scores what its best chunk scores).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from indexer.errors import InvalidArgument

# splitmix64's finaliser: consecutive ids (one document's chunks) spread evenly over the shards.
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)

ChunkFilter = Callable[[np.ndarray], np.ndarray]
"""int64 chunk ids (n,) -> bool (n,): which of them this index holds."""


def shard_of(chunk_ids: np.ndarray, shard_count: int) -> np.ndarray:
    """chunk_ids: int64 (n,) -> the shard of each, int64 (n,) in ``[0, shard_count)``."""
    x = np.asarray(chunk_ids, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x = x ^ (x >> np.uint64(31))
    return (x % np.uint64(shard_count)).astype(np.int64)


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` of ``count``; ``ShardSpec(1, 0)`` is the whole collection."""

    count: int = 1
    index: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InvalidArgument(f"shard count must be at least 1, got {self.count}", field="shard_count")
        if not 0 <= self.index < self.count:
            raise InvalidArgument(
                f"shard index must be in [0, {self.count}), got {self.index}", field="shard_index"
            )

    @property
    def whole(self) -> bool:
        return self.count == 1

    @property
    def name(self) -> str:
        """A folder name for this shard's snapshots: a shard's index must never load another's."""
        return f"shard-{self.index}-of-{self.count}"

    def keeps(self, chunk_ids: np.ndarray) -> np.ndarray:
        """int64 (n,) -> bool (n,): the chunks this shard holds."""
        return shard_of(chunk_ids, self.count) == self.index

    def chunk_filter(self) -> ChunkFilter | None:
        """The predicate ``SyncedIndex`` applies to what it adds; None for the whole collection."""
        return None if self.whole else self.keeps
