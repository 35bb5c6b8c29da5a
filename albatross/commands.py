"""The subcommands of ``albatross``: each registers its parser and a ``run(args) -> exit code``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry
from tqdm import tqdm

from albatross.exit_codes import EXIT_OK, EXIT_REJECTED
from albatross.options import (
    add_collection_spec_options,
    add_store_options,
    app_config,
    flag_of,
    given_spec_values,
    open_workspace,
    spec_from_args,
)
from indexer.config import AppConfig, for_bulk_ingestion
from indexer.csv_cells import CellType, parse_csv_types
from indexer.errors import CollectionExists, CollectionNotFound, EmbeddingSpaceMismatch, InvalidArgument
from indexer.readers import ReadOptions, Rejection, count_records, read_path
from indexer.records import CollectionInfo, CollectionSpec, PoolingMode
from indexer.telemetry import IngestMetrics, start_metrics_endpoint
from indexer.vocabulary import MOSTLY_UNKNOWN

if TYPE_CHECKING:
    from indexer.ingest import IngestSummary
    from indexer.workspace import Workspace

Subparsers = Any  # argparse's private _SubParsersAction


def spec_conflicts(info: CollectionInfo, given: dict[str, Any]) -> list[str]:
    """One ``--flag: the collection has X, given Y`` per option given that the collection's spec
    disagrees with."""
    conflicts = []
    for name, value in given.items():
        stored = getattr(info.spec, name)
        if name == "model" and _same_model(stored, value):
            continue
        if _shown(stored) != _shown(value):
            conflicts.append(f"{flag_of(name)}: the collection has {_shown(stored)}, given {_shown(value)}")
    return conflicts


def _same_model(stored: str, given: str) -> bool:
    return stored == given or Path(stored).expanduser().resolve() == Path(given).expanduser().resolve()


def _shown(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return ",".join(str(part) for part in value)
    return str(value)


def ensure_collection(workspace: Workspace, name: str, args: argparse.Namespace) -> None:
    """Create ``name`` from the flags, or check that the flags given agree with it."""
    try:
        info = workspace.catalog.get(name)
    except CollectionNotFound:
        try:
            info = workspace.catalog.create(name, spec_from_args(args), args.dimension)
        except CollectionExists:
            info = workspace.catalog.get(name)  # another ingest created it meanwhile: write into it
        else:
            print(
                f"created collection {name!r} ({info.dimension}-d, model {info.spec.model})", file=sys.stderr
            )
            return
    conflicts = spec_conflicts(info, given_spec_values(args))
    if args.dimension is not None and args.dimension != info.dimension:
        conflicts.append(f"--dimension: the collection has {info.dimension}, given {args.dimension}")
    if conflicts:
        raise EmbeddingSpaceMismatch(
            f"collection {name!r} exists and its embedding space is fixed at creation: "
            + "; ".join(conflicts)
            + " (leave the flags out, or create a new collection)"
        )


# --- ingest -----------------------------------------------------------------------------------


def register_ingest(sub: Subparsers) -> None:
    parser = sub.add_parser("ingest", help="embed and store documents from JSONL/CSV/Parquet files")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="input files; - reads JSONL from stdin")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help='local: this process; ray: an encoder actor pool on Ray (pip install "albatross[ray]")',
    )
    parser.add_argument(
        "--workers", type=int, help="ray: encoder actors (default: one per GPU, else per CPU)"
    )
    parser.add_argument("--ray-address", help="ray: the cluster (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics while ingesting (0: any port)"
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics endpoint")
    parser.add_argument(
        "--csv-types",
        default="",
        metavar="COL=TYPE,...",
        help="pin CSV metadata columns to int, float, bool or str (e.g. year=int,zip=str); "
        "other columns: true/false, integers and decimals are inferred, codes like 007 stay strings",
    )
    add_store_options(parser)
    add_collection_spec_options(parser)
    parser.set_defaults(run=run_ingest)


def _print_rejection(rejection: Rejection) -> None:
    tqdm.write(f"rejected {rejection.message}", file=sys.stderr)


def run_ingest_on_ray(args: argparse.Namespace) -> int:
    """``ingest --engine ray``: the collection is created here, the documents embedded on Ray."""
    from indexer.distributed import RayIngestOptions, ingest_with_ray

    config = for_bulk_ingestion(app_config(args))
    workspace = open_workspace(config)
    try:
        ensure_collection(workspace, args.collection, args)
        model = model_name(workspace, args.collection)
        if workspace.catalog.get(args.collection).spec.takes_vectors:
            raise InvalidArgument(
                f"collection {args.collection!r} has no model: there is nothing to embed on Ray; "
                "ingest its vectors with --engine local",
                field="engine",
            )
    finally:
        workspace.close()
    options = RayIngestOptions(workers=args.workers, address=args.ray_address, csv_types=args.csv_types)
    total = sum(count_records(path) or 0 for path in args.paths) or None
    with tqdm(total=total, unit="docs", desc="ray", disable=args.no_progress, file=sys.stderr) as bar:
        summary = ingest_with_ray(
            config,
            args.collection,
            args.paths,
            options,
            on_rejection=_print_rejection,
            on_progress=bar.update,
        )
    print(
        f"{len(args.paths)} file(s) on Ray: {summary.read} read, {summary.outcomes()} in {summary.seconds:.1f}s "
        f"({summary.docs_per_second:.1f} docs/s); last sequence {summary.last_sequence}",
        file=sys.stderr,
    )
    _warn_mostly_unknown(f"{len(args.paths)} file(s) on Ray", summary, model)
    return EXIT_REJECTED if summary.rejected else EXIT_OK


@contextmanager
def ingest_metrics(args: argparse.Namespace) -> Iterator[IngestMetrics | None]:
    """The worker's counters, served on ``--metrics-port`` while ingesting (None without it)."""
    if args.metrics_port is None:
        yield None
        return
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    endpoint = start_metrics_endpoint(registry, args.metrics_host, args.metrics_port)
    print(f"metrics on http://{args.metrics_host}:{endpoint.port}/metrics", file=sys.stderr)
    try:
        yield metrics
    finally:
        endpoint.close()


