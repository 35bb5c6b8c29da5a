"""The FAISS index of one collection: the only module that imports faiss.

A collection's index spec is a FAISS factory string, optionally followed by ``;`` and FAISS
``ParameterSpace`` search settings, e.g. ``"IVF1024,PQ48x4fs,RFlat;nprobe=64,k_factor_rf=32"``.
The settings are part of the spec because an approximate index is only as good as the settings
it is searched with: FAISS's defaults (nprobe 1, efSearch 16, no re-ranking depth) cost IVF-PQ
most of its recall (measured in ``bench/index.py``). They are applied every time an index is
created or loaded, so a snapshot never brings back different settings. Reading a spec string
(parsing, GPU placement, training needs) is pure and lives in ``indexer.index_spec``.

``VectorIndex`` wraps ``IndexIDMap2(index_factory(d, spec, METRIC_INNER_PRODUCT))`` so FAISS ids
are the SQL chunk ids (int64). Scores are inner products: cosine similarity for unit vectors.

Not thread-safe: FAISS indexes are not safe for concurrent add + search, so the owner
(``indexer.sync.SyncedIndex``) holds a lock around every call.

Removal: only indexes whose codes sit in one flat array (Flat, PQ, SQ) remove ids for real: when
they remove, later vectors shift down, which is what ``IndexIDMap2`` assumes when it compacts its
id map. Graph indexes (HNSW, NSG) cannot remove at all, and IVF removes without shifting, so inside
``IndexIDMap2`` it returns wrong ids afterwards (seen with faiss 1.15: every id off by the number
removed). For those, removed ids become tombstones, masked at search time and dropped for good when
the index is rebuilt from SQL.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Iterator
from contextlib import contextmanager

import faiss
import numpy as np

from indexer.errors import IndexNotReady, InvalidArgument, InvalidCollectionSpec, SnapshotCorrupt
from indexer.index_spec import IndexSpec, gpu_placement, parse_index_spec
from indexer.spec import check_dimension

# Framing of ``to_bytes``: magic, then the length of the FAISS blob, the blob, then the tombstones.
_MAGIC = b"ALBVIDX1"
_HEADER = struct.Struct("<8sQ")
# Widest HNSW candidate list a filtered or deletion-heavy search may use (see _search_parameters).
_MAX_EF_SEARCH = 4096
# Over-fetch cap multiplier for index types without an id selector (see ``_search_overfetch``).
_OVERFETCH_GROWTH = 4
# A filtered IVF search probes lists expected to hold this many times k allowed vectors.
_FILTER_PROBE_FACTOR = 4
# A filter that allows at most this many vectors is answered by exact search over them (see
# ``_search_exactly``), as Qdrant's full-scan threshold and Weaviate's flat-search cut-off do.
EXACT_SEARCH_MAX = 10_000


def _apply_search_settings(index: faiss.Index, spec: IndexSpec, text: str) -> None:
    """Set ``spec``'s search settings on the (CPU) index inside the id map."""
    space = faiss.ParameterSpace()
    for name, value in spec.search:
        try:
            space.set_index_parameter(index, name, value)
        except RuntimeError as exc:
            raise InvalidCollectionSpec(
                f"index spec {text!r}: FAISS has no search setting {name!r} for this index type "
                f"({exc})".replace("\n", " "),
                field="index_spec",
            ) from exc


def validate_index_spec(spec: str, dimension: int) -> None:
    """Raise ``InvalidCollectionSpec`` unless ``spec`` builds an index of ``dimension`` whose
    search settings FAISS accepts (cheap: nothing is trained)."""
    VectorIndex.create(spec, dimension)


def _to_gpu_if_useful(index: faiss.Index, index_spec: str) -> tuple[faiss.Index, object | None]:
    """Move ``index`` to GPU 0 when ``gpu_placement`` says so; returns (index, GPU resources).

    Only the decision (``gpu_placement``) is tested: the move itself needs faiss-gpu and a GPU.
    """
    gpu_support = hasattr(faiss, "StandardGpuResources")
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if not gpu_placement(index_spec, gpu_support, gpus):
        return index, None
    resources = faiss.StandardGpuResources()
    return faiss.index_cpu_to_gpu(resources, 0, index), resources


def _removes_by_shifting(index: faiss.Index) -> bool:
    """True for flat-code indexes, whose ``remove_ids`` keeps IndexIDMap2's id map right."""
    return isinstance(faiss.downcast_index(index), faiss.IndexFlatCodes)


