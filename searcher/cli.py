"""The ``albatross`` command: argument parsing, exit codes, and printing. No domain logic here.

Exit codes: 0 ok; 1 some input records were rejected (everything else was committed); 2 invalid
argument; 3 not found; 4 a model or embedding-space precondition failed; 5 unavailable (database
busy, server unreachable); 70 internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from indexer.config import AppConfig, config_from_environment
from indexer.errors import (
    AlbatrossError,
    CollectionExists,
    CollectionNotFound,
    EmbeddingSpaceMismatch,
    IndexNotReady,
    InvalidArgument,
    ModelNotFound,
    Overloaded,
    StoreBusy,
)

EXIT_OK, EXIT_REJECTED, EXIT_INVALID, EXIT_NOT_FOUND, EXIT_PRECONDITION, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4, 5
EXIT_INTERNAL = 70

log = logging.getLogger("albatross")


def exit_code_for(error: BaseException) -> int:
    """The one mapping from domain errors to exit codes."""
    if isinstance(error, InvalidArgument):
        return EXIT_INVALID
    if isinstance(error, CollectionNotFound | CollectionExists):
        return EXIT_NOT_FOUND if isinstance(error, CollectionNotFound) else EXIT_INVALID
    if isinstance(error, ModelNotFound | EmbeddingSpaceMismatch):
        return EXIT_PRECONDITION
    if isinstance(error, StoreBusy | IndexNotReady | Overloaded):
        return EXIT_UNAVAILABLE
    return EXIT_INTERNAL


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="folder of the SQLite file and snapshots")
    parser.add_argument("--db", help="SQLAlchemy URL of a shared database (e.g. postgresql+psycopg://...)")
    parser.add_argument("--device", help="encoder device: auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument(
        "--dtype",
        choices=["auto", "float32", "int8", "bfloat16", "float16"],
        help="encoder precision: auto (default: bf16 on GPU; on CPU fp32, and int8 for bulk "
        "ingestion where the model keeps its vectors), float32 (exact), int8 (CPU) ...",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")


def add_collection_spec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("new collection (used only when the collection is created)")
    group.add_argument("--model", default="default", help="local model folder or cached hub id")
    group.add_argument("--pooling", default="mean", choices=["mean", "max", "cls", "mean_max"])
    group.add_argument(
        "--layers", default="-1", help="hidden layer(s) to pool, comma-separated (e.g. -1 or 0,-1)"
    )
    group.add_argument("--max-length", type=int, default=512, help="tokens per forward pass")
    group.add_argument("--window", type=int, default=256, help="tokens per chunk")
    group.add_argument("--overlap", type=int, default=64, help="tokens shared by consecutive chunks")
    group.add_argument(
        "--index-spec", default="Flat", help="FAISS factory string (Flat, HNSW32, IVF1024,PQ32)"
    )
    group.add_argument("--vector-dtype", default="float32", choices=["float32", "float16"])
    group.add_argument("--whitening", action="store_true", help="fit and apply whitening (raw checkpoints)")


def app_config(args: argparse.Namespace) -> AppConfig:
    """Environment and defaults, overridden by the flags given on the command line."""
    config = config_from_environment()
    store = config.store
    if getattr(args, "data_dir", None) is not None:
        store = replace(store, data_dir=args.data_dir)
    if getattr(args, "db", None):
        store = replace(store, db_url=args.db)
    encoder = config.encoder
    if getattr(args, "device", None):
        encoder = replace(encoder, device=replace(encoder.device, device=args.device))
    if getattr(args, "dtype", None):
        encoder = replace(encoder, device=replace(encoder.device, dtype=args.dtype))
    server = config.server
    if getattr(args, "port", None) is not None:
        server = replace(server, port=args.port)
    if getattr(args, "host", None):
        server = replace(server, host=args.host)
    return replace(config, store=store, encoder=encoder, server=server)


def configure_logging(*, verbose: bool) -> None:
    """Our own messages at INFO (DEBUG with -v); libraries' chatter only from WARNING up."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    for name in ("albatross", "indexer", "searcher"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # one "Loading weights" bar per model is noise here
    if not verbose:
        # Load reports flag weights our pooling never uses (e.g. a missing BERT/ALBERT pooler).
        transformers_logging.set_verbosity_error()


def build_parser() -> argparse.ArgumentParser:
    from searcher import commands, serving_commands

    parser = argparse.ArgumentParser(prog="albatross", description="Albatross semantic search.")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in (*commands.REGISTRY, *serving_commands.REGISTRY):
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(verbose=getattr(args, "verbose", False))
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except AlbatrossError as error:
        print(f"albatross {args.command}: {error}", file=sys.stderr)
        return exit_code_for(error)
    except KeyboardInterrupt:
        print(f"albatross {args.command}: interrupted; everything acknowledged is committed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
