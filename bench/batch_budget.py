"""Token budget of one forward pass: Albatross embedding docs/s at several budgets, same run.

``python -m bench.batch_budget [--docs N] [--budgets 16384,4096,2048,1024] [--dtypes auto,float32]
[--rounds R] [--device cpu|cuda]``

Each budget embeds the same passages as ``albatross ingest`` does (``for_bulk_ingestion``), in
interleaved rounds; the ratio is against the first budget of the list (by default the GPU
budget, which was every device's default before the CPU got its own). This is the measurement
behind ``EncoderConfig.token_budget``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench import corpus
from bench.common import append_results, log, markdown_table
from bench.ingest import albatross_embedding, app_config, count_tokens, interleaved, load_texts, ratio
from bench.models import default_model
from indexer.config import GPU_BATCH_TOKENS, DeviceConfig, EncoderConfig, for_bulk_ingestion


def _label(budget: int, dtype: str) -> str:
    return f"{budget} tokens, dtype {dtype}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch_budget", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="passages to embed (default 1000)")
    parser.add_argument("--budgets", default=f"{GPU_BATCH_TOKENS},4096,2048,1024",
                        help="token budgets, comma-separated; the first is the baseline")
    parser.add_argument("--dtypes", default="auto,float32", help="encoder dtypes, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--corpus", type=Path, help=f"BEIR corpus.jsonl (default {corpus.MSMARCO})")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is present")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    args = parser.parse_args(argv)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    threads = torch.get_num_threads()

    passages, source, texts = load_texts(args.docs, args.corpus)
    with tempfile.TemporaryDirectory(prefix="albatross-bench-models-") as workdir:
        model = default_model(Path(workdir))
        tokens = count_tokens(model.folder, texts)
        log(f"{len(passages)} passages, {tokens} tokens, model {model.label}")
        systems = []
        for dtype in dtypes:
            bulk = for_bulk_ingestion(app_config(model.folder, Path(workdir), EncoderConfig(
                device=DeviceConfig(device=args.device, dtype=dtype, threads=threads)))).encoder
            for budget in budgets:
                label = _label(budget, dtype)
                encoder = replace(bulk, batch_tokens=budget)
                systems.append((label, lambda e=encoder, n=label: albatross_embedding(
                    model.folder, passages, tokens, e, n)))
        runs = interleaved(systems, args.rounds)

    rows = []
    for dtype in dtypes:
        baseline = _label(budgets[0], dtype)
        for budget in budgets:
            label = _label(budget, dtype)
            seconds = float(np.median([run.seconds for run in runs[label]]))
            rows.append([budget, runs[label][0].precision.split()[0], f"{len(passages) / seconds:.1f}",
                         f"{tokens / seconds:.0f}", ratio(runs, label, baseline)])
    body = "\n".join([
        f"- corpus: {source}; {tokens} tokens; model {model.label}; device {args.device}; "
        f"{threads} torch threads shared by the bulk-ingestion streams; {args.rounds} interleaved rounds, "
        f"medians (ratio: median of per-round ratios to the {budgets[0]}-token budget, range)",
        "",
        markdown_table(["token budget", "ran as", "docs/s", "tokens/s", f"vs {budgets[0]}"], rows),
    ])
    append_results("Batch token budget", body, record=not args.no_record)


if __name__ == "__main__":
    main()
