"""CPU fast-path alternatives to PyTorch eager, each against eager in the same run.

``python -m bench.cpu_alternatives [--docs 600] [--model FOLDER]``

Measures, on the first ``--docs`` MS MARCO passages in length-sorted batches of 32, the seconds
to embed them and the cosine of each alternative's vectors to eager fp32:

- two worker threads with one torch thread each, instead of one forward with two threads;
- dynamic int8 on the feed-forward Linear layers, and on every Linear layer;
- ONNX Runtime on the exported graph, when ``onnxruntime`` and ``onnx`` are installed (they are
  not dependencies of the project).

Results are printed, not recorded: these are the pilots behind the "tried and not kept" lines of
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from bench import corpus
from bench.common import markdown_table
from indexer.ingest import embedding_text

DEFAULT_MODEL = Path("indexer/models/albatross-albert-small")
BATCH = 32
Embed = Callable[[list[list[int]]], np.ndarray]


def pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def torch_embedder(tokenizer, model: torch.nn.Module) -> Embed:  # type: ignore[no-untyped-def]
    @torch.inference_mode()
    def embed(batch: list[list[int]]) -> np.ndarray:
        inputs = tokenizer.pad({"input_ids": batch}, return_tensors="pt")
        return pooled(model(**inputs).last_hidden_state, inputs["attention_mask"]).numpy()

    return embed


def onnx_embedder(tokenizer, model: torch.nn.Module, folder: Path) -> Embed | None:  # type: ignore[no-untyped-def]
    try:
        import onnxruntime
    except ImportError:
        return None

    class Pooled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pooled(hidden, attention_mask)

    path = folder / "model.onnx"
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    axes = {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "pooled": {0: "b"}}
    torch.onnx.export(Pooled(model), example, str(path), input_names=["input_ids", "attention_mask"],
                      output_names=["pooled"], dynamic_axes=axes, opset_version=17, dynamo=False)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(batch: list[list[int]]) -> np.ndarray:
        inputs = tokenizer.pad({"input_ids": batch}, return_tensors="np")
        feeds = {name: inputs[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        return session.run(None, feeds)[0]

    return embed


def timed(embed: Embed, batches: list[list[list[int]]], workers: int = 1) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    if workers == 1:
        parts = [embed(b) for b in batches]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(embed, batches))
    return time.perf_counter() - began, np.concatenate(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_alternatives")
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    passages, _ = corpus.load(args.docs, None)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, add_pooling_layer=False).eval()
    ids = tokenizer([embedding_text(p.title, p.text) for p in passages], truncation=True, max_length=512)["input_ids"]
    ids.sort(key=len)
    batches = [ids[s : s + BATCH] for s in range(0, len(ids), BATCH)]
    ffn = {name for name, _ in model.named_modules() if name.endswith((".ffn", ".ffn_output"))}
    int8_ffn = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), ffn, dtype=torch.qint8)
    int8_all = torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)
    eager = torch_embedder(tokenizer, model)
    timed(eager, batches[:2])  # warm-up
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        onnx = onnx_embedder(tokenizer, model, Path(scratch))
        for _ in range(2):  # two rounds: the first pass of each path also pays its warm-up
            torch.set_num_threads(2)
            base_s, reference = timed(eager, batches)
            candidates: list[tuple[str, Embed, int]] = [
                ("int8 feed-forward", torch_embedder(tokenizer, int8_ffn), 1),
                ("int8 every Linear", torch_embedder(tokenizer, int8_all), 1),
            ]
            if onnx is not None:
                candidates.append(("ONNX Runtime", onnx, 1))
            for name, embed, workers in candidates:
                seconds, vectors = timed(embed, batches, workers)
                rows.append([name, f"{seconds:.2f}", f"{base_s:.2f}", f"{base_s / seconds:.2f}x",
                             f"{float((vectors * reference).sum(1).min()):.4f}"])
            torch.set_num_threads(1)
            seconds, vectors = timed(eager, batches, workers=2)
            rows.append(["2 workers x 1 thread", f"{seconds:.2f}", f"{base_s:.2f}", f"{base_s / seconds:.2f}x",
                         f"{float((vectors * reference).sum(1).min()):.4f}"])
    print(markdown_table(["alternative", "seconds", "eager seconds", "speed-up", "min cosine to eager"], rows))


if __name__ == "__main__":
    main()