def run_ingest(args: argparse.Namespace) -> int:
    if args.engine == "ray":
        return run_ingest_on_ray(args)
    config = for_bulk_ingestion(app_config(args))
    with ingest_metrics(args) as metrics:
        return ingest_paths(config, args, metrics)


def _progress(bar: tqdm, metrics: IngestMetrics | None, collection: str) -> Callable[[int], None]:
    def advance(count: int) -> None:
        bar.update(count)
        if metrics is not None:
            metrics.count_read(collection, count)

    return advance


def ingest_paths(config: AppConfig, args: argparse.Namespace, metrics: IngestMetrics | None) -> int:
    csv_types = parse_csv_types(args.csv_types)
    workspace = open_workspace(config)
    try:
        ensure_collection(workspace, args.collection, args)
        read_options = read_options_for(workspace.catalog.get(args.collection), csv_types)
        rejected = 0
        for path in args.paths:
            total = count_records(path)
            with tqdm(
                total=total, unit="docs", desc=path, disable=args.no_progress, file=sys.stderr, smoothing=0.1
            ) as bar:
                summary = workspace.ingestor.ingest(
                    args.collection,
                    read_path(path, options=read_options),
                    on_rejection=_print_rejection,
                    on_progress=_progress(bar, metrics, args.collection),
                )
            if metrics is not None:
                # Outcomes are known per file (the summary); read_total moves with every batch.
                metrics.count_totals(args.collection, summary.counts())
            rejected += summary.rejected
            print(
                f"{path}: {summary.read} read, {summary.outcomes()} in {summary.seconds:.1f}s "
                f"({summary.docs_per_second:.1f} docs/s); last sequence {summary.last_sequence}",
                file=sys.stderr,
            )
            _warn_mostly_unknown(path, summary, model_name(workspace, args.collection))
    finally:
        workspace.close()
    return EXIT_REJECTED if rejected else EXIT_OK


