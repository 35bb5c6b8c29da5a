"""CPU fast-path alternatives to PyTorch eager, each against eager in the same run.

``python -m bench.cpu_alternatives [--docs 400] [--rounds 6] [--model FOLDER]``

Measures, on the first ``--docs`` MS MARCO passages in length-sorted batches of 32, the seconds
to embed them and the cosine of each alternative's vectors to eager fp32:

- dynamic int8 on the feed-forward Linear layers, and on every Linear layer (what
  ``albatross ingest`` uses on CPU where the model keeps its vectors);
- ONNX Runtime on the exported graph, fp32 and with its own dynamic int8 on the MatMuls, when
  ``onnxruntime`` and ``onnx`` are installed (they are not dependencies of the project);
- two worker threads with one torch thread each, instead of one forward with two threads (fp32
  and int8), and two worker processes with one torch thread each (int8; the processes load the
  model before the clock starts, batches go to them alternately).

Every system runs once per round, in alternating order; the table gives the median seconds and
the median and range of the per-round speed-ups, because a shared host moves single passes by
+-30%. Results are printed, not recorded: they are the pilots behind ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import multiprocessing.pool
import tempfile
import time
import warnings
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


def onnx_embedders(tokenizer, model: torch.nn.Module, folder: Path) -> dict[str, Embed]:  # type: ignore[no-untyped-def]
    """ONNX Runtime fp32 and int8 (dynamic, MatMul weights only) sessions of ``model``."""
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        return {}

    class Pooled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return pooled(hidden, attention_mask)

    exported, quantized = folder / "model.onnx", folder / "model-int8.onnx"
    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    axes = {"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "pooled": {0: "b"}}
    torch.onnx.export(Pooled(model), example, str(exported), input_names=["input_ids", "attention_mask"],
                      output_names=["pooled"], dynamic_axes=axes, opset_version=17, dynamo=False)
    # Quantising every op (the default) also quantised the embedding gather: cosine 0.71.
    quantize_dynamic(str(exported), str(quantized), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])

    def session(path: Path) -> Embed:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        runner = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

        def embed(batch: list[list[int]]) -> np.ndarray:
            inputs = tokenizer.pad({"input_ids": batch}, return_tensors="np")
            feeds = {name: inputs[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
            return runner.run(None, feeds)[0]

        return embed

    return {"ONNX Runtime fp32": session(exported), "ONNX Runtime int8 (MatMul)": session(quantized)}


def timed(embed: Embed, batches: list[list[list[int]]], workers: int = 1) -> tuple[float, np.ndarray]:
    torch.set_num_threads(2 // max(workers, 1))
    began = time.perf_counter()
    if workers == 0:
        parts = [embed(batches)]  # type: ignore[arg-type]
    elif workers == 1:
        parts = [embed(b) for b in batches]
    else:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(embed, batches))
    seconds = time.perf_counter() - began
    torch.set_num_threads(2)
    return seconds, np.concatenate(parts)


_worker_embed: Embed | None = None


def _start_worker(folder: Path) -> None:
    """Process-pool initialiser: one torch thread, the model loaded and quantised once."""
    global _worker_embed
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    _worker_embed = torch_embedder(tokenizer, _int8(model, {torch.nn.Linear}))


def _embed_in_worker(batch: list[list[int]]) -> np.ndarray:
    assert _worker_embed is not None
    return _worker_embed(batch)


def process_embedder(pool: multiprocessing.pool.Pool) -> Embed:
    """Embed a list of batches on ``pool``'s processes (one batch per task, in order)."""

    def embed_all(batches: list[list[list[int]]]) -> np.ndarray:
        return np.concatenate(pool.map(_embed_in_worker, batches, chunksize=1))

    return embed_all


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_alternatives")
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=6)
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
    eager = torch_embedder(tokenizer, model)
    int8 = torch_embedder(tokenizer, _int8(model, {torch.nn.Linear}))
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as scratch, spawn.Pool(2, _start_worker, (args.model,)) as pool:
        # A process system takes all batches at once (workers=0 below), the others one at a time.
        systems: list[tuple[str, Embed, int]] = [
            ("eager fp32", eager, 1),
            ("int8 feed-forward", torch_embedder(tokenizer, _int8(model, ffn)), 1),
            ("int8 every Linear", int8, 1),
            *((name, embed, 1) for name, embed in onnx_embedders(tokenizer, model, Path(scratch)).items()),
            ("fp32, 2 worker threads x 1 torch thread", eager, 2),
            ("int8 every Linear, 2 worker threads x 1 torch thread", int8, 2),
            ("int8 every Linear, 2 worker processes x 1 torch thread", process_embedder(pool), 0),
        ]
        for _, embed, workers in systems:
            timed(embed, batches[:2], workers)  # warm-up
        _, reference = timed(eager, batches)
        seconds: dict[str, list[float]] = {name: [] for name, _, _ in systems}
        cosine: dict[str, float] = {}
        for number in range(args.rounds):
            for name, embed, workers in systems if number % 2 == 0 else systems[::-1]:
                took, vectors = timed(embed, batches, workers)
                seconds[name].append(took)
                cosine[name] = float((vectors * reference).sum(1).min())
    base = np.array(seconds["eager fp32"])
    rows = []
    for name, _, _ in systems:
        ratios = base / np.array(seconds[name])
        rows.append([name, f"{np.median(seconds[name]):.2f}", f"{np.median(ratios):.2f}x",
                     f"{ratios.min():.2f}-{ratios.max():.2f}", f"{cosine[name]:.4f}"])
    print(f"{len(passages)} passages, {sum(map(len, ids))} tokens, {args.rounds} interleaved rounds\n")
    print(markdown_table(["alternative", "median s", "speed-up (median)", "range", "min cosine to eager"], rows))


def _int8(model: torch.nn.Module, layers: set) -> torch.nn.Module:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), layers, dtype=torch.qint8)


if __name__ == "__main__":
    main()
