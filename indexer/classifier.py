"""Classification at ingest: a local sequence classifier labels every document of a collection.

Any ``*ForSequenceClassification`` checkpoint of the ALBERT or BERT families, loaded from a local
folder or the local hub cache as the encoder is (never the network). A document is classified
from its whole text (title, then text, as the encoder sees it): the tokens are cut into windows
that fill the model's positions, with no overlap, so every token is read once; each window gives
a probability distribution over the labels, and the document's is their mean weighted by each
window's token count (a short last window weighs what it holds, not as much as a full one).
The label is the most probable class of that mean, the score its probability.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedTokenizerBase

from indexer.checkpoints import model_revision, resolve_model
from indexer.chunking import token_windows
from indexer.config import EncoderConfig
from indexer.errors import InvalidCollectionSpec, ModelNotFound
from indexer.placement import placement_for
from indexer.tokens import load_tokenizer, pad_ids, split_specials

FAMILIES = ("albert", "bert")
# Windows per forward pass: a classifier's windows are full-length, so a small batch fills a CPU.
_BATCH = 16


@dataclass(frozen=True)
class Label:
    """What the classifier says about one document: ``score`` is the label's probability."""

    name: str
    score: float


class Classifier:
    """One sequence classifier, loaded once and shared (thread-safe)."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module, folder: Path, device: torch.device
    ) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self._folder = folder
        self._device = device
        self._revision = model_revision(folder)
        self._labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
        self._lock = threading.Lock()  # the Rust tokenizer is not safe for concurrent calls
        positions = int(model.config.max_position_embeddings)
        self._window = min(positions, tokenizer.model_max_length) - tokenizer.num_special_tokens_to_add()

    @classmethod
    def load(cls, ref: str, config: EncoderConfig) -> Classifier:
        """``ModelNotFound`` when ``ref`` is not on this machine, ``InvalidCollectionSpec`` when
        it is not a sequence classifier of a supported family."""
        folder = resolve_model(ref, config.hf_cache_dir)
        model_config = AutoConfig.from_pretrained(folder, local_files_only=True)
        architectures = list(getattr(model_config, "architectures", None) or [])
        if model_config.model_type not in FAMILIES or not any(
            name.endswith("ForSequenceClassification") for name in architectures
        ):
            raise InvalidCollectionSpec(
                f"classifier {ref!r} is {model_config.model_type} {architectures or '(no architecture)'}; "
                "it must be an AlbertForSequenceClassification or BertForSequenceClassification "
                "checkpoint",
                field="classifier",
            )
        # The encoder's device; float32 there, as one pass per document is cheap beside its vectors.
        device = placement_for(config.device).device
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, config=model_config, local_files_only=True
            )
        except OSError as exc:
            raise ModelNotFound(f"cannot load the classifier in {folder}: {exc}") from exc
        model.to(device).eval()
        return cls(load_tokenizer(folder), model, folder, device)

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    def classify(self, texts: Sequence[str]) -> list[Label]:
        """One label per text, from the whole text (module docstring)."""
        if not texts:
            return []
        with self._lock:
            encoded = self._tokenizer(
                list(texts), add_special_tokens=True, return_special_tokens_mask=True, verbose=False
            )
        windows, owners = [], []
        for owner, (ids, special) in enumerate(
            zip(encoded["input_ids"], encoded["special_tokens_mask"], strict=True)
        ):
            prefix, body, suffix = split_specials(ids, special)
            for first, last in token_windows(len(body), self._window, 0) or [(0, 0)]:
                windows.append(prefix + body[first:last] + suffix)
                owners.append(owner)
        probabilities = self._probabilities(windows)
        weights = np.array([max(len(w), 1) for w in windows], dtype=np.float64)
        pooled = np.zeros((len(texts), len(self._labels)))
        np.add.at(pooled, owners, probabilities * weights[:, None])
        pooled /= pooled.sum(axis=1, keepdims=True)
        best = pooled.argmax(axis=1)
        return [Label(self._labels[b], float(pooled[i, b])) for i, b in enumerate(best)]

    def _probabilities(self, windows: list[list[int]]) -> np.ndarray:
        """Token id windows (special tokens included) -> float64 (n, labels) softmax rows."""
        out = np.empty((len(windows), len(self._labels)))
        # Batches of similar lengths pad little: unsorted short documents padded to the longest of
        # their batch ran the WordNet sample at a third of the speed.
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        for start in range(0, len(order), _BATCH):
            rows = order[start : start + _BATCH]
            input_ids, mask = pad_ids([windows[i] for i in rows], self._tokenizer.pad_token_id, self._device)
            with torch.inference_mode():
                logits = self._model(input_ids=input_ids, attention_mask=mask).logits
            out[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out
