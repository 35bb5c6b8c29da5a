"""Ingestion as a user times it: ``albatross ingest`` from the shell, start-up included, against a
plain per-document transformers loop on the same model folder, also started from the shell.

Both are new processes, so both pay their imports and model loading; the ratio is the loop's wall
seconds over the command's. Rounds alternate (loop, ingest, ingest, loop, ...), because the hosts
these run on change speed within minutes.

    python -m bench.startup --docs 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import corpus
from bench.common import machine
from indexer.config import DEFAULT_MODEL_DIR

# The loop a user would write first: one document at a time, mean pooling, L2 normalised.
PER_DOCUMENT_LOOP = """
import json, sys
import torch
from transformers import AutoModel, AutoTokenizer

folder, path = sys.argv[1], sys.argv[2]
tokenizer = AutoTokenizer.from_pretrained(folder)
model = AutoModel.from_pretrained(folder).eval()
with open(path, encoding="utf-8") as lines, torch.inference_mode():
    for line in lines:
        record = json.loads(line)
        text = (record.get("title", "") + " " + record["text"]).strip()
        inputs = tokenizer(text, truncation=True, max_length=256, return_tensors="pt")
        hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        torch.nn.functional.normalize(pooled, dim=-1)
"""


def _timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _loop(folder: Path, source: Path) -> float:
    return _timed([sys.executable, "-c", PER_DOCUMENT_LOOP, str(folder), str(source)])


def _ingest(source: Path, scratch: Path, round_: int) -> float:
    data_dir = scratch / f"data-{round_}"
    return _timed(
        [sys.executable, "-m", "albatross", "ingest", str(source), "--collection", "startup",
         "--data-dir", str(data_dir), "--no-progress"]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--corpus", type=Path, help="BEIR corpus.jsonl (default: MS MARCO 5k if present)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR, help="model folder for the loop")
    args = parser.parse_args(argv)
    passages, origin = corpus.load(args.docs, args.corpus)
    loops: list[float] = []
    ingests: list[float] = []
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        source = scratch / "passages.jsonl"
        source.write_text("".join(p.to_json() + "\n" for p in passages), encoding="utf-8")
        for round_ in range(args.rounds):
            order = (_loop, _ingest) if round_ % 2 == 0 else (_ingest, _loop)
            for run in order:
                if run is _loop:
                    loops.append(_loop(args.model, source))
                else:
                    ingests.append(_ingest(source, scratch, round_))
            print(f"round {round_ + 1}: loop {loops[-1]:.1f} s, albatross ingest {ingests[-1]:.1f} s", flush=True)
    ratios = [loop / ingest for loop, ingest in zip(loops, ingests, strict=True)]
    print(f"machine: {machine()}")
    print(f"{len(passages)} passages ({origin}), model {args.model}")
    print("| system | wall s (median) | docs/s |\n| --- | --- | --- |")
    for name, seconds in (("per-document loop", loops), ("albatross ingest", ingests)):
        median = statistics.median(seconds)
        print(f"| {name} | {median:.1f} | {len(passages) / median:.0f} |")
    print(f"ratio (loop / ingest, per round): {', '.join(f'{r:.2f}x' for r in ratios)}")


if __name__ == "__main__":
    main()
