"""The processes the crash harness kills: an ingestion worker, a snapshot loop and the searcher.

Run one as ``python -m tests.reliability.worker MODE --data-dir DIR --model DIR [--db URL] ...``.
The harness (``tests/reliability/harness.py``) starts them from a ``forkserver`` that has already
imported this module, so a process costs a fork instead of ~12 s of torch/transformers imports;
each one is still a separate process with its own connections, killed with SIGKILL.

Modes:

``ingest``   upserts (new documents and changed versions of existing ones) and deletes, in a
             seeded random order, forever. Before each operation it appends the operation to the
             journal (``intent``), after the call returns (the transaction committed) it appends
             ``ack`` with the sequence number; each line is fsynced before the next step.
``snapshot`` catches the collection's index up and snapshots it, in a tight loop.
``serve``    the gRPC searcher (``searcher.server.create_server``, what ``albatross serve`` runs)
             with a snapshot after every change applied; writes its port to ``--ready``.
``cli``      ``albatross ARGS...`` (``albatross.cli.main``), the command a user runs.

Every mode but ``cli`` creates ``--ready`` once set up: the harness times its kills from there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from albatross import cli
from indexer.config import AppConfig, IngestConfig, ServerConfig, StoreConfig
from indexer.errors import CollectionExists, CollectionNotFound
from indexer.records import CollectionSpec, Document
from indexer.snapshots import atomic_write
from indexer.sync import SyncedIndex
from indexer.workspace import Workspace
from searcher.server import create_server

COLLECTION = "crash"
# Small windows so that longer documents have several chunks (all of them must survive together).
WINDOW, OVERLAP, MAX_LENGTH = 24, 4, 32
WORDS = tuple(
    sorted(
        {
            word.strip(".,;:!?'\"").lower()
            for line in (Path(__file__).parents[1] / "fixtures" / "sample_text.txt").read_text().splitlines()
            for word in line.split()
            if word.strip(".,;:!?'\"").isalpha()
        }
    )
)


def collection_spec(index_spec: str) -> CollectionSpec:
    return CollectionSpec(
        model="default", window=WINDOW, overlap=OVERLAP, max_length=MAX_LENGTH, index_spec=index_spec
    )


def app_config(args: argparse.Namespace) -> AppConfig:
    return AppConfig(
        store=StoreConfig(data_dir=Path(args.data_dir), db_url=args.db),
        ingest=IngestConfig(docs_per_transaction=64, progress=False),
        server=ServerConfig(poll_interval_s=0.05, snapshot_every_changes=1, batch_max_wait_ms=1.0),
        default_model=Path(args.model),
    )


def open_collection(workspace: Workspace, index_spec: str) -> None:
    """Create the collection if needed and load its encoder (one forward pass to warm it up), so
    that kills timed from ``--ready`` land in the work, not in the model loading."""
    try:
        info = workspace.catalog.get(COLLECTION)
    except CollectionNotFound:
        try:
            info = workspace.catalog.create(COLLECTION, collection_spec(index_spec))
        except CollectionExists:  # another process of the harness won the race
            info = workspace.catalog.get(COLLECTION)
    workspace.catalog.encoder_for(info).encode(["warm up"])


class Journal:
    """Append-only JSON lines, each fsynced before ``append`` returns."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process

    def append(self, entry: dict[str, Any]) -> None:
        entry = {**entry, "at": round(time.time(), 3)}  # for reading a failure against the logs
        self._file.write(json.dumps(entry, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


def known_ids(journal: Path) -> list[str]:
    """Ids this worker has ever upserted, from earlier lives' journal lines (complete ones)."""
    if not journal.exists():
        return []
    ids: dict[str, None] = {}
    for line in journal.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n") and '"intent"' in line:
            entry = json.loads(line)
            if entry["op"] == "upsert":
                ids.update(dict.fromkeys(entry["docs"]))
    return list(ids)


def document_text(rng: random.Random, external_id: str, version: int) -> str:
    """5 to 40 words: one to several chunks of ``WINDOW`` tokens."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(5, 40))]
    return f"{external_id} version {version} " + " ".join(words)


def next_operation(rng: random.Random, ids: list[str], life: int, counter: list[int]) -> dict[str, Any]:
    roll = rng.random()
    if ids and roll < 0.2:
        return {"op": "delete", "ids": rng.sample(ids, min(len(ids), rng.randint(1, 4)))}
    docs: dict[str, str] = {}
    for _ in range(rng.randint(1, 6)):
        if ids and rng.random() < 0.3:
            external_id = rng.choice(ids)  # a changed version of a document that may exist
        else:
            counter[0] += 1
            external_id = f"l{life}-d{counter[0]}"
        docs[external_id] = document_text(rng, external_id, rng.randint(0, 10**6))
    return {"op": "upsert", "docs": docs}


def run_ingest(args: argparse.Namespace) -> int:
    workspace = Workspace.open(app_config(args))
    open_collection(workspace, args.index_spec)
    journal_path = Path(args.journal)
    ids = known_ids(journal_path)
    journal = Journal(journal_path)
    rng = random.Random(f"{args.seed}/{args.life}")
    counter = [0]
    Path(args.ready).write_text(f"{time.time():.3f}\n")
    for _ in range(100_000):
        operation = next_operation(rng, ids, args.life, counter)
        journal.append({"entry": "intent", "life": args.life, **operation})
        if operation["op"] == "upsert":
            documents = [Document(i, text) for i, text in operation["docs"].items()]
            outcomes = workspace.ingestor.upsert(COLLECTION, documents)
            sequence = max(outcome.sequence or 0 for outcome in outcomes)
            ids.extend(i for i in operation["docs"] if i not in ids)
        else:
            sequence = workspace.ingestor.delete(COLLECTION, operation["ids"]).last_sequence
        journal.append({"entry": "ack", "life": args.life, "sequence": sequence})
    return 0


def run_snapshot(args: argparse.Namespace) -> int:
    workspace = Workspace.open(app_config(args))
    info = workspace.catalog.get(COLLECTION)
    index = SyncedIndex.open(workspace.store, info, workspace.config.store.snapshot_dir)
    Path(args.ready).touch()
    while True:
        index.catch_up()
        index.snapshot()


async def _serve(app: AppConfig, ready: Path) -> None:
    running = await create_server(app, port=0)
    atomic_write(ready, f"{running.port}\n".encode())
    await running.wait_for_termination()


def run_serve(args: argparse.Namespace) -> int:
    asyncio.run(_serve(app_config(args), Path(args.ready)))
    return 0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.worker")
    parser.add_argument("mode", choices=["ingest", "snapshot", "serve"])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--db")
    parser.add_argument("--model", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--journal")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--life", type=int, default=0)
    parser.add_argument("--index-spec", default="Flat")
    return parser.parse_args(argv)


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "cli":
        return cli.main(list(argv[1:]))
    args = parse(argv)
    runs = {"ingest": run_ingest, "snapshot": run_snapshot, "serve": run_serve}
    return runs[args.mode](args)


def run_child(argv: Sequence[str], log_path: str, environment: dict[str, str]) -> None:
    """Entry point of a forked child: its stdout and stderr go to ``log_path``."""
    os.environ.update(environment)
    descriptor = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
