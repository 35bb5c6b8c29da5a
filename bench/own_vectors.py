"""Vectors move between collections: passages embedded by the default model, exported, and ingested
into a collection without a model; does each passage's own vector find it first there?

The real command line end to end (``albatross ingest``, ``export``, ``ingest --model none``), with
three wrong-dimension lines inserted that must be rejected by line number; then a real server on
a loopback port answers one vector search per passage. The baseline, in the same run, is the same
vector searched in the collection that made it.

    python -m bench.own_vectors --corpus <msmarco-5k folder>/corpus.jsonl --docs 1000
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from indexer.config import AppConfig, ServerConfig, StoreConfig
from searcher.client import AlbatrossClient
from searcher.server import create_server
from tests.searcher.serving import ServerThread

BAD_LINES_AT = (10, 500, 900)


def albatross(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "albatross", *args, "--data-dir", str(data)], capture_output=True, text=True
    )
    print(f"$ albatross {' '.join(args)} -> exit {result.returncode}", file=sys.stderr)
    print("\n".join(line for line in result.stderr.splitlines() if " INFO " not in line), file=sys.stderr)
    return result


def with_bad_lines(rows: list[dict], path: Path) -> None:
    lines = [json.dumps(row) for row in rows]
    for at in BAD_LINES_AT:
        if at < len(lines):
            lines.insert(at, json.dumps({**rows[at], "_id": f"bad{at}", "vector": rows[at]["vector"][:-1]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def firsts(client: AlbatrossClient, collection: str, rows: list[dict]) -> int:
    return sum(
        client.search_vector(collection, np.asarray(row["vector"], np.float32), k=1)[0].external_id == row["_id"]
        for row in rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a BEIR corpus.jsonl")
    parser.add_argument("--docs", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "data"
        passages = folder / "passages.jsonl"
        with args.corpus.open(encoding="utf-8") as source:
            passages.write_text("".join(itertools.islice(source, args.docs)), encoding="utf-8")
        albatross(data, "ingest", str(passages), "--collection", "text", "--no-progress")
        exported = folder / "exported.jsonl"
        albatross(data, "export", "--collection", "text", "--out", str(exported))
        rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
        mixed = folder / "mixed.jsonl"
        with_bad_lines(rows, mixed)
        dimension = str(len(rows[0]["vector"]))
        albatross(data, "ingest", str(mixed), "--collection", "own", "--model", "none", "--dimension", dimension,
                  "--no-progress")
        app = AppConfig(store=StoreConfig(data_dir=data), server=ServerConfig(host="127.0.0.1", poll_interval_s=0.05))
        thread = ServerThread()
        server = thread.run(create_server(app, port=0))
        try:
            with AlbatrossClient(server.target, timeout=120) as client:
                for name in ("own", "text"):
                    while (stats := client.get_collection(name).stats).index_sequence < stats.last_sequence:
                        time.sleep(0.1)
                print(f"own collection: {client.get_collection('own').stats.documents} documents")
                print(f"own vector first in the collection without a model: {firsts(client, 'own', rows)}/{len(rows)}")
                print(f"baseline, same vector in the collection that made it: {firsts(client, 'text', rows)}/{len(rows)}")
        finally:
            thread.run(server.stop(grace_s=1.0))
            thread.close()


if __name__ == "__main__":
    main()
