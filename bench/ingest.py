"""Ingestion throughput: Albatross against two plain-transformers baselines, same model, same run.

``python -m bench.ingest [--docs N] [--model-docs M] [--rounds R] [--dtypes auto,float32] [--device cpu|cuda]``

Systems, all on the same passages (title + newline + text, mean pooling, unit vectors):

- per-document: ``AutoTokenizer``/``AutoModel``, one document per forward pass, ``no_grad``.
- batched: what a careful user writes with transformers alone: token lengths sorted, batches of
  32 padded by the tokenizer, ``inference_mode``.
- Albatross, embedding only: ``indexer.ingest.encode_documents`` (chunking + the encoder).
- Albatross, end to end: a JSONL file read by ``indexer.readers`` -> ``Ingestor.ingest`` (chunk,
  embed, one SQL transaction per batch into a temporary SQLite workspace) -> ``SyncedIndex.open``
  (FAISS built from SQL, caught up from the change log).

Albatross runs as ``albatross ingest`` does (``for_bulk_ingestion``: on CPU, int8 Linear layers
when the model keeps its vectors under them, and two forward passes at once sharing the cores);
``--dtypes auto,float32`` adds the exact rows. Every system gets the same torch thread count.

Model loading is outside every timer; each system encodes one warm-up text first. Systems run
in ``--rounds`` interleaved rounds (order reversed every other round) and the table shows medians,
because one pass each on a shared host measures the host as much as the code. Then the default
model and the albert-base-v2-shaped one are compared by Albatross embedding docs/s on
``--model-docs`` passages, the same way.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from bench import corpus
from bench.common import Stopwatch, append_results, log, markdown_table
from bench.models import albert_base_shaped, default_model
from indexer.config import (
    BULK_CPU_STREAMS,
    AppConfig,
    DeviceConfig,
    EncoderConfig,
    IngestConfig,
    StoreConfig,
    for_bulk_ingestion,
)
from indexer.ingest import embedding_text, encode_documents
from indexer.readers import read_path
from indexer.records import CollectionSpec, Document
from indexer.sync import SyncedIndex
from indexer.workspace import Workspace

MAX_LENGTH = 512
BASELINE_BATCH = 32
WARM_UP = "a short text to warm the model up"


@dataclass(frozen=True)
class Run:
    system: str
    docs: int
    tokens: int
    seconds: float
    vectors: np.ndarray | None = None
    precision: str = "float32"

    @property
    def docs_per_second(self) -> float:
        return self.docs / self.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def per_document(folder: Path, texts: list[str], tokens: int, device: str, threads: int) -> Run:
    """Baseline (a): one document at a time, on torch's default thread count."""
    torch.set_num_threads(threads)  # Albatross's CPU streams change the process-wide count
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).to(device).eval()
    vectors = []
    with torch.no_grad():
        model(**tokenizer(WARM_UP, return_tensors="pt").to(device))
        with Stopwatch() as watch:
            for text in texts:
                inputs = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt").to(device)
                output = model(**inputs)
                vectors.append(_mean_pool(output.last_hidden_state, inputs["attention_mask"]).cpu())
    return Run("per-document transformers loop", len(texts), tokens, watch.seconds, torch.cat(vectors).numpy())


def batched(folder: Path, texts: list[str], tokens: int, device: str, threads: int) -> Run:
    """Baseline (b): length-sorted batches of 32, ``inference_mode``, torch's default threads."""
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).to(device).eval()
    vectors = torch.empty((len(texts), model.config.hidden_size))
    with torch.inference_mode():
        model(**tokenizer([WARM_UP], return_tensors="pt").to(device))
        with Stopwatch() as watch:
            encoded = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
            order = sorted(range(len(texts)), key=lambda i: len(encoded[i]), reverse=True)
            for start in range(0, len(order), BASELINE_BATCH):
                members = order[start : start + BASELINE_BATCH]
                inputs = tokenizer.pad({"input_ids": [encoded[i] for i in members]}, return_tensors="pt")
                inputs = inputs.to(device)
                output = model(**inputs)
                vectors[members] = _mean_pool(output.last_hidden_state, inputs["attention_mask"]).cpu()
    return Run(f"batched transformers loop (sorted, batch {BASELINE_BATCH})", len(texts), tokens,
               watch.seconds, vectors.numpy())


def app_config(folder: Path, data_dir: Path, encoder: EncoderConfig) -> AppConfig:
    return AppConfig(
        store=StoreConfig(data_dir=data_dir),
        encoder=encoder,
        ingest=IngestConfig(progress=False),
        default_model=folder,
    )


