"""Retrieval quality of each search mode through the served path, as a user runs it:

    albatross ingest corpus.jsonl -> albatross serve -> albatross search --queries ... --mode M --run-out

then every TREC run scored like ``albatross eval`` scores its rows (nDCG@10, Recall@100) and hybrid
paired with dense per query. The figures must equal ``albatross eval``'s for the same model.

    python -m bench.served_modes --dataset <msmarco-5k folder>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from albatross.evaluation.beir import BeirDataset
from albatross.evaluation.metrics import mean_metrics, paired_bootstrap, per_query_ndcg
from indexer.records import SearchMode

ALBATROSS = [sys.executable, "-m", "albatross"]


def read_run(path: Path) -> dict[str, list[str]]:
    """A TREC run file (``qid Q0 docid rank score tag``) -> document ids per query, by rank."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        query_id, _, doc_id, rank, *_ = line.split()
        ranked.setdefault(query_id, []).append((int(rank), doc_id))
    return {q: [doc for _, doc in sorted(pairs)] for q, pairs in ranked.items()}


def wait_for_port(port_file: Path, server: subprocess.Popen[bytes], timeout_s: float = 1800) -> int:
    deadline = time.monotonic() + timeout_s
    while not port_file.exists():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("albatross serve did not start")
        time.sleep(0.5)
    return int(port_file.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    args = parser.parse_args(argv)
    dataset = BeirDataset.load(args.dataset)
    with tempfile.TemporaryDirectory(prefix="albatross-served-") as folder:
        data = Path(folder) / "data"
        common = ["--data-dir", str(data)]
        subprocess.run(
            [*ALBATROSS, "ingest", str(dataset.corpus), "--collection", "eval", *common], check=True
        )
        port_file = Path(folder) / "port"
        server = subprocess.Popen(
            [*ALBATROSS, "serve", "--port", "0", "--port-file", str(port_file), *common]
        )
        try:
            target = f"127.0.0.1:{wait_for_port(port_file, server)}"
            runs = {}
            for mode in SearchMode:
                run = Path(folder) / f"{mode.value}.trec"
                subprocess.run(
                    [
                        *ALBATROSS,
                        "search",
                        "--collection",
                        "eval",
                        "--queries",
                        str(args.dataset / "queries.jsonl"),
                        "--k",
                        "100",
                        "--mode",
                        mode.value,
                        "--run-out",
                        str(run),
                        "--target",
                        target,
                        "--timeout",
                        "600",
                    ],
                    check=True,
                    env={**os.environ, "TQDM_DISABLE": "1"},
                )
                runs[mode] = read_run(run)
        finally:
            server.terminate()
            server.wait(timeout=120)
    print(f"served path on {args.dataset} ({len(dataset.judged_queries())} judged queries)")
    for mode, ranked in runs.items():
        metrics = mean_metrics(ranked, dataset.qrels)
        print(f"  --mode {mode.value:<8} nDCG@10 {metrics['ndcg@10']:.4f}  R@100 {metrics['recall@100']:.4f}")
    dense = per_query_ndcg(runs[SearchMode.DENSE], dataset.qrels)
    keys = sorted(dense)
    for mode in (SearchMode.LEXICAL, SearchMode.HYBRID):
        other = per_query_ndcg(runs[mode], dataset.qrels)
        paired = paired_bootstrap(np.array([dense[q] for q in keys]), np.array([other[q] for q in keys]))
        print(
            f"  {mode.value} - dense, paired nDCG@10: {paired.difference:+.4f} "
            f"[{paired.low:+.4f}, {paired.high:+.4f}], won {paired.b_better}, lost {paired.a_better}"
        )


if __name__ == "__main__":
    main()
