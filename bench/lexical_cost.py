"""What the lexical index adds to getting a collection searchable: ingest + index-ready time with
the lexical index on and off, in the same run, on the same passages.

    python -m bench.lexical_cost [--docs 1000] [--rounds 2] [--corpus corpus.jsonl]

Where the work happens: ``albatross ingest`` writes documents, chunk vectors and the change log
to SQL and nothing else; a server opening the collection builds FAISS from SQL
(``SyncedIndex.open``) and, with the lexical index on, Tantivy from SQL too
(``SyncedLexicalIndex.open``), then both follow the change log. So each round times, into a
fresh collection: the ingest (read -> chunk -> embed -> SQL, as ``albatross ingest`` runs it),
the vector index's build, and the lexical index's build. Lexical off is the first two; lexical
on is all three. Timing both on one ingest keeps the embedding's variance on a shared host (the
bulk of the time) out of the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from bench import corpus
from bench.common import Stopwatch, command_line, log, machine, markdown_table
from indexer.config import StoreConfig, config_from_environment, for_bulk_ingestion
from indexer.lexical_sync import SyncedLexicalIndex
from indexer.readers import read_path
from indexer.records import CollectionSpec
from indexer.sync import SyncedIndex
from indexer.workspace import Workspace


def one_round(workspace: Workspace, name: str, corpus_file: Path, docs: int) -> tuple[float, float, float]:
    """(ingest, vector index build, lexical index build) seconds for a fresh collection."""
    info = workspace.catalog.create(name, CollectionSpec(model="default"))
    snapshot_dir = workspace.config.store.snapshot_dir
    with Stopwatch() as ingest:
        summary = workspace.ingestor.ingest(name, read_path(str(corpus_file)))
    with Stopwatch() as vectors:
        index = SyncedIndex.open(workspace.store, info, snapshot_dir)
    with Stopwatch() as lexical:
        words = SyncedLexicalIndex.open(workspace.store, info, snapshot_dir)
    chunks = words.ntotal
    words.close()
    if summary.written != docs or index.ntotal < docs or chunks != index.ntotal:
        raise RuntimeError(f"{summary.written} documents, {index.ntotal} vectors, {chunks} lexical chunks")
    return ingest.seconds, vectors.seconds, lexical.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000, help="passages to ingest per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--corpus", type=Path, help=f"BEIR corpus.jsonl (default {corpus.MSMARCO})")
    args = parser.parse_args(argv)
    passages, source = corpus.load(args.docs, args.corpus)
    with tempfile.TemporaryDirectory(prefix="albatross-lexical-cost-") as folder:
        corpus_file = corpus.write_jsonl(passages, Path(folder) / "corpus.jsonl")
        base = for_bulk_ingestion(config_from_environment())
        config = replace(
            base,
            store=StoreConfig(data_dir=Path(folder) / "data"),
            ingest=replace(base.ingest, progress=False),
        )
        workspace = Workspace.open(config)
        try:
            workspace.catalog.encoder_for(workspace.catalog.create("warm", CollectionSpec(model="default")))
            rounds = []
            for i in range(args.rounds):
                rounds.append(one_round(workspace, f"bench-{i}", corpus_file, args.docs))
                log(
                    f"round {i + 1}: ingest {rounds[-1][0]:.1f} s, FAISS {rounds[-1][1]:.2f} s, Tantivy {rounds[-1][2]:.2f} s"
                )
        finally:
            workspace.close()
    ingest, vectors, lexical = (statistics.median(column) for column in zip(*rounds, strict=True))
    off, on = ingest + vectors, ingest + vectors + lexical
    print(f"{args.docs} passages ({source}), {args.rounds} rounds, medians; {machine().describe()}")
    print(f"command: {command_line()}")
    print(
        markdown_table(
            ["step", "seconds"],
            [
                ["ingest (read, chunk, embed, SQL)", f"{ingest:.2f}"],
                ["vector index (FAISS from SQL)", f"{vectors:.2f}"],
                ["lexical index (Tantivy from SQL)", f"{lexical:.2f}"],
                ["lexical off: ingest + vector index", f"{off:.2f}"],
                ["lexical on: ingest + both indexes", f"{on:.2f}"],
            ],
        )
    )
    print(f"lexical on / off: {on / off:.3f}x (+{100 * (on / off - 1):.1f}%)")


if __name__ == "__main__":
    main()
