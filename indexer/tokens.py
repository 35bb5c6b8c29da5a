"""Token ids around any model of the ALBERT/BERT families: its fast tokenizer loaded from a local
folder, one sequence's ids split around its special tokens, batches padded for the forward pass.
The encoder (``indexer.encoder``) and the classifier (``indexer.classifier``) both use them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from indexer.errors import ModelNotFound

# A real vocabulary is far larger; the transformers 5 trap (a tokenizer built without its
# spiece.model) leaves only the special tokens.
_MIN_VOCABULARY = 16


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelNotFound(f"cannot load a tokenizer from {folder}: {exc}") from exc
    if not tokenizer.is_fast:
        raise ModelNotFound(f"{folder}: character offsets need a fast tokenizer, got {type(tokenizer)}")
    if len(tokenizer) < _MIN_VOCABULARY:
        raise ModelNotFound(
            f"{folder}: the tokenizer has only {len(tokenizer)} tokens, so its vocabulary file "
            "(spiece.model, vocab.txt or tokenizer.json) was not read"
        )
    if tokenizer.pad_token_id is None:
        raise ModelNotFound(f"{folder}: the tokenizer defines no padding token to pad batches with")
    return tokenizer


def split_specials(ids: list[int], special: list[int]) -> tuple[list[int], list[int], list[int]]:
    """Split one sequence's ids into (leading specials, text tokens, trailing specials).

    A single-sequence template (ALBERT/BERT: ``[CLS] text [SEP]``) puts special tokens only
    around the text, so every window is embedded as ``prefix + window + suffix``.
    """
    body = [i for i, flag in enumerate(special) if not flag]
    if not body:
        return ids, [], []
    return ids[: body[0]], ids[body[0] : body[-1] + 1], ids[body[-1] + 1 :]


def pad_ids(ids: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token ids: input_ids and attention_mask, both int64 (batch, longest).

    On CUDA the host tensors are pinned and copied with ``non_blocking``, so the copy overlaps
    the padding of the next batch (a GPU-only path: the CPU test suite does not reach it).
    """
    longest = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for row, tokens in enumerate(ids):
        input_ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention_mask[row, : len(tokens)] = 1
    if device.type != "cuda":
        return input_ids, attention_mask
    return (
        input_ids.pin_memory().to(device, non_blocking=True),
        attention_mask.pin_memory().to(device, non_blocking=True),
    )
