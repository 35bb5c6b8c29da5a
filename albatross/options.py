"""Command-line options shared by several subcommands, and the workspace configuration they give."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from indexer.config import AppConfig, config_from_environment


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
    group.add_argument(
        "--model",
        default="default",
        help="local model folder or cached hub id; none: store the vectors the documents bring",
    )
    group.add_argument(
        "--dimension", type=int, help="vector length: required with --model none, else checked against the model"
    )
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
    group.add_argument(
        "--classifier",
        default="",
        metavar="DIR",
        help="a local ALBERT/BERT *ForSequenceClassification checkpoint that labels every document",
    )
    group.add_argument("--label-field", default="label", help="metadata field of the classifier's label")
    group.add_argument(
        "--score-field", default="label_score", help="metadata field of the label's probability"
    )


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