def _accepts_selector(index: faiss.Index) -> bool:
    """Index types whose search takes an id selector (in their own SearchParameters type)."""
    return isinstance(faiss.downcast_index(index), faiss.IndexHNSW | faiss.IndexIVF | faiss.IndexFlat)


def _ivf_inside(index: faiss.Index) -> faiss.IndexIVF | None:
    """The IVF index inside ``index`` (bare, under a refine or a pre-transform), None if none."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


@contextmanager
def _probing(ivf: faiss.IndexIVF, nprobe: int) -> Iterator[None]:
    """``ivf`` searches ``nprobe`` lists inside the block (callers hold the index's lock, as for
    every search: FAISS indexes are not safe for concurrent use anyway)."""
    before = ivf.nprobe
    ivf.nprobe = nprobe
    try:
        yield
    finally:
        ivf.nprobe = before


def _search_parameters(
    index: faiss.Index, selector: faiss.IDSelector, k: int, selected_fraction: float
) -> faiss.SearchParameters:
    """Parameters of the subclass ``index`` insists on, carrying its current search settings:
    a bare SearchParametersHNSW would silently reset efSearch to its default, IVF's nprobe too.

    HNSW walks its graph through excluded nodes without counting them as candidates, so when only
    ``selected_fraction`` of the vectors may be returned (deletions, filters) its candidate list
    is widened by the inverse of that fraction (capped): with 90% of a collection deleted,
    efSearch 16 otherwise missed exact matches in the crash harness.
    """
    inner = faiss.downcast_index(index)
    if isinstance(inner, faiss.IndexHNSW):
        widened = int(max(inner.hnsw.efSearch, k) / max(selected_fraction, 1e-9))
        ef = min(max(inner.hnsw.efSearch, k, widened), _MAX_EF_SEARCH)
        return faiss.SearchParametersHNSW(sel=selector, efSearch=ef)
    if isinstance(inner, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=inner.nprobe)
    return faiss.SearchParameters(sel=selector)


def _check_ids(ids: np.ndarray, name: str = "ids") -> np.ndarray:
    if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype != np.int64:
        raise InvalidArgument(f"{name} must be an int64 array of shape (n,)", field=name)
    return np.ascontiguousarray(ids)


def _check_vectors(vectors: np.ndarray, dimension: int, name: str = "vectors") -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 or vectors.ndim != 2:
        raise InvalidArgument(f"{name} must be a float32 array of shape (n, {dimension})", field=name)
    if vectors.shape[1] != dimension:
        raise InvalidArgument(
            f"{name} have dimension {vectors.shape[1]}, the index has {dimension}", field=name
        )
    if not np.isfinite(vectors).all():
        raise InvalidArgument(f"{name} contain NaN or infinite values", field=name)
    return np.ascontiguousarray(vectors)


class VectorIndex:
    """FAISS ids = SQL chunk ids. Not thread-safe (the owner locks)."""

    def __init__(self, index: faiss.IndexIDMap2, spec: str, tombstones: np.ndarray | None = None) -> None:
        self._index = index
        self._spec = spec
        self._tombstoning = not _removes_by_shifting(index.index)
        self._tombstones: set[int] = set() if tombstones is None else {int(i) for i in tombstones}
        self._sorted_ids: np.ndarray | None = None  # cache of every stored id, tombstoned included
        self._max_id = -1
        self._gpu_resources: object | None = None
        # Vectors the trained parts (IVF lists, PQ codebooks) were fitted on; None when unknown
        # (a snapshot written before this was recorded) or when nothing was trained.
        self.trained_on: int | None = None

    @classmethod
    def create(cls, spec: str, dimension: int) -> VectorIndex:
        """An empty index of ``spec``: a FAISS factory string ("Flat", "HNSW32", "IVF64,Flat"),
        optionally with search settings ("HNSW32;efSearch=64", see the module docstring)."""
        check_dimension(dimension)
        parsed = parse_index_spec(spec)
        if re.match(r"\s*IDMap", parsed.factory, flags=re.IGNORECASE):
            raise InvalidCollectionSpec(
                f"index spec {spec!r}: leave out IDMap, ids are always mapped", field="index_spec"
            )
        try:
            inner = faiss.index_factory(dimension, parsed.factory, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise InvalidCollectionSpec(
                f"index spec {spec!r} is not a valid FAISS factory string: {exc}", field="index_spec"
            ) from exc
        _apply_search_settings(inner, parsed, spec)
        vector_index = cls(faiss.IndexIDMap2(inner), spec)
        vector_index._place()
        return vector_index

    def _place(self) -> None:
        placed, resources = _to_gpu_if_useful(self._index, self._spec)
        self._index, self._gpu_resources = placed, resources

    # -- facts ----------------------------------------------------------------------------------

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def dimension(self) -> int:
        return int(self._index.d)

    @property
    def needs_training(self) -> bool:
        return not self._index.is_trained

    @property
    def ntotal(self) -> int:
        """Live vectors (tombstoned ones excluded)."""
        return int(self._index.ntotal) - len(self._tombstones)

    def _stored_ids(self) -> np.ndarray:
        """Every id physically in the index, sorted (cached until the next mutation)."""
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(faiss.vector_to_array(self._index.id_map).astype(np.int64))
            self._max_id = int(self._sorted_ids[-1]) if self._sorted_ids.size else -1
        return self._sorted_ids

    def _stored(self, ids: np.ndarray) -> np.ndarray:
        """bool (n,): which ids are physically stored (live or tombstoned)."""
        stored = self._stored_ids()
        if ids.size == 0 or stored.size == 0:
            return np.zeros(ids.shape, dtype=bool)
        positions = np.clip(np.searchsorted(stored, ids), 0, stored.size - 1)
        return stored[positions] == ids

    @property
    def tombstones(self) -> int:
        """Removed ids still physically stored (masked at search until a rebuild)."""
        return len(self._tombstones)

    def contains(self, ids: np.ndarray, *, include_removed: bool = False) -> np.ndarray:
        """bool (n,): which of ``ids`` (int64 (n,)) are live in the index (or, with
        ``include_removed``, physically stored even if tombstoned: ``add`` refuses those)."""
        ids = _check_ids(ids)
        live = self._stored(ids)
        if self._tombstones and not include_removed:
            live &= ~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
        return live

    def ids(self) -> np.ndarray:
        """Live ids, int64 (ntotal,), ascending."""
        stored = self._stored_ids()
        if not self._tombstones:
            return stored.copy()
        return stored[~np.isin(stored, np.fromiter(self._tombstones, dtype=np.int64))]

    def sample_ids(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """About ``count`` live ids drawn at random (with replacement), int64; every live id when
        there are no more than ``count``."""
        stored = self._stored_ids()
        if stored.size <= count:
            return self.ids()
        picked = stored[rng.integers(0, stored.size, count)]
        if self._tombstones:
            picked = picked[~np.isin(picked, np.fromiter(self._tombstones, dtype=np.int64))]
        return picked

    # -- mutation -------------------------------------------------------------------------------

    def train(self, vectors: np.ndarray) -> None:
        """Train on float32 (n, d) vectors (IVF/PQ need this before ``add``)."""
        vectors = _check_vectors(vectors, self.dimension)
        try:
            self._index.train(vectors)
        except RuntimeError as exc:
            raise InvalidArgument(
                f"cannot train {self._spec!r} on {len(vectors)} vectors: {exc}", field="vectors"
            ) from exc
        self.trained_on = len(vectors)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add ``vectors`` float32 (n, d) under ``ids`` int64 (n,); ids must be new and distinct."""
        ids = _check_ids(ids)
        vectors = _check_vectors(vectors, self.dimension)
        if len(ids) != len(vectors):
            raise InvalidArgument(f"{len(ids)} ids for {len(vectors)} vectors", field="ids")
        if self.needs_training:
            raise IndexNotReady(f"index {self._spec!r} must be trained before vectors are added")
        if len(np.unique(ids)) != len(ids):
            raise InvalidArgument("ids contain duplicates", field="ids")
        # Fast path: chunk ids only grow, so ids above the largest stored one are new.
        self._stored_ids()
        maybe_old = ids[ids <= self._max_id]
        if maybe_old.size and self._stored(maybe_old).any():
            raise InvalidArgument("some ids are already in the index", field="ids")
        if ids.size == 0:
            return
        self._index.add_with_ids(vectors, ids)
        self._sorted_ids = None

    def remove(self, ids: np.ndarray) -> int:
        """Remove ``ids`` int64 (n,); unknown ids are ignored. Returns how many live ids went."""
        ids = _check_ids(ids)
        present = np.unique(ids[self.contains(ids)])
        if present.size == 0:
            return 0
        if self._tombstoning or self._gpu_resources is not None:
            # See the module docstring; GPU indexes are treated the same to stay simple.
            self._tombstones.update(int(i) for i in present)
            return int(present.size)
        removed = int(self._index.remove_ids(faiss.IDSelectorBatch(present)))
        self._sorted_ids = None
        return removed

    # -- search ---------------------------------------------------------------------------------

    def search(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by inner product for ``queries`` float32 (nq, d).

        Returns ``(scores float32 (nq, k'), ids int64 (nq, k'))``, best first, trimmed: k' <= k is
        the largest number of results any query got, so FAISS's all -1 columns are dropped (an
        empty index gives k' = 0). A row with fewer results than k' (HNSW/IVF can miss, filters
        can exclude) is padded with id -1 and score -inf at its end, so callers keep ``ids >= 0``.
        Tombstoned ids never appear; with ``allowed_ids`` (int64 (m,)) only those can.
        """
        queries = _check_vectors(queries, self.dimension, name="queries")
        if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
            raise InvalidArgument(f"k must be a positive integer, got {k!r}", field="k")
        if allowed_ids is not None:
            allowed_ids = _check_ids(allowed_ids, name="allowed_ids")
        if self.needs_training:
            raise IndexNotReady(f"index {self._spec!r} is not trained yet")
        k_eff = min(k, max(self.ntotal, 0))
        if k_eff == 0 or len(queries) == 0 or (allowed_ids is not None and allowed_ids.size == 0):
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        if allowed_ids is not None and allowed_ids.size <= EXACT_SEARCH_MAX:
            exact = self._search_exactly(queries, k_eff, allowed_ids)
            if exact is not None:
                return _trim(*exact)
        distances, labels = self._search_once(queries, k_eff, allowed_ids)
        if allowed_ids is not None:
            distances, labels = self._probe_wider_until_k(queries, k_eff, allowed_ids, distances, labels)
        return _trim(distances, labels)

    def _search_exactly(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Exact top-k among a few allowed vectors, None where the index cannot give its vectors
        back (IVF without a direct map).

        A graph or IVF search restricted to a small set reaches few of its members: at 0.1% of
        20,000 vectors HNSW32 missed 1 in 100 true neighbours and IVF-PQ probed every list, 14x
        its unfiltered latency (``bench/filtered.py``). Reading the allowed vectors back and
        scoring them all costs m x d per query and finds every one."""
        live = np.unique(allowed_ids[self.contains(allowed_ids)])
        if live.size == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        try:
            vectors = self._index.reconstruct_batch(live)
        except RuntimeError:
            return None
        scores = queries @ vectors.T
        width = min(k, live.size)
        top = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        top = np.take_along_axis(
            top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1
        )
        return np.take_along_axis(scores, top, 1).astype(np.float32), live[top]

    def _search_once(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed_ids is None and not self._tombstones:
            return self._index.search(queries, k)
        if _accepts_selector(self._index.index):
            return self._search_selected(queries, k, allowed_ids)
        return self._search_overfetch(queries, k, allowed_ids)

    def _probe_wider_until_k(
        self,
        queries: np.ndarray,
        k: int,
        allowed_ids: np.ndarray,
        distances: np.ndarray,
        labels: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filtered IVF search only sees the ``nprobe`` lists nearest a query: with a selective
        filter they hold few allowed vectors, so it returned fewer than k hits though k existed
        (9 of 10 at 0.5% selectivity), and the hits it found were not the best allowed ones.

        The lists probed are widened so that they are expected to hold ``_FILTER_PROBE_FACTOR``
        times k allowed vectors (allowed vectors spread over the lists: nprobe/nlist of them are
        seen), then 4x more for the queries still short, up to every list, where every allowed
        vector is seen. A filter that lets through most of the collection changes nothing, and
        unfiltered queries never pay for it."""
        ivf = _ivf_inside(self._index.index)
        if ivf is None:
            return distances, labels
        nlist, nprobe = int(ivf.nlist), int(ivf.nprobe)
        allowed = int(self.contains(allowed_ids).sum())
        wanted = min(k, allowed)
        needed = min(nlist, math.ceil(nlist * _FILTER_PROBE_FACTOR * k / max(allowed, 1)))
        redo = np.ones(len(queries), bool) if needed > nprobe else (labels >= 0).sum(axis=1) < wanted
        nprobe = max(nprobe, needed)
        while redo.any():
            with _probing(ivf, nprobe):
                again = self._search_once(queries[redo], k, allowed_ids)
            distances, labels = distances.copy(), labels.copy()
            distances[redo], labels[redo] = again
            if nprobe >= nlist:
                break
            redo = (labels >= 0).sum(axis=1) < wanted
            nprobe = min(nlist, nprobe * _OVERFETCH_GROWTH)
        return distances, labels

    def _search_selected(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search with an id selector: allowed ids (if given) that are not tombstones.

        ``keep`` holds every selector until the search returns: FAISS's combined selectors hold
        raw pointers to their parts, and Python would otherwise free them early.
        """
        keep: list[faiss.IDSelector] = []
        if allowed_ids is not None:
            keep.append(faiss.IDSelectorBatch(allowed_ids))
        if self._tombstones:
            dead = faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64))
            keep += [dead, faiss.IDSelectorNot(dead)]
        if allowed_ids is not None and self._tombstones:
            keep.append(faiss.IDSelectorAnd(keep[0], keep[-1]))
        total = max(int(self._index.ntotal), 1)
        selectable = total - len(self._tombstones) if allowed_ids is None else len(allowed_ids)
        params = _search_parameters(self._index.index, keep[-1], k, min(1.0, selectable / total))
        return self._index.search(queries, k, params=params)

    def _search_overfetch(
        self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search deeper and filter in NumPy until every query has k survivors or all was seen."""
        total = int(self._index.ntotal)
        dead = np.fromiter(self._tombstones, dtype=np.int64)
        fetch = min(total, k + dead.size)
        while True:
            distances, labels = self._index.search(queries, fetch)
            ok = (labels >= 0) & ~np.isin(labels, dead)
            if allowed_ids is not None:
                ok &= np.isin(labels, allowed_ids)
            if fetch >= total or (ok.sum(axis=1) >= k).all():
                break
            fetch = min(total, fetch * _OVERFETCH_GROWTH)
        distances = np.where(ok, distances, -np.inf).astype(np.float32)
        labels = np.where(ok, labels, -1)
        order = np.argsort(-distances, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(distances, order, 1), np.take_along_axis(labels, order, 1)

    # -- serialisation --------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """FAISS ``serialize_index`` bytes framed with the tombstones (graph indexes need them)."""
        index = self._index
        if self._gpu_resources is not None:
            index = faiss.index_gpu_to_cpu(index)
        blob = faiss.serialize_index(index).tobytes()
        tombstones = np.array(sorted(self._tombstones), dtype="<i8").tobytes()
        return _HEADER.pack(_MAGIC, len(blob)) + blob + tombstones

    @classmethod
    def from_bytes(cls, data: bytes, spec: str) -> VectorIndex:
        """Inverse of ``to_bytes``; ``SnapshotCorrupt`` when the bytes are torn or not ours."""
        if len(data) < _HEADER.size:
            raise SnapshotCorrupt("index bytes are shorter than their header")
        magic, length = _HEADER.unpack_from(data)
        rest = len(data) - _HEADER.size - length
        if magic != _MAGIC or rest < 0 or rest % 8:
            raise SnapshotCorrupt("index bytes have a bad header or length (torn write?)")
        blob = np.frombuffer(data, dtype=np.uint8, count=length, offset=_HEADER.size)
        try:
            index = faiss.deserialize_index(blob.copy())
        except RuntimeError as exc:
            raise SnapshotCorrupt(f"FAISS could not read the index: {exc}") from exc
        # deserialize_index already returns the concrete, owning proxy; downcasting it again would
        # create a non-owning proxy and let the owner be freed (a segfault later).
        if not isinstance(index, faiss.IndexIDMap2):
            raise SnapshotCorrupt(f"expected an IndexIDMap2, found {type(index).__name__}")
        tombstones = np.frombuffer(data, dtype="<i8", offset=_HEADER.size + length)
        _apply_search_settings(index.index, parse_index_spec(spec), spec)
        vector_index = cls(index, spec, tombstones)
        vector_index._place()
        return vector_index


def _trim(distances: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nq, k) FAISS results -> (nq, k') without the columns that are padding in every row;
    the padding left in shorter rows is made uniform: id -1, score -inf."""
    valid = labels >= 0
    width = int(valid.sum(axis=1).max()) if len(labels) else 0
    scores = np.where(valid, distances, -np.inf)[:, :width].astype(np.float32)
    ids = np.where(valid, labels, -1)[:, :width].astype(np.int64)
    return np.ascontiguousarray(scores), np.ascontiguousarray(ids)
