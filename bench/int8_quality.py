"""What int8 bulk ingestion costs in retrieval quality: ``python -m bench.int8_quality [--model F]``.

On MS MARCO 5k (its BEIR folder), exact cosine search over the default model's
vectors: nDCG@10 and Recall@100 with documents in int8 and queries in fp32 (``albatross ingest``
then ``albatross serve``) and with both in int8, each paired per query with all-fp32 (bootstrap
95% interval of the difference); the cosine of int8 to fp32 passage vectors; and how far an int8
vector moves between a text embedded alone and in a batch. Printed as JSON lines.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from albatross.evaluation.metrics import paired_bootstrap
from albatross.training.quick_eval import load_beir, per_query_metrics
from bench import corpus
from indexer.config import DEFAULT_MODEL_DIR, DeviceConfig, EncoderConfig
from indexer.encoder import Encoder
from indexer.records import CollectionSpec

DATA = corpus.MSMARCO.parent


def _encoder(model: str, dtype: str) -> Encoder:
    return Encoder.load(model, CollectionSpec(model=model), EncoderConfig(device=DeviceConfig("cpu", dtype)))


def _print(**row: object) -> None:
    print(json.dumps(row), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.int8_quality")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--alone", type=int, default=300, help="passages embedded alone too")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    data = load_beir(args.data)
    fp32, int8 = _encoder(args.model, "float32"), _encoder(args.model, "int8")
    _print(int8_precision=int8.precision)
    q32, d32 = fp32.encode(data.query_texts), fp32.encode(data.doc_texts)
    q8, d8 = int8.encode(data.query_texts), int8.encode(data.doc_texts)
    cosine = np.sum(d32 * d8, axis=1)
    _print(passages_int8_vs_fp32_cosine_min=round(float(cosine.min()), 4), mean=round(float(cosine.mean()), 4))
    exact = per_query_metrics(data, d32, q32)
    for run, docs, queries in (("int8 docs, fp32 queries", d8, q32), ("int8 docs, int8 queries", d8, q8)):
        metrics = per_query_metrics(data, docs, queries)
        for k, name in enumerate(("ndcg@10", "recall@100")):
            paired = paired_bootstrap(exact[:, k], metrics[:, k])
            _print(run=run, metric=name, fp32=round(paired.a, 4), int8=round(paired.b, 4),
                   difference=round(paired.difference, 4), ci95=[round(paired.low, 4), round(paired.high, 4)])
    for name, texts, batched in (("passages", data.doc_texts[: args.alone], d8[: args.alone]),
                                 ("queries", data.query_texts, q8)):
        alone = np.vstack([int8.encode([text]) for text in texts])
        moved = np.sum(alone * batched, axis=1)
        _print(int8_alone_vs_batched=name, cosine_min=round(float(moved.min()), 4),
               mean=round(float(moved.mean()), 4))


if __name__ == "__main__":
    main()
