"""FAISS index specs at 100k and 1M vectors: build time, memory, queries/s, recall@10 vs exact.

``python -m bench.index [--sizes 100000,1000000] [--queries 500]``

Vectors are synthetic, seeded and clustered like sentence embeddings: a low-dimensional latent
mixture (48-d, 1024 clusters) mapped into 384-d, plus isotropic noise, then L2-normalised; queries
come from the same distribution (not from the base). Ground truth is exact inner-product search.
Indexes are built the way ``indexer.index.VectorIndex.create`` builds them (``index_factory(d,
spec, METRIC_INNER_PRODUCT)``; Albatross wraps that in ``IndexIDMap2``, 8 more bytes a vector),
searched in batches of 32 queries (the searcher's micro-batch), k=10. Memory per vector is the
serialised index size over its vector count. Search parameters are set with FAISS's
``ParameterSpace`` strings; "defaults" means FAISS's own (nprobe=1, efSearch=16, k_factor 1).

The chosen point is then rebuilt the way a collection serves it, through
``VectorIndex.create("<spec>;<parameters>")`` (ids mapped, settings applied by Albatross), and
measured again, so the recall claimed for a collection is the served one.
"""

from __future__ import annotations

import argparse
import gc
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from bench.common import Stopwatch, append_results, log, markdown_table, plot_path, require_plotting
from indexer.index import VectorIndex
from indexer.index_spec import SEARCH_SEPARATOR

DIMENSION = 384
K = 10
QUERY_BATCH = 32
REQUIRED_RECALL = 0.95
DEFAULTS = "defaults"  # a Point's parameters when FAISS's own search settings were used
# spec -> search-parameter strings tried ("" = FAISS defaults, what Albatross serves today).
SPECS: dict[str, list[str]] = {
    "Flat": [""],
    "HNSW32": ["", "efSearch=64", "efSearch=128"],
    "IVF1024,PQ48": ["", "nprobe=16", "nprobe=64"],
    "IVF1024,PQ48x4fs,RFlat": ["", "nprobe=16,k_factor_rf=8", "nprobe=32,k_factor_rf=16", "nprobe=64,k_factor_rf=32"],
    "IVF4096,PQ64": ["nprobe=32", "nprobe=128"],
}
# HNSW32 at 1M (graph build) and IVF4096 (k-means with 4096 centroids, then 4096 distances per
# added vector) take several minutes each on two cores, past the run's time bound: HNSW32 is
# measured at 100k, and both can be asked for with --specs.
DEFAULT_SPECS = {
    100_000: ["Flat", "HNSW32", "IVF1024,PQ48", "IVF1024,PQ48x4fs,RFlat"],
    1_000_000: ["Flat", "IVF1024,PQ48", "IVF1024,PQ48x4fs,RFlat"],
}
# Training sample: FAISS wants ~39+ points per centroid; more only slows k-means down.
TRAIN_PER_LIST = 40
MIN_TRAIN = 65_536


@dataclass(frozen=True)
class Point:
    size: int
    spec: str
    parameters: str
    build_s: float
    bytes_per_vector: float
    qps: float
    recall: float


