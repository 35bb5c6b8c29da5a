"""How much each factorised embedding size keeps of the teacher, without an evaluation set:
``python -m bench.factorised_cosine [--sizes 0,192,128,96,64]`` (needs the ``train`` extra).

Builds each variant in memory as ``python -m albatross.training convert`` does (0 = unfactorised,
the vocabulary swap alone) and prints the cosine of its mean-pooled vectors to the teacher's on
the 298 sentences of ``tests/fixtures/sample_text.txt``, text the factorisation's piece counts
(the shipped WordNet glosses) never saw.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AlbertTokenizer

from albatross.training import converted
from albatross.training.teacher import embed, load_teacher, teacher_dir

SENTENCES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "sample_text.txt"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.factorised_cosine")
    parser.add_argument("--sizes", default="0,192,128,96,64")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    texts = [line for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]
    tokenizer, bert = load_teacher()
    target = embed(texts, tokenizer, bert, max_length=converted.MAX_LENGTH)
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tok_dir:
            model, _ = converted.convert_teacher(teacher_dir(), Path(tok_dir), size or None)
            pieces = AlbertTokenizer.from_pretrained(tok_dir)
            cosine = np.sum(embed(texts, pieces, model, max_length=converted.MAX_LENGTH) * target, axis=1)
        print(f"E={size or bert.config.hidden_size}: {len(texts)} sentences, cosine to the teacher "
              f"mean {cosine.mean():.4f}, 5th percentile {np.percentile(cosine, 5):.4f}, "
              f"min {cosine.min():.4f}", flush=True)


if __name__ == "__main__":
    main()