def albatross_embedding(
    folder: Path, passages: list[corpus.Passage], tokens: int, encoder: EncoderConfig, label: str = ""
) -> Run:
    """Albatross's chunk + embed step alone (no SQL, no FAISS)."""
    with tempfile.TemporaryDirectory(prefix="albatross-bench-") as data_dir:
        workspace = Workspace.open(app_config(folder, Path(data_dir), encoder))
        try:
            info = workspace.catalog.create("bench", CollectionSpec(model=""))
            collection_encoder = workspace.catalog.encoder_for(info)
            collection_encoder.encode([WARM_UP])
            documents = [Document(p.id, p.text, p.title) for p in passages]
            with Stopwatch() as watch:
                encoded = encode_documents(documents, collection_encoder, info)
        finally:
            workspace.close()
    first_chunks = np.stack([doc.vectors[0] for doc in encoded])
    return Run(label or "Albatross embedding only", len(passages), tokens, watch.seconds, first_chunks,
               collection_encoder.encoder.precision)


def albatross_end_to_end(
    folder: Path, corpus_file: Path, docs: int, tokens: int, encoder: EncoderConfig, label: str
) -> Run:
    """read -> chunk -> embed -> SQL -> FAISS, into a temporary SQLite workspace."""
    with tempfile.TemporaryDirectory(prefix="albatross-bench-") as data_dir:
        app = app_config(folder, Path(data_dir), encoder)
        workspace = Workspace.open(app)
        try:
            info = workspace.catalog.create("bench", CollectionSpec(model=""))
            workspace.catalog.encoder_for(info).encode([WARM_UP])
            with Stopwatch() as watch:
                summary = workspace.ingestor.ingest("bench", read_path(str(corpus_file)))
                index = SyncedIndex.open(workspace.store, info, app.store.snapshot_dir)
        finally:
            workspace.close()
    if summary.written != docs or index.ntotal < docs:
        raise RuntimeError(f"ingested {summary.written} documents, {index.ntotal} vectors; expected {docs}")
    return Run(label, docs, tokens, watch.seconds)


def load_texts(docs: int, corpus_file: Path | None) -> tuple[list[corpus.Passage], str, list[str]]:
    """The benchmark's passages, where they came from, and the text Albatross embeds for each."""
    passages, source = corpus.load(docs, corpus_file)
    return passages, source, [embedding_text(p.title, p.text) for p in passages]


def count_tokens(folder: Path, texts: list[str]) -> int:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"])


def _agreement(a: np.ndarray, b: np.ndarray) -> str:
    cosine = np.sum(a * b, axis=1)
    return f"min {cosine.min():.6f}, mean {cosine.mean():.6f}"


def _median_run(runs: list[Run]) -> Run:
    """One row for a system measured in several rounds: the median seconds, the first vectors."""
    return replace(runs[0], seconds=float(np.median([run.seconds for run in runs])))


def ratio(runs: dict[str, list[Run]], system: str, baseline: str) -> str:
    """Median over rounds of ``baseline seconds / system seconds`` (each round its own ratio, so
    a noisy round shifts one sample, not the figure), with the range when there are several."""
    if system == baseline:
        return "1.00x"
    ratios = [b.seconds / r.seconds for r, b in zip(runs[system], runs[baseline], strict=True)]
    text = f"{float(np.median(ratios)):.2f}x"
    return text + f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else text


def _table(runs: dict[str, list[Run]], per_doc: str | None, batched_name: str) -> str:
    rows = []
    for system, measured in runs.items():
        run = _median_run(measured)
        rows.append([
            run.system,
            run.docs,
            f"{run.seconds:.1f}",
            f"{run.docs_per_second:.1f}",
            f"{run.tokens_per_second:.0f}",
            ratio(runs, system, per_doc) if per_doc else "-",
            ratio(runs, system, batched_name),
        ])
    header = ["system", "docs", "median s", "docs/s", "tokens/s", "vs per-document", "vs batched"]
    return markdown_table(header, rows)


def interleaved(systems: list[tuple[str, Callable[[], Run]]], rounds: int) -> dict[str, list[Run]]:
    """Run every system once per round, in alternating order (forward, then backward), so slow
    phases of a shared host fall on every system alike; returns each system's runs in round order."""
    runs: dict[str, list[Run]] = {name: [] for name, _ in systems}
    for number in range(rounds):
        order = systems if number % 2 == 0 else systems[::-1]
        for name, measure in order:
            log(f"round {number + 1}/{rounds}: {name}")
            runs[name].append(measure())
    return runs


