"""Filtered dense search: how a metadata filter is applied, and the cache of the chunk ids it allows.

Two plans answer a filter:

- **pre-filter**: SQL lists every chunk the filter allows and the index searches among them
  (``VectorIndex.search(..., allowed_ids)``: an id selector, exact search for small sets). It is
  exact about the filter at any selectivity, but the listing costs in proportion to what it
  allows: about 2 s for a filter that allows all of 1,000,000 chunks (``bench/filtered.py``).
- **post-filter**: the index searches the whole collection ``MARGIN / share`` times deeper than
  asked, and SQL checks only those candidates (``Store.chunk_ids_matching(..., among=...)``, a
  primary-key lookup each). Its cost grows with 1 / share, so it is the plan for broad filters.

The share is estimated per (collection, filter) from ``SHARE_SAMPLE`` ids drawn from the index
and checked in one SQL query, as Qdrant estimates a filter's cardinality before choosing between
its payload index and a filtered graph search. A filter that allows few chunks (a few of the
sample, or at most ``EXACT_SEARCH_MAX`` chunks in all, which are searched exactly) is
pre-filtered; a broad one is post-filtered unless its depth would pass ``MAX_DEPTH``. A
post-filtered query whose candidates hold fewer allowed chunks than asked for (the sample
misjudged the share, or the filter correlates with the query) is answered again pre-filtered, so
a search returns k hits whenever k exist.

Listings are kept in ``AllowedIdsCache``, keyed by the collection's ``Store.filter_version``,
which moves with every add, remove and metadata-only update, so a listing is never used for a
state of the documents it was not computed from. Estimates only choose plans, so they are kept
until the collection has grown or shrunk by ``ESTIMATE_DRIFT`` or a post-filter search had to
be answered again; a collection of at most ``EXACT_SEARCH_MAX`` chunks is never sampled. The
cache is bounded by the ids it holds.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np

from indexer.config import ServerConfig
from indexer.index import EXACT_SEARCH_MAX
from indexer.records import MetadataFilter

# Ids drawn from the index to estimate a filter's share: one SQL query of this many key lookups.
SHARE_SAMPLE = 256
# Fewer sampled ids than this passing, and the share is too small (or too uncertain) to search
# the whole collection for it: the listing is short anyway.
MIN_SAMPLED_PASSING = 8
# Post-filter depth = wanted chunks x MARGIN / share, so that the candidates hold about twice
# what is wanted when the share is right.
MARGIN = 2.0
# Past this depth a post-filter search costs more than listing what the filter allows.
MAX_DEPTH = 4096
# An estimate is sampled again once the collection has grown or shrunk by this share.
ESTIMATE_DRIFT = 0.25


class Plan(Enum):
    PRE_FILTER = "pre-filter"
    POST_FILTER = "post-filter"


class FilterStore(Protocol):
    """The part of ``indexer.store.Store`` filtering needs."""

    def chunk_ids_matching(
        self, collection_id: int, metadata_filter: MetadataFilter, among: np.ndarray | None = None
    ) -> np.ndarray: ...

    def filter_version(self, collection_id: int) -> tuple[int, int]: ...


class SearchableIndex(Protocol):
    @property
    def ntotal(self) -> int: ...

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def sample_ids(self, count: int, rng: np.random.Generator) -> np.ndarray: ...


@dataclass(frozen=True)
class Estimate:
    """What a sample says of a filter: the share of the ``ntotal`` chunks it allows."""

    share: float
    sampled: int
    passing: int
    ntotal: int

    def still_fits(self, ntotal: int) -> bool:
        """Whether it may still choose plans for an index of ``ntotal`` chunks."""
        return abs(ntotal - self.ntotal) <= ESTIMATE_DRIFT * self.ntotal


def choose_plan(estimate: Estimate, ntotal: int, wanted: int) -> tuple[Plan, int]:
    """(plan, post-filter depth) for a search of ``wanted`` chunks among ``ntotal`` (pure)."""
    if estimate.passing < MIN_SAMPLED_PASSING or estimate.share * ntotal <= EXACT_SEARCH_MAX:
        return Plan.PRE_FILTER, 0
    depth = min(ntotal, math.ceil(wanted * MARGIN / estimate.share))
    if depth > MAX_DEPTH:
        return Plan.PRE_FILTER, 0
    return Plan.POST_FILTER, depth


def keep_allowed(
    scores: np.ndarray, ids: np.ndarray, allowed: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The allowed entries of each row in their order, cut or padded (-inf, -1) to ``width``;
    also how many allowed entries each row had (pure)."""
    ok = (ids >= 0) & np.isin(ids, allowed)
    counts = ok.sum(axis=1)
    # A stable sort on "not ok" moves the allowed entries to the front, keeping their order.
    order = np.argsort(~ok, axis=1, kind="stable")[:, :width]
    kept_ids = np.take_along_axis(np.where(ok, ids, -1), order, 1)
    kept_scores = np.take_along_axis(np.where(ok, scores, -np.inf), order, 1).astype(np.float32)
    if kept_ids.shape[1] < width:
        pad = width - kept_ids.shape[1]
        kept_ids = np.pad(kept_ids, ((0, 0), (0, pad)), constant_values=-1)
        kept_scores = np.pad(kept_scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return kept_scores, kept_ids, counts


class AllowedIdsCache:
    """Least-recently-used (key -> value) entries, bounded by the ids their values hold."""

    def __init__(self, max_ids: int = ServerConfig.filter_cache_ids) -> None:
        self._max_ids = max_ids
        self._entries: OrderedDict[tuple[object, ...], tuple[Estimate | np.ndarray, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(
        self,
        key: tuple[object, ...],
        compute: Callable[[], Estimate | np.ndarray],
        still_good: Callable[[Estimate | np.ndarray], bool] | None = None,
    ) -> Estimate | np.ndarray:
        """The entry of ``key`` (if ``still_good`` says so of it), else ``compute()``, kept."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (still_good is None or still_good(entry[0])):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]
            self.misses += 1
        if entry is not None:
            self.discard(key)
        value = compute()  # outside the lock: a listing can take seconds
        size = value.size if isinstance(value, np.ndarray) else 1
        if size > self._max_ids:
            return value
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (value, size)
                self._held += size
            while self._held > self._max_ids:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._held -= dropped
        return value

    def discard(self, key: tuple[object, ...]) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is not None:
                self._held -= entry[1]

    @property
    def held_ids(self) -> int:
        return self._held


def _share_key(collection_id: int, metadata_filter: MetadataFilter) -> tuple[object, ...]:
    # Not under the documents' version: an estimate only chooses a plan (a stale one costs time,
    # never an answer), and sampling at every write of a busy collection would cost more.
    return (collection_id, _filter_key(metadata_filter), "share")


def _filter_key(metadata_filter: MetadataFilter) -> str:
    # repr, not the dataclass itself: Condition(equals=1) == Condition(equals=True) in Python,
    # and those two filters match different documents.
    return repr(metadata_filter)


class FilteredSearch:
    """Chooses a plan per filter and answers chunk searches under it (blocking)."""

    def __init__(self, store: FilterStore, cache: AllowedIdsCache, seed: int = 0) -> None:
        self._store = store
        self._cache = cache
        self._rng = np.random.default_rng(seed)
        self._rng_lock = threading.Lock()

    def allowed(self, collection_id: int, metadata_filter: MetadataFilter) -> np.ndarray:
        """Every chunk id the filter allows, ascending (from the cache while the documents are
        as they were)."""
        key = (collection_id, self._store.filter_version(collection_id), _filter_key(metadata_filter), "ids")
        value = self._cache.get_or_compute(
            key, lambda: self._store.chunk_ids_matching(collection_id, metadata_filter)
        )
        assert isinstance(value, np.ndarray)
        return value

    def search(
        self,
        collection_id: int,
        index: SearchableIndex,
        queries: np.ndarray,
        fetch: int,
        metadata_filter: MetadataFilter,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``index.search(queries, fetch, allowed)`` for the chunks the filter allows:
        (scores float32 (nq, w), ids int64 (nq, w)), -1 padded, best first."""
        plan, depth = self.plan(collection_id, index, metadata_filter, fetch)
        if plan is Plan.PRE_FILTER:
            return index.search(queries, fetch, self.allowed(collection_id, metadata_filter))
        scores, ids = index.search(queries, depth)
        candidates = np.unique(ids[ids >= 0])
        passing = self._store.chunk_ids_matching(collection_id, metadata_filter, among=candidates)
        scores, ids, counts = keep_allowed(scores, ids, passing, fetch)
        short = np.flatnonzero(counts < fetch)
        if short.size and depth < index.ntotal:
            # Fewer allowed candidates than asked for, and the index was not searched through:
            # more allowed chunks may exist, so these queries are answered pre-filtered.
            self._cache.discard(_share_key(collection_id, metadata_filter))  # sample it afresh
            again_scores, again_ids = index.search(
                queries[short], fetch, self.allowed(collection_id, metadata_filter)
            )
            width = again_ids.shape[1]
            scores[short], ids[short] = -np.inf, -1
            scores[short, :width], ids[short, :width] = again_scores, again_ids
        return _trim(scores, ids)

    def plan(
        self, collection_id: int, index: SearchableIndex, metadata_filter: MetadataFilter, wanted: int
    ) -> tuple[Plan, int]:
        """(plan, post-filter depth) for ``wanted`` chunks under the filter."""
        ntotal = index.ntotal
        if ntotal <= EXACT_SEARCH_MAX:
            return Plan.PRE_FILTER, 0  # whatever it allows is searched exactly: no sample needed
        estimate = self._cache.get_or_compute(
            _share_key(collection_id, metadata_filter),
            lambda: self._estimate(collection_id, index, metadata_filter),
            lambda cached: isinstance(cached, Estimate) and cached.still_fits(ntotal),
        )
        assert isinstance(estimate, Estimate)
        return choose_plan(estimate, ntotal, wanted)

    def _estimate(
        self, collection_id: int, index: SearchableIndex, metadata_filter: MetadataFilter
    ) -> Estimate:
        with self._rng_lock:
            sample = index.sample_ids(SHARE_SAMPLE, self._rng)
        ntotal = index.ntotal
        if sample.size == 0:
            return Estimate(share=0.0, sampled=0, passing=0, ntotal=ntotal)
        passing_ids = self._store.chunk_ids_matching(collection_id, metadata_filter, among=sample)
        passing = int(np.isin(sample, passing_ids).sum())
        return Estimate(share=passing / sample.size, sampled=int(sample.size), passing=passing, ntotal=ntotal)


def _trim(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the columns no row fills, as ``VectorIndex.search`` does."""
    width = int((ids >= 0).sum(axis=1).max()) if ids.size else 0
    return scores[:, :width], ids[:, :width]