def read_options_for(info: CollectionInfo, csv_types: Mapping[str, CellType]) -> ReadOptions:
    """Records are held to their collection: its own vectors, or none, of its dimension."""
    if info.spec.takes_vectors:
        return ReadOptions(csv_types=csv_types, vector_dimension=info.dimension)
    return ReadOptions(csv_types=csv_types, refuse_vectors=True)


def model_name(workspace: Workspace, collection: str) -> str:
    return Path(workspace.encoders.resolve(workspace.catalog.get(collection).spec.model)).name


def _warn_mostly_unknown(source: str, summary: IngestSummary, model: str) -> None:
    """One line per input: how many documents the model mostly cannot read, and which."""
    if not summary.mostly_unknown:
        return
    shown = ", ".join(summary.mostly_unknown_ids[:5])
    more = f" and {summary.mostly_unknown - 5} more" if summary.mostly_unknown > 5 else ""
    print(
        f"warning: {source}: {summary.mostly_unknown} documents are mostly outside the vocabulary of "
        f"{model} (over {MOSTLY_UNKNOWN:.0%} of their text in unknown pieces): {shown}{more}. They are "
        "stored, but their vectors say little; `albatross stats` counts them",
        file=sys.stderr,
    )


# --- delete -----------------------------------------------------------------------------------


def register_delete(sub: Subparsers) -> None:
    parser = sub.add_parser("delete", help="delete documents by external id")
    parser.add_argument("ids", nargs="+", metavar="ID")
    parser.add_argument("--collection", required=True)
    add_store_options(parser)
    parser.set_defaults(run=run_delete)


def run_delete(args: argparse.Namespace) -> int:
    workspace = open_workspace(app_config(args))
    try:
        result = workspace.ingestor.delete(args.collection, args.ids)
    finally:
        workspace.close()
    print(
        f"deleted {len(result.deleted)}, not found {len(result.missing)}; last sequence {result.last_sequence}"
    )
    for missing in result.missing:
        print(f"not found: {missing}", file=sys.stderr)
    return EXIT_OK


# --- collections ------------------------------------------------------------------------------


def register_collections(sub: Subparsers) -> None:
    parser = sub.add_parser("collections", help="create, list or drop collections")
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a collection")
    create.add_argument("name")
    add_collection_spec_options(create)
    add_store_options(create)
    create.set_defaults(run=run_collections_create)
    listing = actions.add_parser("list", help="list collections")
    add_store_options(listing)
    listing.set_defaults(run=run_collections_list)
    drop = actions.add_parser("drop", help="drop a collection and everything in it")
    drop.add_argument("name")
    add_store_options(drop)
    drop.set_defaults(run=run_collections_drop)
    refit = actions.add_parser(
        "refit-whitening", help="fit a whitening collection's map again now, on its stored vectors"
    )
    refit.add_argument("name")
    add_store_options(refit)
    refit.set_defaults(run=run_collections_refit_whitening)


def run_collections_create(args: argparse.Namespace) -> int:
    workspace = open_workspace(app_config(args))
    try:
        info = workspace.catalog.create(args.name, spec_from_args(args), args.dimension)
    finally:
        workspace.close()
    print(
        f"created {info.name} ({info.dimension}-d, {info.spec.pooling.value} pooling, {info.spec.index_spec})"
    )
    return EXIT_OK


def run_collections_list(args: argparse.Namespace) -> int:
    workspace = open_workspace(app_config(args))
    try:
        for info in workspace.catalog.list():
            stats = workspace.catalog.stats(info.name)
            print(f"{info.name}\t{stats.documents} docs\t{stats.chunks} chunks\t{info.spec.model}")
    finally:
        workspace.close()
    return EXIT_OK


