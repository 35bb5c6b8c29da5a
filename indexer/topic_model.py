"""The shipped WordNet topic classifier: the default encoder plus a small trained head.

The package ships only the head (``models/wordnet-topic/head.safetensors``, under 1 MB); this
module assembles a full ``AlbertForSequenceClassification`` folder from it and the shipped encoder,
offline, for ``albatross ingest --classifier``. The head is exactly the sequence classifier's own
top: ``logits = classifier(tanh(pooler(h_cls)))``, with ``h_cls`` the encoder's last hidden state
at ``[CLS]``; it was trained on that very vector (``albatross.training.topic``), so the assembled
model computes what the head was trained and measured on, and nothing is approximated.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors.torch import load_file, safe_open

from indexer.checkpoints import model_revision
from indexer.config import DEFAULT_MODEL_DIR
from indexer.errors import InvalidArgument, ModelNotFound

if TYPE_CHECKING:
    from transformers import AlbertForSequenceClassification

TOPIC_HEAD_DIR = Path(__file__).resolve().parent / "models" / "wordnet-topic"
HEAD_FILE = "head.safetensors"
ENCODER_FILE = "model.safetensors"
#: Tensor names in the head file: the sequence classifier's own parameter names.
HEAD_TENSORS = ("albert.pooler.weight", "albert.pooler.bias", "classifier.weight", "classifier.bias")
_TOKENIZER_FILES = ("spiece.model", "tokenizer_config.json")


def head_labels(head_dir: Path = TOPIC_HEAD_DIR) -> tuple[list[str], str]:
    """(labels in logit order, revision of the encoder the head was trained on), from the head
    file's metadata."""
    path = head_dir / HEAD_FILE
    if not path.is_file():
        raise ModelNotFound(f"{path} is missing: rebuild it with `python -m albatross.training topic`")
    with safe_open(str(path), framework="pt") as head:
        metadata = head.metadata() or {}
    if "labels" not in metadata or "encoder_revision" not in metadata:
        raise ModelNotFound(f"{path} has no labels/encoder_revision metadata: it is not a topic head")
    return list(json.loads(metadata["labels"])), metadata["encoder_revision"]


def _assembled_classifier(
    encoder_dir: Path, head_dir: Path, labels: list[str]
) -> AlbertForSequenceClassification:
    """The classifier with every tensor from the encoder's file or the head's, in float32.

    Built from the config and loaded strictly rather than by ``from_pretrained``: the encoder
    stores no pooler and no classifier (the head supplies them), so ``from_pretrained`` would log a
    load report calling them MISSING on every build, and the CLI would have to hide transformers'
    load reports to keep quiet, real ones included. A tensor missing or left over here is an error."""
    from transformers import AlbertConfig, AlbertForSequenceClassification

    config = AlbertConfig.from_pretrained(
        encoder_dir,
        local_files_only=True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model = AlbertForSequenceClassification(config)  # every tensor is overwritten below
    weights = {f"albert.{name}": tensor for name, tensor in load_file(str(encoder_dir / ENCODER_FILE)).items()}
    weights.update(load_file(str(head_dir / HEAD_FILE)))
    state = model.state_dict()
    for name, tensor in weights.items():
        if name not in state or state[name].shape != tensor.shape:
            raise ModelNotFound(f"{encoder_dir} + {head_dir / HEAD_FILE}: tensor {name} {tuple(tensor.shape)} does not fit")
    missing = sorted(set(state) - set(weights))
    if missing:
        raise ModelNotFound(f"{encoder_dir} + {head_dir / HEAD_FILE}: no tensor {', '.join(missing)}")
    model.load_state_dict({name: tensor.float() for name, tensor in weights.items()}, strict=True)
    return model


def build_topic_classifier(
    out: Path, head_dir: Path = TOPIC_HEAD_DIR, encoder_dir: Path = DEFAULT_MODEL_DIR
) -> Path:
    """Write the classifier folder to ``out`` (which must not exist, or be an empty folder).

    The weights are written in float32 (the encoder's fp16 weights upcast exactly), so the
    classifier computes in float32 on CPU as the head's training features were; the same inputs
    give a byte-identical ``model.safetensors``, hence the same revision on every machine.
    """
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidArgument(f"--out {out} exists and is not an empty folder", field="out")
    labels, trained_on = head_labels(head_dir)
    revision = model_revision(encoder_dir)
    if revision != trained_on:
        raise ModelNotFound(
            f"the topic head was trained on encoder revision {trained_on}, but {encoder_dir} is "
            f"revision {revision}; retrain it with `python -m albatross.training topic`"
        )
    model = _assembled_classifier(encoder_dir, head_dir, labels)
    model.config.architectures = ["AlbertForSequenceClassification"]
    model.config.dtype = "float32"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        model.eval().save_pretrained(staging)
        for name in _TOKENIZER_FILES:
            shutil.copyfile(encoder_dir / name, staging / name)
        shutil.copyfile(head_dir / "README.md", staging / "README.md")
        if out.exists():
            out.rmdir()
        staging.replace(out)  # a half-written folder never looks like a classifier
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
