"""Export a distillation checkpoint as a self-describing Hugging Face model folder.

The folder holds ``config.json`` + ``model.safetensors`` (AlbertModel), ``spiece.model`` +
``tokenizer_config.json`` (so ``AlbertTokenizer.from_pretrained(folder)`` rebuilds the exact
tokenizer), ``albatross_pooling.json`` (how vectors are made) and ``README.md`` (model card).

It is written to a sibling temporary folder, verified (loads, tokenizes real text into known
pieces), then swapped in with renames, so a failed export never leaves a half-written model.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from transformers import AlbertModel, AlbertTokenizer

from albatross.training.card import TrainingFacts, model_card
from albatross.training.corpus import LICENCES, Text, source_counts
from albatross.training.vocab import write_tokenizer_config
from albatross.training.warmstart import student_from_state

log = logging.getLogger(__name__)

POOLING = {"pooling": "mean", "layers": [-1], "normalize": True, "max_length": 256}
#: Above this the weights are written in fp16 (the encoder computes in fp32 or its own dtype).
FP16_ABOVE_BYTES = 30 * 1024 * 1024
#: The largest folder the package carries.
MAX_FOLDER_BYTES = 64 * 1024 * 1024
PROBE = "The quick brown fox jumps over the lazy dog."


class ExportError(RuntimeError):
    """The exported folder failed verification (it is not swapped in)."""


def load_student(checkpoint: Path) -> tuple[AlbertModel, dict]:
    """The AlbertModel stored in a distillation checkpoint, and the checkpoint's metadata."""
    saved = torch.load(checkpoint, weights_only=False, map_location="cpu")
    model = student_from_state(saved["model"], saved.get("student_config"))
    model.load_state_dict(saved["model"])
    return model.eval(), {k: v for k, v in saved.items()
                          if k not in ("model", "optimizer", "student_config")}


def write_folder(model: AlbertModel, tok_dir: Path, folder: Path, card: str) -> None:
    """Write weights, tokenizer files, pooling config and card into ``folder`` (must not exist)."""
    folder.mkdir(parents=True)
    model.save_pretrained(folder, safe_serialization=True)
    if sum(p.stat().st_size for p in folder.iterdir()) > FP16_ABOVE_BYTES:
        # fp16 halves the size; only needed for configurations larger than the default.
        shutil.rmtree(folder)
        folder.mkdir()
        model.half().save_pretrained(folder, safe_serialization=True)
        model.float()
    # save_pretrained of the fast tokenizer would drop spiece.model: copy the source files.
    shutil.copy2(tok_dir / "spiece.model", folder / "spiece.model")
    write_tokenizer_config(folder)
    # A model with fewer positions than POOLING's max_length (a test's tiny one) says its own.
    pooling = {**POOLING, "max_length": min(POOLING["max_length"], model.config.max_position_embeddings)}
    (folder / "albatross_pooling.json").write_text(json.dumps(pooling, indent=2) + "\n")
    (folder / "README.md").write_text(card)


def verify_folder(folder: Path) -> None:
    """Raise ExportError unless ``folder`` loads and tokenizes real text into known pieces."""
    tokenizer = AlbertTokenizer.from_pretrained(folder)
    ids = tokenizer(PROBE)["input_ids"]
    words = [i for i in ids if i not in tokenizer.all_special_ids]
    if len(set(words)) < 8 or tokenizer.unk_token_id in ids:
        raise ExportError(f"tokenizer in {folder} maps {PROBE!r} to {ids}: vocabulary missing?")
    model = AlbertModel.from_pretrained(folder, add_pooling_layer=False)
    with torch.inference_mode():
        out = model(**tokenizer([PROBE], return_tensors="pt")).last_hidden_state
    if not torch.isfinite(out).all():
        raise ExportError(f"model in {folder} produces non-finite activations")
    size = sum(p.stat().st_size for p in folder.iterdir())
    if size > MAX_FOLDER_BYTES:
        raise ExportError(f"{folder} is {size / 2**20:.1f} MiB, over the {MAX_FOLDER_BYTES / 2**20:.0f} MiB budget")


def export_model(model: AlbertModel, tok_dir: Path, out: Path, card: str) -> Path:
    """Write, verify and atomically swap in the model folder at ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(out.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    write_folder(model, tok_dir, staging, card)
    verify_folder(staging)
    retired = out.with_name(out.name + ".old")
    shutil.rmtree(retired, ignore_errors=True)
    if out.exists():
        out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)
    log.info("exported %s", out)
    return out


def read_facts(meta: dict, texts: Iterable[Text], log_path: Path | None,
               eval_path: Path | None, notes_path: Path | None = None) -> TrainingFacts:
    """Collect the card's facts from checkpoint metadata, the train log and recorded evals."""
    lines = log_path.read_text().splitlines() if log_path and log_path.exists() else []
    cos = [float(m.group(1)) for line in lines
           if (m := re.search(r"heldout_cos (\d\.\d+)", line))]
    evals = []
    if eval_path and eval_path.exists():
        evals = [json.loads(line) for line in eval_path.read_text().splitlines() if line]
    return TrainingFacts(steps=meta.get("step", 0),
                         elapsed_minutes=meta.get("elapsed_s", 0.0) / 60,
                         heldout_cosine=cos[-1] if cos else None,
                         source_counts=source_counts(texts), evaluations=evals,
                         log_tail=[x for x in lines if x.startswith("step")][-3:],
                         config=meta.get("config", {}),
                         trained_on=meta.get("trained_on", TrainingFacts.trained_on),
                         notes=notes_path.read_text() if notes_path and notes_path.exists() else "")


def export_checkpoint(checkpoint: Path, tok_dir: Path, out: Path, texts: list[Text],
                      log_path: Path | None = None, eval_path: Path | None = None,
                      notes_path: Path | None = None) -> Path:
    """Export ``checkpoint`` to ``out`` with a model card built from the run's records."""

    model, meta = load_student(checkpoint)
    facts = read_facts(meta, texts, log_path, eval_path, notes_path)
    n_params = sum(p.numel() for p in model.parameters())
    return export_model(model, tok_dir, out, model_card(model.config, n_params, facts, LICENCES))
