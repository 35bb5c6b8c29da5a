"""Bulk ingestion on Ray: input parts spread over an actor pool, one encoder per GPU (or CPU
worker), every actor writing to the one shared store.

    input files --(driver: JSONL split into parts of ``docs_per_transaction`` lines, other
    formats whole)--> Ray Data, one block per part
      --(actor pool; each actor holds one Workspace: encoder + store connection)-->
         read the part with ``indexer.readers`` (validation, rejections named file:line)
         -> ``Ingestor.ingest``: content-hash check, length-sorted token-budget forward passes,
            ONE SQL transaction per ``docs_per_transaction`` documents
      --> per-part counts and rejections, tallied by the driver

The actors run the single-process path on their parts, so vectors are the same (same code, same
model files) and rejections are reported the same way. Reading is a small fraction of the work
next to the forward pass, so it happens in the actor: no separate read processes to start.
Every write is an idempotent upsert keyed by external id and content hash: a job that stops
half-way is simply run again, and what was committed is skipped (not even re-embedded), the rest
written, nothing duplicated. Input ids should be unique: two versions of one id in different
parts are written in whatever order the actors finish (the single-process path keeps the last).

Ray is an optional dependency (``pip install "albatross[ray]"``), imported only when this runs.
The store must be shared by every Ray node: PostgreSQL on a cluster (a SQLite file only works
when every actor runs on the machine that holds it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from itertools import islice
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from indexer.config import AppConfig
from indexer.csv_cells import parse_csv_types
from indexer.errors import InvalidArgument, StoreBusy
from indexer.readers import JSONL_SUFFIXES, ReadItem, ReadOptions, Rejection, read_jsonl, read_path
from indexer.records import DocumentStatus
from indexer.validation import DocumentLimits

if TYPE_CHECKING:  # indexer.ingest imports torch: the driver only needs it for the summary
    from indexer.ingest import IngestSummary

log = logging.getLogger(__name__)

INSTALL_HINT = 'distributed ingestion needs Ray: pip install "albatross[ray]" (or "ray[data]>=2.9")'
_COUNTS = ("read", *(status.value for status in DocumentStatus), "last_sequence", "mostly_unknown")
# Tries per part when the store stays locked past its busy timeout (see IngestParts._ingest_part).
_BUSY_ATTEMPTS = 3


def _ray() -> ModuleType:
    try:
        import ray
        import ray.data  # noqa: F401  (the Data library ships with the [data] extra)
    except ImportError as exc:
        raise InvalidArgument(INSTALL_HINT, field="engine") from exc
    return ray


@dataclass(frozen=True)
class RayIngestOptions:
    """How the job uses the cluster.

    ``workers``: encoder actors; None = one per GPU of the cluster, else one per CPU. ``address``:
    the Ray cluster (None starts a local one, or joins the one ``RAY_ADDRESS`` names, as
    ``ray.init`` does). ``num_cpus`` caps a local cluster. ``cpus_per_worker`` is what a CPU
    actor reserves and the torch threads it uses.
    """

    workers: int | None = None
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_worker: int = 1
    use_gpu: bool | None = None
    csv_types: str = ""  # as ``--csv-types`` spells it (a string travels in a part's row)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise InvalidArgument(f"workers must be at least 1, got {self.workers}", field="workers")
        if self.cpus_per_worker < 1:
            raise InvalidArgument("cpus_per_worker must be at least 1", field="cpus_per_worker")


# --- parts: what the actors read ----------------------------------------------------------------


def split_inputs(paths: Sequence[str], lines_per_part: int, csv_types: str = "") -> list[dict[str, Any]]:
    """Input files -> parts read by separate tasks: JSONL files in runs of ``lines_per_part``
    lines (one scan for the byte offsets), other formats whole. A part is
    ``{"path", "offset", "first_line", "lines", "csv_types"}``; ``lines`` -1 means the whole file."""
    parts: list[dict[str, Any]] = []
    for path in paths:
        if Path(path).suffix.lower() not in JSONL_SUFFIXES:
            # A missing file, an unknown format or a bad --csv-types fails here, not in a task.
            next(iter(read_path(path, options=_read_options(csv_types))), None)
            parts.append({"path": path, "offset": 0, "first_line": 1, "lines": -1, "csv_types": csv_types})
            continue
        offset, line = 0, 0
        with open(path, "rb") as stream:
            for raw in stream:
                if line % lines_per_part == 0:
                    parts.append(
                        {"path": path, "offset": offset, "first_line": line + 1, "lines": 0, "csv_types": ""}
                    )
                parts[-1]["lines"] += 1
                offset += len(raw)
                line += 1
    return parts


def read_part(part: dict[str, Any]) -> Iterator[ReadItem]:
    """The records of one part, validated by ``indexer.readers`` exactly as a whole file is."""
    if part["lines"] < 0:
        yield from read_path(part["path"], options=_read_options(str(part.get("csv_types", ""))))
        return
    with open(part["path"], "rb") as stream:
        stream.seek(part["offset"])
        lines = islice(stream, part["lines"])
        yield from read_jsonl(lines, part["path"], DocumentLimits(), first_line=part["first_line"])


def _read_options(csv_types: str) -> ReadOptions:
    return ReadOptions(csv_types=parse_csv_types(csv_types))


class IngestParts:
    """A Ray Data actor: a batch of parts -> ``Ingestor.ingest`` of each -> one row of counts and
    rejections (JSON) per part."""

    def __init__(self, config: AppConfig, collection: str) -> None:
        from indexer.workspace import Workspace

        self._workspace = Workspace.open(config)
        self._collection = collection

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in (*_COUNTS, "rejections")}
        for part in _batch_rows(batch):
            rejections, summary = self._ingest_part(part)
            for name in _COUNTS:
                out[name].append(getattr(summary, name))
            out["rejections"].append(json.dumps([asdict(r) for r in rejections]))
        return out

    def _ingest_part(self, part: dict[str, Any]) -> tuple[list[Rejection], IngestSummary]:
        """Ingest one part; when the store stays locked past its timeout (many workers queueing
        on one collection's row lock), run the part again: what was committed comes back as
        unchanged, so a retry never duplicates."""
        for attempt in range(1, _BUSY_ATTEMPTS):
            try:
                return self._ingest_once(part)
            except StoreBusy:
                log.warning("store busy on part %s (attempt %d); retrying", part.get("path"), attempt)
        return self._ingest_once(part)

    def _ingest_once(self, part: dict[str, Any]) -> tuple[list[Rejection], IngestSummary]:
        rejections: list[Rejection] = []
        summary = self._workspace.ingestor.ingest(self._collection, read_part(part), on_rejection=rejections.append)
        return rejections, summary

    def __del__(self) -> None:
        workspace = getattr(self, "_workspace", None)
        if workspace is not None:
            workspace.close()


def _batch_rows(batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A numpy-format batch (column -> array) as rows of plain Python values."""
    columns = {name: list(values) for name, values in batch.items()}
    for i in range(len(next(iter(columns.values()), []))):
        yield {
            name: (v.item() if hasattr(v, "item") else v)
            for name, v in ((n, c[i]) for n, c in columns.items())
        }


def _tally(
    summary: IngestSummary, batch: dict[str, Any], on_rejection: Callable[[Rejection], None] | None
) -> int:
    read = 0
    for row in _batch_rows(batch):
        summary.read += row["read"]
        for status in DocumentStatus:  # IngestSummary counts each status in a field of its name
            setattr(summary, status.value, getattr(summary, status.value) + row[status.value])
        summary.mostly_unknown += row["mostly_unknown"]
        summary.last_sequence = max(summary.last_sequence, row["last_sequence"])
        for fields in json.loads(row["rejections"]):
            rejection = Rejection(**fields)
            if len(summary.rejections) < 1000:
                summary.rejections.append(rejection)
            if on_rejection is not None:
                on_rejection(rejection)
        read += row["read"]
    return read


# --- the driver ----------------------------------------------------------------------------------


def _refit_whitening_after(config: AppConfig, collection: str) -> None:
    """Actors store unwhitened vectors (the index whitens them): once they are written, refit the
    collection's whitening if it has grown enough (``WhiteningPolicy``), as the single-process path
    does after each transaction."""
    from indexer.workspace import Workspace

    workspace = Workspace.open(config)
    try:
        info = workspace.catalog.get(collection)
        if info.spec.whitening:
            workspace.catalog.refit_whitening(info, config.ingest.whitening)
    finally:
        workspace.close()


def _placement(ray: ModuleType, options: RayIngestOptions) -> tuple[int, dict[str, Any]]:
    """(workers, Ray resources per actor) from the cluster's resources."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    use_gpu = gpus > 0 if options.use_gpu is None else options.use_gpu
    if use_gpu:
        if gpus == 0:
            raise InvalidArgument("use_gpu was asked for but the Ray cluster has no GPU", field="use_gpu")
        return options.workers or gpus, {"num_gpus": 1}
    cpus = int(resources.get("CPU", 1))
    workers = options.workers or max(1, cpus // options.cpus_per_worker)
    return workers, {"num_cpus": options.cpus_per_worker}


def ingest_with_ray(
    config: AppConfig,
    collection: str,
    paths: Sequence[str],
    options: RayIngestOptions | None = None,
    *,
    on_rejection: Callable[[Rejection], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Ingest ``paths`` into the existing ``collection`` on a Ray cluster; returns what happened.

    Standard input (``-``) cannot be read by remote actors: give files.
    """
    from indexer.ingest import IngestSummary

    options = options or RayIngestOptions()
    if "-" in paths:
        raise InvalidArgument("the Ray engine reads files, not standard input", field="paths")
    ray = _ray()
    parts = split_inputs(paths, config.ingest.docs_per_transaction, options.csv_types)
    started = time.perf_counter()
    owns_cluster = not ray.is_initialized()
    if owns_cluster:
        ray.init(
            address=options.address,
            num_cpus=options.num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        workers, resources = _placement(ray, options)
        if "num_cpus" in resources:  # CPU actors: torch uses the cores the actor reserved, no more
            device = replace(config.encoder.device, device="cpu", threads=int(resources["num_cpus"]))
            config = replace(config, encoder=replace(config.encoder, device=device))
        log.info("ray ingestion: %d parts, %d workers, %s each", len(parts), workers, resources)
        # One block per part, so the actors share the work of even a single large file.
        dataset = ray.data.from_items(parts, override_num_blocks=max(1, len(parts)))
        outcomes = dataset.map_batches(
            IngestParts,
            fn_constructor_args=(config, collection),
            batch_size=1,
            batch_format="numpy",
            concurrency=workers,
            **resources,
        )
        summary = IngestSummary()
        for batch in outcomes.iter_batches(batch_format="numpy", batch_size=None):
            counted = _tally(summary, batch, on_rejection)
            if on_progress is not None:
                on_progress(counted)
    finally:
        if owns_cluster:
            ray.shutdown()
    summary.seconds = time.perf_counter() - started
    _refit_whitening_after(config, collection)
    return summary