def run_collections_drop(args: argparse.Namespace) -> int:
    workspace = open_workspace(app_config(args))
    try:
        workspace.catalog.drop(args.name)
    finally:
        workspace.close()
    print(f"dropped {args.name}")
    return EXIT_OK


def run_collections_refit_whitening(args: argparse.Namespace) -> int:
    """Searchers see the new version within their poll interval and rebuild their indexes in it."""
    config = app_config(args)
    workspace = open_workspace(config)
    try:
        info = workspace.catalog.get(args.name)
        version = workspace.catalog.refit_whitening(info, config.ingest.whitening, force=True)
    finally:
        workspace.close()
    print(f"{args.name}: whitening version {version}")
    return EXIT_OK


# --- export -----------------------------------------------------------------------------------


def register_export(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "export",
        help="write a collection as JSONL: _id, title, text, metadata and one vector per document",
        description="Each line reads back with `albatross ingest` into a collection created with "
        "--model none --dimension D. A document of several chunks exports the mean of its chunk "
        "vectors (L2-normalised when the collection normalises).",
    )
    parser.add_argument("--collection", required=True)
    parser.add_argument("--out", type=Path, help="write here, atomically (default: standard output)")
    add_store_options(parser)
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from indexer.exporting import export_lines
    from indexer.snapshots import atomic_write_parts

    workspace = open_workspace(app_config(args))
    try:
        info = workspace.catalog.get(args.collection)
        lines = export_lines(workspace.store.iter_documents(info.id), normalize=info.spec.normalize)
        count = 0

        def counted() -> Iterator[str]:
            nonlocal count
            for line in lines:
                count += 1
                yield line

        if args.out is None:
            sys.stdout.writelines(counted())
        else:
            atomic_write_parts(args.out, (line.encode("utf-8") for line in counted()))
    finally:
        workspace.close()
    where = f" to {args.out}" if args.out else ""
    print(f"exported {count} documents of {info.name} ({info.dimension}-d){where}", file=sys.stderr)
    return EXIT_OK


# --- stats ------------------------------------------------------------------------------------


def register_stats(sub: Subparsers) -> None:
    parser = sub.add_parser("stats", help="documents, chunks, vectors and sequence numbers of a collection")
    parser.add_argument("--collection", required=True)
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_store_options(parser)
    parser.set_defaults(run=run_stats)


def collection_stats(workspace: Workspace, name: str) -> dict[str, Any]:
    """What SQL holds and what the FAISS index (newest snapshot + replayed log) holds."""
    from indexer.snapshots import latest_sequence
    from indexer.sync import SyncedIndex

    info = workspace.catalog.get(name)
    stats = workspace.catalog.stats(name)
    snapshot_dir = workspace.config.store.snapshot_dir
    snapshot_sequence = latest_sequence(snapshot_dir, info.name)
    index = SyncedIndex.open(workspace.store, info, snapshot_dir)
    return {
        "collection": info.name,
        "model": workspace.encoders.resolve(info.spec.model),
        "model_revision": info.model_revision,
        "pooling": info.spec.pooling.value,
        "layers": list(info.spec.layers),
        "dimension": info.dimension,
        "index_spec": info.spec.index_spec,
        "classifier": info.spec.classifier,
        "documents": stats.documents,
        "chunks": stats.chunks,
        "index_vectors": index.ntotal,
        "last_sequence": stats.last_sequence,
        "mostly_unknown_documents": stats.mostly_unknown,
        "snapshot_sequence": snapshot_sequence,
        "index_sequence": index.sequence,
    }


def run_stats(args: argparse.Namespace) -> int:
    workspace = open_workspace(app_config(args))
    try:
        report = collection_stats(workspace, args.collection)
    finally:
        workspace.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        width = max(len(key) for key in report)
        for key, value in report.items():
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


# --- eval -------------------------------------------------------------------------------------


