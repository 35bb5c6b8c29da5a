"""Which engine for the lexical index: Tantivy, SQLite FTS5 or bm25s, beside the evaluation's own
BM25, on one BEIR folder: nDCG@10 and Recall@100, build time, the cost of replacing 500 passages
in 10 commits of 50 (what catching up with the change log does), and peak RSS. Each engine runs
in a child process of its own, so the RSS figures do not include each other.

    python -m bench.lexical_engines --dataset <msmarco-5k folder>

bm25s (and PyStemmer) are not dependencies: ``pip install bm25s pystemmer`` to include them.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import resource
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from albatross.evaluation.beir import BeirDataset
from albatross.evaluation.bm25 import BM25
from albatross.evaluation.metrics import mean_metrics
from indexer.lexical import LexicalIndex, body_of
from indexer.records import LexicalAnalyzer

DEPTH = 100
REPLACED, PER_COMMIT = 500, 50

Corpus = list[tuple[str, str]]
Result = dict[str, object]


def load_corpus(dataset: BeirDataset) -> Corpus:
    # Line by line: ``str.splitlines`` would also split inside texts holding U+2028.
    with dataset.corpus.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["_id"], body_of(row.get("title") or "", row["text"])) for row in rows]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def eval_bm25(corpus: Corpus, texts: list[str]) -> tuple[float, float, list[list[int]]]:
    started = time.perf_counter()
    index = BM25(corpus)
    build = time.perf_counter() - started
    position = {doc_id: i for i, (doc_id, _) in enumerate(corpus)}
    return build, float("nan"), [[position[d] for d in index.search(t, DEPTH)] for t in texts]


def tantivy_engine(corpus: Corpus, texts: list[str]) -> tuple[float, float, list[list[int]]]:
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        index = LexicalIndex.create(Path(folder), LexicalAnalyzer.ENGLISH)
        index.add(np.arange(len(corpus)), [body for _, body in corpus])
        index.commit()
        build = time.perf_counter() - started
        started = time.perf_counter()
        for start in range(0, REPLACED, PER_COMMIT):
            ids = np.arange(start, start + PER_COMMIT)
            index.add(ids, [corpus[i][1] for i in ids])
            index.commit()
        update = time.perf_counter() - started
        _, found = index.search(texts, DEPTH)
        index.close()
    return build, update, [[int(i) for i in row if i >= 0] for row in found]


def fts5_engine(corpus: Corpus, texts: list[str]) -> tuple[float, float, list[list[int]]]:
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "fts.sqlite3")
        db.execute("CREATE VIRTUAL TABLE t USING fts5(body, tokenize='porter unicode61')")
        started = time.perf_counter()
        with db:
            db.executemany("INSERT INTO t(rowid, body) VALUES (?, ?)", list(enumerate(b for _, b in corpus)))
        build = time.perf_counter() - started
        started = time.perf_counter()
        for start in range(0, REPLACED, PER_COMMIT):
            with db:
                for i in range(start, start + PER_COMMIT):
                    db.execute("DELETE FROM t WHERE rowid = ?", (i,))
                    db.execute("INSERT INTO t(rowid, body) VALUES (?, ?)", (i, corpus[i][1]))
        update = time.perf_counter() - started
        ranked = []
        for text in texts:
            words = " OR ".join(f'"{w}"' for w in re.findall(r"\w+", text.lower()))
            rows = db.execute("SELECT rowid FROM t WHERE t MATCH ? ORDER BY bm25(t) LIMIT ?", (words, DEPTH))
            ranked.append([i for (i,) in rows])
        db.close()
    return build, update, ranked


def bm25s_engine(corpus: Corpus, texts: list[str]) -> tuple[float, float, list[list[int]]]:
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")

    def build_index() -> bm25s.BM25:
        tokens = bm25s.tokenize([b for _, b in corpus], stopwords="en", stemmer=stemmer, show_progress=False)
        index = bm25s.BM25(k1=0.9, b=0.4)
        index.index(tokens, show_progress=False)
        return index

    started = time.perf_counter()
    index = build_index()
    build = time.perf_counter() - started
    started = time.perf_counter()
    build_index()  # no incremental update: replacing any passage means indexing everything again
    update = time.perf_counter() - started
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    found, scores = index.retrieve(tokens, k=DEPTH, show_progress=False)
    return (
        build,
        update,
        [[int(i) for i, s in zip(r, sc, strict=True) if s > 0] for r, sc in zip(found, scores, strict=True)],
    )


ENGINES: dict[str, tuple[str, Callable[[Corpus, list[str]], tuple[float, float, list[list[int]]]]]] = {
    "eval-bm25": ("albatross eval BM25 (k1=0.9 b=0.4, S-stemmer)", eval_bm25),
    "tantivy": ("Tantivy (indexer/lexical.py: English stems, stop words)", tantivy_engine),
    "fts5": ("SQLite FTS5 (porter unicode61)", fts5_engine),
    "bm25s": ("bm25s (k1=0.9 b=0.4, Snowball, stop words)", bm25s_engine),
}


def measure(name: str, folder: Path, out: multiprocessing.Queue[Result]) -> None:
    dataset = BeirDataset.load(folder)
    corpus = load_corpus(dataset)
    queries = dataset.judged_queries()
    label, engine = ENGINES[name]
    try:
        build, update, ranked = engine(corpus, [q.text for q in queries])
    except ImportError as exc:
        out.put({"engine": label, "skipped": f"not installed ({exc.name})"})
        return
    rankings = {q.query_id: [corpus[i][0] for i in row] for q, row in zip(queries, ranked, strict=True)}
    metrics = mean_metrics(rankings, dataset.qrels)
    out.put(
        {
            "engine": label,
            "ndcg@10": metrics["ndcg@10"],
            "recall@100": metrics["recall@100"],
            "build_s": build,
            "replace_500_s": update,
            "peak_rss_mb": peak_rss_mb(),
        }
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    args = parser.parse_args(argv)
    print(
        f"{'engine':<58} {'nDCG@10':>8} {'R@100':>7} {'build s':>8} {'replace 500 s':>14} {'peak RSS MB':>12}"
    )
    context = multiprocessing.get_context("spawn")
    for name in ENGINES:
        out: multiprocessing.Queue[Result] = context.Queue()
        child = context.Process(target=measure, args=(name, args.dataset, out))
        child.start()
        result = out.get()
        child.join()
        if "skipped" in result:
            print(f"{result['engine']:<58} {result['skipped']}")
            continue
        print(
            f"{result['engine']:<58} {result['ndcg@10']:8.4f} {result['recall@100']:7.4f} "
            f"{result['build_s']:8.2f} {result['replace_500_s']:14.3f} {result['peak_rss_mb']:12.0f}"
        )


if __name__ == "__main__":
    main()
