"""Small retrieval evaluator for progress checks and the model card (never used for training).

Reads a BEIR-layout folder (``corpus.jsonl`` with ``_id``/``title``/``text``, ``queries.jsonl``,
``qrels/test.tsv`` without header, graded 0-3), embeds ``title + " " + text`` of every passage and
every judged query, ranks passages by exact cosine and reports:

- nDCG@10 with graded gains and the log2 discount, as trec_eval and ``albatross eval`` compute it;
- Recall@100, where a passage counts as relevant when its grade is >= 1.

The reader and the metrics are ``albatross.evaluation``'s, so these figures and ``albatross eval``'s
cannot drift apart.

Usage::

    python -m albatross.training.quick_eval --data <msmarco-5k folder> \
        --model indexer/models/albatross-albert-small      # or --model teacher
    python -m albatross.training.quick_eval --data ... --checkpoint CKPT --tokenizer TOKDIR \
        --record ~/.cache/albatross/train/eval.jsonl --label "student step 2000"
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from albatross.evaluation.beir import BeirDataset, corpus_rows, passage_text
from albatross.evaluation.metrics import ndcg_at, recall_at
from albatross.training.teacher import mean_pool

log = logging.getLogger(__name__)

Embedder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class BeirSet:
    """Passages, queries and graded judgements of one BEIR folder, as texts to embed."""

    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]


def load_beir(folder: Path, split: str = "test") -> BeirSet:
    """Read a BEIR folder with the evaluation's reader; only judged queries are kept."""
    dataset = BeirDataset.load(folder, split)
    rows = list(corpus_rows(dataset.corpus))
    queries = dataset.judged_queries()
    return BeirSet([str(row["_id"]) for row in rows], [passage_text(row) for row in rows],
                   [q.query_id for q in queries], [q.text for q in queries], dataset.qrels)


def per_query_metrics(data: BeirSet, docs: np.ndarray, queries: np.ndarray, k: int = 100) -> np.ndarray:
    """(queries, 2) array of nDCG@10 and Recall@k of exact cosine search over unit vectors."""
    top = np.argsort(-(queries @ docs.T), axis=1)[:, :k]
    rows = []
    for qi, qid in enumerate(data.query_ids):
        ranked = [data.doc_ids[j] for j in top[qi]]
        rows.append((ndcg_at(ranked, data.qrels[qid]), recall_at(ranked, data.qrels[qid], k)))
    return np.asarray(rows, dtype=np.float64)


def evaluate(data: BeirSet, embed: Embedder, k: int = 100) -> dict[str, float]:
    """Mean nDCG@10 and Recall@100 of exact cosine search with ``embed``.

    ``embed`` maps n strings to float32 (n, d) unit vectors.
    """
    ndcg, recall = per_query_metrics(data, embed(data.doc_texts), embed(data.query_texts), k).mean(axis=0)
    return {"ndcg@10": float(ndcg), "recall@100": float(recall),
            "queries": len(data.query_ids), "passages": len(data.doc_ids)}


def hf_embedder(tokenizer: object, model: torch.nn.Module, max_length: int = 256,
                batch_size: int = 32) -> Embedder:
    """Mean-pool + L2 embedder over any Hugging Face encoder, batched in length order."""
    model.eval()

    @torch.inference_mode()
    def embed(texts: list[str]) -> np.ndarray:
        order = np.argsort([len(t) for t in texts])
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        for b in range(0, len(texts), batch_size):
            idx = order[b:b + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=max_length, return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"],
                           attention_mask=enc["attention_mask"]).last_hidden_state
            out[idx] = mean_pool(hidden, enc["attention_mask"]).numpy()
        return out

    return embed


def load_embedder(model: str | None, checkpoint: Path | None, tokenizer_dir: Path | None,
                  max_length: int) -> Embedder:
    """Embedder for ``teacher``, an exported model folder, or a raw distillation checkpoint."""
    from transformers import AlbertModel, AlbertTokenizer

    if model == "teacher":
        from albatross.training.teacher import load_teacher

        return hf_embedder(*load_teacher(), max_length=max_length)
    if checkpoint is not None:
        from albatross.training.warmstart import student_from_state

        tok = AlbertTokenizer.from_pretrained(tokenizer_dir)
        saved = torch.load(checkpoint, weights_only=False, map_location="cpu")
        student = student_from_state(saved["model"], saved.get("student_config"))
        student.load_state_dict(saved["model"])
        return hf_embedder(tok, student, max_length=max_length)
    return hf_embedder(AlbertTokenizer.from_pretrained(model),
                       AlbertModel.from_pretrained(model, add_pooling_layer=False),
                       max_length=max_length)


def main(argv: list[str] | None = None) -> None:
    """Print the metrics of one encoder on one BEIR folder as JSON."""
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(prog="python -m albatross.training.quick_eval")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", help="model folder, or 'teacher'")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--tokenizer", type=Path, help="tokenizer folder for --checkpoint")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--record", type=Path,
                        help="append the result as a JSON line here (the model card reads it)")
    parser.add_argument("--label", default=None, help="name of this result in --record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    embed = load_embedder(args.model, args.checkpoint, args.tokenizer, args.max_length)
    result = {"label": args.label or str(args.model or args.checkpoint),
              **evaluate(load_beir(args.data), embed)}
    print(json.dumps(result))
    if args.record:
        with open(args.record, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