def register_eval(sub: Subparsers) -> None:
    parser = sub.add_parser(
        "eval",
        help="nDCG@10, Recall@100, MRR@10 and docs/s on a BEIR folder: dense, lexical and hybrid, beside BM25",
    )
    parser.add_argument(
        "--dataset", required=True, type=Path, help="folder with corpus.jsonl, queries.jsonl, qrels/"
    )
    parser.add_argument(
        "--model", action="append", default=[], help="another local checkpoint to measure (repeatable)"
    )
    parser.add_argument("--whitening", action="store_true", help="also measure each --model with whitening")
    parser.add_argument("--pooling", default="mean", choices=["mean", "max", "cls", "mean_max"])
    parser.add_argument("--no-default", action="store_true", help="skip the default model")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    add_store_options(parser)
    parser.set_defaults(run=run_eval)


def eval_systems(args: argparse.Namespace) -> list[tuple[str, CollectionSpec]]:
    pooling = PoolingMode(args.pooling)
    systems = [] if args.no_default else [("albatross default model", CollectionSpec(model="default"))]
    for model in args.model:
        systems.append((model, CollectionSpec(model=model, pooling=pooling)))
        if args.whitening:
            systems.append(
                (f"{model} + whitening", CollectionSpec(model=model, pooling=pooling, whitening=True))
            )
    return systems


def run_eval(args: argparse.Namespace) -> int:
    from albatross.evaluation.beir import BeirDataset
    from albatross.evaluation.runner import (
        EVAL_FUSIONS,
        bm25_row,
        encoder_rows,
        format_table,
        paired_lines,
        rows_to_json,
    )

    config = app_config(args)
    dataset = BeirDataset.load(args.dataset)
    total = count_records(str(dataset.corpus))
    rows = [bm25_row(dataset)[0]]
    paired: list[str] = []
    for system, spec in eval_systems(args):
        with tqdm(total=total, unit="docs", desc=system, disable=args.no_progress, file=sys.stderr) as bar:
            runs = encoder_rows(config, dataset, system, spec, progress=bar.update, fusions=EVAL_FUSIONS)
        if len(rows) == 1:  # the lexical row does not depend on the encoder: shown once
            rows.append(runs.lexical[0])
        rows.extend([runs.dense[0], *(row for row, _ in runs.hybrid)])
        paired.extend(paired_lines(runs.dense, [runs.lexical, *runs.hybrid], dataset))
    print(format_table(rows, str(args.dataset)))
    print("\n".join(paired))
    if args.out:
        args.out.write_text(rows_to_json(rows, str(args.dataset)) + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    return EXIT_OK


# --- classifier -------------------------------------------------------------------------------


def register_classifier(sub: Subparsers) -> None:
    parser = sub.add_parser("classifier", help="classifiers for `ingest --classifier`, built offline")
    builds = parser.add_subparsers(dest="classifier_command", required=True)
    topic = builds.add_parser(
        "build-topic",
        help="assemble the shipped WordNet topic classifier (19 labels: animal, food, plant, ...)",
        description="Writes a full AlbertForSequenceClassification folder from the shipped default "
        "encoder and the trained topic head (indexer/models/wordnet-topic); no network. Use it as "
        "`albatross ingest --classifier DIR`.",
    )
    topic.add_argument(
        "--out", type=Path, required=True, help="folder to create (must not exist, or be empty)"
    )
    topic.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    topic.set_defaults(run=run_build_topic)


def run_build_topic(args: argparse.Namespace) -> int:
    from indexer.topic_model import build_topic_classifier, head_labels

    folder = build_topic_classifier(args.out)
    labels, _ = head_labels()
    print(
        f"wrote the topic classifier ({len(labels)} labels: {', '.join(labels)}) to {folder}", file=sys.stderr
    )
    return EXIT_OK


REGISTRY: list[Callable[[Subparsers], None]] = [
    register_ingest,
    register_delete,
    register_collections,
    register_export,
    register_stats,
    register_eval,
    register_classifier,
]
