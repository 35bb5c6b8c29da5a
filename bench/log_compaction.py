"""SQL size when the same documents are rewritten again and again, with and without compaction.

``python -m bench.log_compaction [--docs 100000] [--rounds 10] [--dimension 64] [--record]``

Two SQLite stores in one run receive the same writes: ``--docs`` documents of one chunk with
seeded random vectors, rewritten ``--rounds`` times with new text (every round removes and adds
every chunk: two log entries per document). After each round a searcher's index catches up and
snapshots; on the compacted store it is a named log reader (``SyncedIndex(reader=...)``), so its
snapshot prunes the log, as a served collection's does; on the baseline it is anonymous and the
log is never pruned. Reported per round: change-log rows and the database size, file plus
write-ahead log (SQLite reuses the pages of deleted rows, so the file stops growing once they are
freed).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import append_results, log, markdown_table
from indexer.config import StoreConfig
from indexer.records import Chunk, CollectionSpec, Document, EncodedDocument
from indexer.store import Store
from indexer.sync import SyncedIndex

BATCH = 2_000


def _documents(
    start: int, count: int, version: int, dimension: int, rng: np.random.Generator
) -> list[EncodedDocument]:
    """Documents ``d{start}`` .. ``d{start + count - 1}`` at ``version``: one chunk each."""
    vectors = rng.standard_normal((count, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for i in range(count):
        text = f"document {start + i}, version {version}"
        document = Document(external_id=f"d{start + i}", text=text, metadata={"group": (start + i) % 10})
        chunk = Chunk(ordinal=0, start=0, end=len(text), text=text)
        out.append(EncodedDocument(document, document.content_hash(), (chunk,), vectors[i : i + 1]))
    return out


def _round(stores: dict[str, Store], docs: int, version: int, dimension: int) -> None:
    rng = np.random.default_rng(version)
    for start in range(0, docs, BATCH):
        batch = _documents(start, min(BATCH, docs - start), version, dimension, rng)
        for store in stores.values():
            store.write_documents(store.get_collection("bench").id, batch)
    log(f"round {version + 1}: {docs:,} documents rewritten")


def _database_bytes(data_dir: Path) -> int:
    """The SQLite file and its write-ahead log together (recent writes live in the log)."""
    return sum(path.stat().st_size for path in data_dir.glob("albatross.sqlite3*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--dimension", type=int, default=64)
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        stores = {name: Store.open(StoreConfig(data_dir=folder / name)) for name in ("compacted", "baseline")}
        indexes = {}
        for name, store in stores.items():
            spec = CollectionSpec(model="synthetic")
            info = store.create_collection(
                "bench", spec, dimension=args.dimension, model_revision="-", tokenizer_hash="-"
            )
            indexes[name] = SyncedIndex.open(
                store, info, folder / name / "snapshots", reader="bench" if name == "compacted" else None
            )
        rows = []
        for version in range(args.rounds):
            _round(stores, args.docs, version, args.dimension)
            row: list[object] = [version + 1]
            for name, store in stores.items():
                indexes[name].catch_up()
                indexes[name].snapshot()
                info = store.get_collection("bench")
                entries = store.last_sequence(info.id) - store.log_floor(info.id)
                size = _database_bytes(folder / name) / 2**20
                row += [f"{entries:,}", f"{size:.1f}"]
            rows.append(row)
            log(f"after round {version + 1}: {row}")
        for store in stores.values():
            store.close()
    header = ["round", "log rows, compacted", "MiB, compacted", "log rows, baseline", "MiB, baseline"]
    body = markdown_table(header, rows)
    title = f"Change-log compaction: {args.docs:,} documents rewritten {args.rounds} times"
    append_results(title, body, record=args.record)


if __name__ == "__main__":
    main()