def _label(kind: str, dtype: str, dtypes: list[str]) -> str:
    return kind if dtypes == ["auto"] else f"{kind}, dtype {dtype}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="passages to ingest (default 1000)")
    parser.add_argument("--model-docs", type=int, default=200,
                        help="passages for the default vs albert-base-v2-shaped comparison")
    parser.add_argument("--corpus", type=Path, help=f"BEIR corpus.jsonl (default {corpus.MSMARCO})")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is present")
    parser.add_argument("--dtypes", default="auto",
                        help="Albatross encoder dtypes to measure, comma-separated (auto = what "
                             "Albatross picks; e.g. auto,float32)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per system; the table shows medians (default 3)")
    parser.add_argument("--skip-per-document", action="store_true", help="leave out baseline (a)")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    args = parser.parse_args(argv)
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    # Every system gets the cores torch would use by default; Albatross shares them out among
    # its CPU streams (DeviceConfig.cpu_streams), the baselines give all of them to one forward.
    threads = torch.get_num_threads()

    passages, source, texts = load_texts(args.docs, args.corpus)
    with tempfile.TemporaryDirectory(prefix="albatross-bench-models-") as workdir:
        model = default_model(Path(workdir))
        corpus_file = corpus.write_jsonl(passages, Path(workdir) / "corpus.jsonl")
        tokens = count_tokens(model.folder, texts)
        log(f"{len(passages)} passages, {tokens} tokens, model {model.label}")
        per_doc_name = None if args.skip_per_document else "per-document transformers loop"
        batched_name = f"batched transformers loop (sorted, batch {BASELINE_BATCH})"
        systems = [(batched_name, lambda: batched(model.folder, texts, tokens, args.device, threads))]
        if per_doc_name:
            systems.insert(0, (per_doc_name, lambda: per_document(model.folder, texts, tokens, args.device, threads)))
        # As `albatross ingest` runs it: bulk ingestion may take int8 on CPU (DeviceConfig).
        encoders = {d: for_bulk_ingestion(app_config(model.folder, Path(workdir), EncoderConfig(
            device=DeviceConfig(device=args.device, dtype=d, threads=threads)))).encoder for d in dtypes}
        for dtype, encoder in encoders.items():
            embed_label = _label("Albatross embedding only", dtype, dtypes)
            e2e_label = _label("Albatross end to end (read, embed, SQL, FAISS)", dtype, dtypes)
            systems.append((embed_label, lambda e=encoder, n=embed_label: albatross_embedding(
                model.folder, passages, tokens, e, n)))
            systems.append((e2e_label, lambda e=encoder, n=e2e_label: albatross_end_to_end(
                model.folder, corpus_file, len(passages), tokens, e, n)))
        runs = interleaved(systems, args.rounds)

        # Speed depends on the shape: both models in float32, so int8 cannot favour either.
        encoder = EncoderConfig(device=DeviceConfig(device=args.device, dtype="float32", threads=threads))
        base = albert_base_shaped(Path(workdir), model.folder)
        model_passages = passages[: args.model_docs]
        model_tokens = count_tokens(model.folder, texts[: args.model_docs])
        log(f"model comparison on {len(model_passages)} passages")
        comparison = interleaved([
            (model.label, lambda: albatross_embedding(model.folder, model_passages, model_tokens, encoder,
                                                      model.label)),
            (base.label, lambda: albatross_embedding(base.folder, model_passages, model_tokens, encoder,
                                                     base.label)),
        ], args.rounds)

    reference = runs[batched_name][0].vectors
    lines = [
        f"- corpus: {source}; {tokens} tokens ({tokens / len(passages):.0f} per document, special tokens included)",
        f"- model: {model.label}; device {args.device}; {threads} torch threads per system (Albatross: "
        f"{BULK_CPU_STREAMS if args.device == 'cpu' else 1} streams sharing them); "
        f"{args.rounds} interleaved rounds, medians shown (ratios: median of the per-round ratios, range)",
        "",
        _table(runs, per_doc_name, batched_name),
        "",
    ]
    for dtype in dtypes:
        run = runs[_label("Albatross embedding only", dtype, dtypes)][0]
        lines.append(f"- Albatross dtype {dtype} ran as {run.precision}; vs the batched fp32 baseline: "
                     f"cosine {_agreement(run.vectors, reference)}")
    if per_doc_name:
        lines.append(f"- per-document vs batched baseline cosine {_agreement(runs[per_doc_name][0].vectors, reference)}")
    small, large = _median_run(comparison[model.label]), _median_run(comparison[base.label])
    lines += [
        "",
        f"Model comparison (Albatross embedding only, float32, {len(model_passages)} passages, "
        "same tokenizer):",
        "",
        markdown_table(
            ["model", "docs/s", "tokens/s", "ratio"],
            [
                [small.system, f"{small.docs_per_second:.1f}", f"{small.tokens_per_second:.0f}",
                 ratio(comparison, model.label, base.label)],
                [large.system, f"{large.docs_per_second:.1f}", f"{large.tokens_per_second:.0f}", "1.00x"],
            ],
        ),
    ]
    append_results("Ingestion", "\n".join(lines), record=not args.no_record)


if __name__ == "__main__":
    main()
