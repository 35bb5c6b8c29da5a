"""Exact-term lookups: real passages that each carry a part number of the ``AB-1234-C`` kind,
queried by the part number alone. Reports the share of queries whose passage comes first, per
mode, through the same indexes and fusion ``albatross eval`` measures.

    python -m bench.identifiers [--passages 1682] [--model default]

The passages are the shipped WordNet sample (indexer/samples); the identifiers are seeded.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from albatross.evaluation.beir import BeirDataset
from albatross.evaluation.runner import EVAL_FUSIONS, Rankings, encoder_rows
from indexer.config import config_from_environment
from indexer.records import CollectionSpec
from indexer.samples import SAMPLE_CORPUS

LETTERS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def part_numbers(count: int, seed: int = 16) -> list[str]:
    """``count`` distinct seeded identifiers like ``QX-4471-B``."""
    rng = np.random.default_rng(seed)
    numbers: dict[str, None] = {}
    while len(numbers) < count:
        numbers[f"{''.join(rng.choice(LETTERS, 2))}-{rng.integers(1000, 10000)}-{rng.choice(LETTERS)}"] = None
    return list(numbers)


def write_identifier_set(folder: Path, passages: int) -> None:
    """A BEIR folder: each passage gains "Catalogue part <id>."; one query per id, judging it."""
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()[:passages]]
    numbers = part_numbers(len(rows))
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as corpus:
        for row, number in zip(rows, numbers, strict=True):
            text = f"{row['text']} Catalogue part {number}."
            corpus.write(json.dumps({"_id": row["_id"], "title": row["title"], "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as queries:
        for i, number in enumerate(numbers):
            queries.write(json.dumps({"_id": f"q{i}", "text": number}) + "\n")
    lines = ["query-id\tcorpus-id\tscore"] + [f"q{i}\t{row['_id']}\t1" for i, row in enumerate(rows)]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def first_share(rankings: Rankings, dataset: BeirDataset) -> float:
    """Share of queries whose judged passage is ranked first."""
    hits = [bool(r) and dataset.qrels[q].get(r[0], 0) > 0 for q, r in rankings.items()]
    return sum(hits) / len(hits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=1682)
    parser.add_argument("--model", default="default")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="albatross-identifiers-") as folder:
        write_identifier_set(Path(folder), args.passages)
        dataset = BeirDataset.load(Path(folder))
        runs = encoder_rows(
            config_from_environment(),
            dataset,
            args.model,
            CollectionSpec(model=args.model),
            fusions=EVAL_FUSIONS,
        )
    print(f"{len(dataset.queries)} identifier queries over {args.passages} passages, model {args.model}")
    for row, rankings in (runs.dense, runs.lexical, *runs.hybrid):
        print(f"  {row.system:<60} found first {first_share(rankings, dataset):.3f}")


if __name__ == "__main__":
    main()