def clustered(count: int, seed: int, latent: int = 48, clusters: int = 1024) -> np.ndarray:
    """float32 (count, 384) unit vectors; same ``seed`` -> same space (queries use ``seed + 1``
    rows from the same mixture by passing ``space_seed``)."""
    space = np.random.default_rng(12345)
    centres = space.standard_normal((clusters, latent), dtype=np.float32)
    projection = space.standard_normal((latent, DIMENSION), dtype=np.float32) / np.sqrt(latent)
    rng = np.random.default_rng(seed)
    out = np.empty((count, DIMENSION), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        points = centres[rng.integers(clusters, size=n)] + 0.5 * rng.standard_normal((n, latent), dtype=np.float32)
        block = points @ projection + 0.4 * rng.standard_normal((n, DIMENSION), dtype=np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + n] = block
    return out


def exact_top_k(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(DIMENSION)
    index.add(base)
    _, ids = index.search(queries, K)
    return ids


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(set(f[f >= 0]) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _train_size(spec: str, size: int) -> int:
    lists = max((int(part[3:]) for part in spec.split(",") if part.startswith("IVF")), default=0)
    return min(size, max(MIN_TRAIN, TRAIN_PER_LIST * lists))


def _training_sample(spec: str, base: np.ndarray) -> np.ndarray:
    """The same seeded random sample for the raw FAISS index and the served one."""
    return base[np.random.default_rng(0).permutation(len(base))[: _train_size(spec, len(base))]]


def _search_all(index: faiss.Index | VectorIndex, queries: np.ndarray) -> tuple[np.ndarray, float]:
    """Top-K ids (nq, K) of every query, searched in micro-batches, and the seconds it took.
    ``index`` is a raw FAISS index or a ``VectorIndex``: both answer ``search(q, k) -> (scores, ids)``."""
    found = np.empty((len(queries), K), dtype=np.int64)
    with Stopwatch() as watch:
        for start in range(0, len(queries), QUERY_BATCH):
            found[start : start + QUERY_BATCH] = index.search(queries[start : start + QUERY_BATCH], K)[1]
    return found, watch.seconds


def measure(spec: str, base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list[Point]:
    index = faiss.index_factory(DIMENSION, spec, faiss.METRIC_INNER_PRODUCT)
    with Stopwatch() as build:
        if not index.is_trained:
            index.train(_training_sample(spec, base))
        for start in range(0, len(base), 100_000):
            index.add(base[start : start + 100_000])
    size_bytes = faiss.serialize_index(index).size
    points = []
    space = faiss.ParameterSpace()
    for parameters in SPECS.get(spec, [""]):
        if parameters:
            space.set_index_parameters(index, parameters)
        found, seconds = _search_all(index, queries)
        point = Point(len(base), spec, parameters or DEFAULTS, build.seconds, size_bytes / len(base),
                      len(queries) / seconds, recall_at_k(found, truth))
        log(f"{point}")
        points.append(point)
    del index
    gc.collect()
    return points


def measure_served(point: Point, base: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> Point:
    """``point``'s spec and parameters rebuilt as a collection index (``VectorIndex``) and searched
    through it; the returned point carries the spec string a collection would store."""
    spec = point.spec if point.parameters == DEFAULTS else f"{point.spec}{SEARCH_SEPARATOR}{point.parameters}"
    index = VectorIndex.create(spec, DIMENSION)
    ids = np.arange(len(base), dtype=np.int64)
    with Stopwatch() as build:
        if index.needs_training:
            index.train(_training_sample(point.spec, base))
        for start in range(0, len(base), 100_000):
            index.add(ids[start : start + 100_000], base[start : start + 100_000])
    found, seconds = _search_all(index, queries)
    served = Point(len(base), spec, "served", build.seconds, len(index.to_bytes()) / len(base),
                   len(queries) / seconds, recall_at_k(found, truth))
    log(f"{served}")
    return served


def _plot(points: list[Point], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({p.size for p in points})
    figure, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.8), squeeze=False)
    for axis, size in zip(axes[0], sizes, strict=True):
        for spec in dict.fromkeys(p.spec for p in points if p.size == size):
            rows = [p for p in points if p.size == size and p.spec == spec]
            axis.plot([p.qps for p in rows], [p.recall for p in rows], "-o", label=spec)
            for p in rows:
                axis.annotate(p.parameters.replace("k_factor_rf", "kf"), (p.qps, p.recall), fontsize=7,
                              textcoords="offset points", xytext=(3, -8))
        axis.axhline(REQUIRED_RECALL, color="grey", linestyle=":", linewidth=1)
        axis.set_xscale("log")
        axis.set_xlabel("queries/s (batches of 32, k=10)")
        axis.set_ylabel("recall@10 vs exact")
        axis.set_title(f"{size:,} vectors, d={DIMENSION}")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def pick_default(points: list[Point]) -> Point | None:
    """At the largest size: the fastest point with recall@10 >= 0.95 among the non-Flat specs."""
    largest = max(p.size for p in points)
    good = [p for p in points if p.size == largest and p.spec != "Flat" and p.recall >= REQUIRED_RECALL]
    return max(good, key=lambda p: p.qps, default=None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.index", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="vectors, comma-separated")
    parser.add_argument("--queries", type=int, default=500, help="queries per point")
    parser.add_argument("--spec", action="append", dest="specs",
                        help="a FAISS factory string to measure at every size (repeatable; default: a "
                             "per-size list)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG to draw (default: bench/index_recall_qps.png when recording, else a temp file)")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    args = parser.parse_args(argv)
    committed = Path(__file__).with_name("index_recall_qps.png")
    require_plotting()
    args.plot = plot_path(args.plot, committed, record=not args.no_record)

    points: list[Point] = []
    served: Point | None = None
    sizes = [int(s) for s in args.sizes.split(",")]
    with Stopwatch() as total:
        for size in sizes:
            base = clustered(size, seed=1)
            queries = clustered(args.queries, seed=2)
            truth = exact_top_k(base, queries)
            for spec in args.specs or DEFAULT_SPECS.get(size, DEFAULT_SPECS[100_000]):
                log(f"{size}: {spec}")
                points.extend(measure(spec, base, queries, truth))
            chosen = pick_default(points) if size == max(sizes) else None
            if chosen is not None:
                served = measure_served(chosen, base, queries, truth)
            del base
            gc.collect()
    _plot(points, args.plot)
    rows = [[f"{p.size:,}", p.spec, p.parameters, f"{p.build_s:.1f}", f"{p.bytes_per_vector:.0f}",
             f"{p.qps:.0f}", f"{p.recall:.3f}"] for p in points]
    chosen = pick_default(points)
    verdict = (
        f"- fastest spec with recall@10 >= {REQUIRED_RECALL} at {chosen.size:,} vectors (Flat aside): "
        f"`{chosen.spec}` with `{chosen.parameters}` ({chosen.qps:.0f} q/s, recall {chosen.recall:.3f}, "
        f"{chosen.bytes_per_vector:.0f} B/vector, built in {chosen.build_s:.0f} s)"
        if chosen else f"- no non-Flat spec reached recall@10 >= {REQUIRED_RECALL}"
    )
    if served is not None:
        verdict += (
            f"\n- served as a collection index (`--index-spec '{served.spec}'`, through VectorIndex): "
            f"recall@10 {served.recall:.3f}, {served.qps:.0f} q/s, {served.bytes_per_vector:.0f} B/vector "
            f"with the id map, built in {served.build_s:.0f} s"
        )
    body = "\n".join([
        f"- data: synthetic clustered unit vectors, d={DIMENSION}; {args.queries} queries; k={K}; "
        f"searched in batches of {QUERY_BATCH}; FAISS {faiss.__version__}, {faiss.omp_get_max_threads()} threads; "
        f"whole run {total.seconds:.0f} s",
        "",
        markdown_table(["vectors", "spec", "search parameters", "build s", "bytes/vector", "queries/s",
                        "recall@10"], rows),
        "",
        verdict,
        "",
        f"![recall vs queries/s]({args.plot.name})",
    ])
    append_results("Index", body, record=not args.no_record)


if __name__ == "__main__":
    main()
