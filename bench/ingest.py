"""Ingestion throughput: Albatross against two plain-transformers baselines, same model, same run.

``python -m bench.ingest [--docs N] [--model-docs M] [--corpus PATH] [--device cpu|cuda]``

Systems, all on the same passages (title + newline + text, mean pooling, unit vectors):

- per-document: ``AutoTokenizer``/``AutoModel``, one document per forward pass, ``no_grad``.
- batched: what a careful user writes with transformers alone: token lengths sorted, batches of
  32 padded by the tokenizer, ``inference_mode``.
- Albatross, embedding only: ``indexer.ingest.encode_documents`` (chunking + the encoder).
- Albatross, end to end: a JSONL file read by ``indexer.readers`` -> ``Ingestor.ingest`` (chunk,
  embed, one SQL transaction per batch into a temporary SQLite workspace) -> ``SyncedIndex.open``
  (FAISS built from SQL, caught up from the change log).

Model loading is outside every timer; each system encodes one warm-up text first. Then the
default model and the albert-base-v2-shaped one are compared by Albatross embedding docs/s on
``--model-docs`` passages.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from bench import corpus
from bench.common import Stopwatch, append_results, log, markdown_table
from bench.models import albert_base_shaped, default_model
from indexer.config import AppConfig, DeviceConfig, EncoderConfig, IngestConfig, StoreConfig
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


def per_document(folder: Path, texts: list[str], tokens: int, device: str) -> Run:
    """Baseline (a): one document at a time."""
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


def batched(folder: Path, texts: list[str], tokens: int, device: str) -> Run:
    """Baseline (b): length-sorted batches of 32, ``inference_mode``."""
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


def _app(folder: Path, data_dir: Path, encoder: EncoderConfig) -> AppConfig:
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
        workspace = Workspace.open(_app(folder, Path(data_dir), encoder))
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
    return Run(label or "Albatross embedding only", len(passages), tokens, watch.seconds, first_chunks)


def albatross_end_to_end(
    folder: Path, corpus_file: Path, docs: int, tokens: int, encoder: EncoderConfig, label: str
) -> Run:
    """read -> chunk -> embed -> SQL -> FAISS, into a temporary SQLite workspace."""
    with tempfile.TemporaryDirectory(prefix="albatross-bench-") as data_dir:
        app = _app(folder, Path(data_dir), encoder)
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


def _count_tokens(folder: Path, texts: list[str]) -> int:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"])


def _agreement(a: np.ndarray, b: np.ndarray) -> str:
    cosine = np.sum(a * b, axis=1)
    return f"min {cosine.min():.6f}, mean {cosine.mean():.6f}"


def _table(runs: list[Run], per_doc: Run | None, batched_run: Run) -> str:
    rows = [
        [
            run.system,
            run.docs,
            f"{run.seconds:.1f}",
            f"{run.docs_per_second:.1f}",
            f"{run.tokens_per_second:.0f}",
            f"{run.docs_per_second / per_doc.docs_per_second:.2f}x" if per_doc else "-",
            f"{run.docs_per_second / batched_run.docs_per_second:.2f}x",
        ]
        for run in runs
    ]
    header = ["system", "docs", "seconds", "docs/s", "tokens/s", "vs per-document", "vs batched"]
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=1000, help="passages to ingest (default 1000)")
    parser.add_argument("--model-docs", type=int, default=200,
                        help="passages for the default vs albert-base-v2-shaped comparison")
    parser.add_argument("--corpus", type=Path, help=f"BEIR corpus.jsonl (default {corpus.MSMARCO})")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU is present")
    parser.add_argument("--skip-per-document", action="store_true", help="leave out baseline (a)")
    parser.add_argument("--int8", action="store_true",
                        help="also run Albatross with EncoderConfig(quantize_int8=True) (changes vectors)")
    parser.add_argument("--no-record", action="store_true", help="print, do not append to RESULTS.md")
    args = parser.parse_args(argv)

    passages, source = corpus.load(args.docs, args.corpus)
    texts = [embedding_text(p.title, p.text) for p in passages]
    device = DeviceConfig(device=args.device)
    encoder = EncoderConfig(device=device)
    with tempfile.TemporaryDirectory(prefix="albatross-bench-models-") as workdir:
        model = default_model(Path(workdir))
        corpus_file = corpus.write_jsonl(passages, Path(workdir) / "corpus.jsonl")
        tokens = _count_tokens(model.folder, texts)
        log(f"{len(passages)} passages, {tokens} tokens, model {model.label}")
        runs = []
        per_doc = None
        if not args.skip_per_document:
            log("baseline (a): per-document loop")
            per_doc = per_document(model.folder, texts, tokens, args.device)
            runs.append(per_doc)
        log("baseline (b): batched loop")
        batched_run = batched(model.folder, texts, tokens, args.device)
        runs.append(batched_run)
        log("Albatross: embedding only")
        embedding = albatross_embedding(model.folder, passages, tokens, encoder)
        runs.append(embedding)
        log("Albatross: end to end")
        runs.append(albatross_end_to_end(model.folder, corpus_file, len(passages), tokens, encoder,
                                         "Albatross end to end (read, embed, SQL, FAISS)"))
        if args.int8:
            int8 = replace(encoder, quantize_int8=True)
            log("Albatross int8: embedding only, end to end")
            int8_embedding = albatross_embedding(model.folder, passages, tokens, int8,
                                                 "Albatross embedding only, int8 opt-in")
            runs.append(int8_embedding)
            runs.append(albatross_end_to_end(model.folder, corpus_file, len(passages), tokens, int8,
                                             "Albatross end to end, int8 opt-in"))
        base = albert_base_shaped(Path(workdir), model.folder)
        model_passages = passages[: args.model_docs]
        model_tokens = _count_tokens(model.folder, texts[: args.model_docs])
        log(f"model comparison on {len(model_passages)} passages")
        small = albatross_embedding(model.folder, model_passages, model_tokens, encoder, model.label)
        large = albatross_embedding(base.folder, model_passages, model_tokens, encoder, base.label)

    lines = [
        f"- corpus: {source}; {tokens} tokens ({tokens / len(passages):.0f} per document, special tokens included)",
        f"- model: {model.label}; device {args.device}; torch threads {torch.get_num_threads()}",
        "",
        _table(runs, per_doc, batched_run),
        "",
        f"- same vectors: Albatross vs batched baseline cosine {_agreement(embedding.vectors, batched_run.vectors)}",
    ]
    if per_doc is not None:
        lines.append(f"- per-document vs batched baseline cosine {_agreement(per_doc.vectors, batched_run.vectors)}")
    if args.int8:
        lines.append(f"- int8 vs fp32 Albatross vectors cosine {_agreement(int8_embedding.vectors, embedding.vectors)}")
    lines += [
        "",
        f"Model comparison (Albatross embedding only, {len(model_passages)} passages, same tokenizer):",
        "",
        markdown_table(
            ["model", "docs/s", "tokens/s", "ratio"],
            [
                [small.system, f"{small.docs_per_second:.1f}", f"{small.tokens_per_second:.0f}",
                 f"{small.docs_per_second / large.docs_per_second:.2f}x"],
                [large.system, f"{large.docs_per_second:.1f}", f"{large.tokens_per_second:.0f}", "1.00x"],
            ],
        ),
    ]
    append_results("Ingestion", "\n".join(lines), record=not args.no_record)


if __name__ == "__main__":
    main()
