"""Pooling: token vectors of one or more encoder layers -> one vector per sequence.

A pure function of ``(hidden_states, attention_mask)``: nothing here knows about models or
tokenizers, and the caller's tensors are never written to. Sums run in at least float32 so that
bf16/fp16 activations from the GPU do not lose precision in the mean.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from indexer.errors import InvalidArgument, InvalidCollectionSpec
from indexer.records import PoolingMode


def output_dimension(hidden_size: int, mode: PoolingMode) -> int:
    """Length of a pooled vector for an encoder of ``hidden_size``."""
    if hidden_size <= 0:
        raise InvalidArgument(f"hidden_size must be positive, got {hidden_size}", field="hidden_size")
    return 2 * hidden_size if PoolingMode(mode) is PoolingMode.MEAN_MAX else hidden_size


def pool(
    hidden_states: Sequence[torch.Tensor],
    attention_mask: torch.Tensor,
    mode: PoolingMode,
    layers: tuple[int, ...] = (-1,),
) -> torch.Tensor:
    """Pool the chosen layers into one vector per sequence.

    hidden_states: one ``(batch, seq, hidden)`` tensor per layer, as Hugging Face returns them with
        ``output_hidden_states=True`` (index 0 is the embeddings output, -1 the last layer).
    attention_mask: ``(batch, seq)``, non-zero where a position holds a real token.
    layers: indices into ``hidden_states``; several layers are averaged elementwise first.
    Returns ``(batch, output_dimension(hidden, mode))`` in the input dtype promoted to at least
    float32.
    """
    mode = _check_mode(mode)
    tokens = _average_layers(hidden_states, layers)
    mask = _check_mask(attention_mask, tokens)
    return _POOLERS[mode](tokens, mask)


def _check_mode(mode: PoolingMode | str) -> PoolingMode:
    try:
        return PoolingMode(mode)
    except ValueError as exc:
        choices = ", ".join(m.value for m in PoolingMode)
        raise InvalidCollectionSpec(
            f"unknown pooling mode {mode!r}; choose one of {choices}", field="pooling"
        ) from exc


def check_layers(layers: tuple[int, ...], states: int) -> None:
    """``layers`` must name at least one of the ``states`` hidden states an encoder returns
    (the embeddings and each layer's output; negative indices count from the last). The encoder
    asks this of a spec before loading weights, pooling of every call."""
    if not layers:
        raise InvalidCollectionSpec("layers must name at least one layer", field="layers")
    for layer in layers:
        if not -states <= layer < states:
            raise InvalidCollectionSpec(
                f"layer {layer} does not exist: the model has {states} hidden states "
                f"(valid indices {-states}..{states - 1})",
                field="layers",
            )


def _average_layers(hidden_states: Sequence[torch.Tensor], layers: tuple[int, ...]) -> torch.Tensor:
    """Elementwise mean of the chosen layers: ``(batch, seq, hidden)``, at least float32."""
    count = len(hidden_states)
    if count == 0:
        raise InvalidArgument("hidden_states is empty", field="hidden_states")
    check_layers(layers, count)
    chosen = [hidden_states[layer] for layer in layers]
    shape = chosen[0].shape
    if len(shape) != 3 or any(t.shape != shape for t in chosen):
        raise InvalidArgument(
            f"hidden states must all be (batch, seq, hidden); got {[tuple(t.shape) for t in chosen]}",
            field="hidden_states",
        )
    dtype = torch.promote_types(chosen[0].dtype, torch.float32)
    # torch.stack allocates a new tensor, so the caller's layers are left untouched.
    return torch.stack(chosen).to(dtype).mean(dim=0)


def _check_mask(attention_mask: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The mask as booleans ``(batch, seq)``, checked against the token tensor."""
    if tuple(attention_mask.shape) != tuple(tokens.shape[:2]):
        raise InvalidArgument(
            f"attention_mask has shape {tuple(attention_mask.shape)}, expected "
            f"{tuple(tokens.shape[:2])} (batch, seq)",
            field="attention_mask",
        )
    return attention_mask.to(device=tokens.device) != 0


def _mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    summed = (tokens * weights).sum(dim=1)
    # Clamped so a row without tokens gives zeros instead of NaN.
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def _max(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    masked = tokens.masked_fill(~mask.unsqueeze(-1), float("-inf"))
    maxed = masked.max(dim=1).values
    # A row without tokens has nothing to take the max of: zeros, as the mean gives.
    has_tokens = mask.any(dim=1, keepdim=True)
    return torch.where(has_tokens, maxed, torch.zeros_like(maxed))


def _cls(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    # Position 0 holds [CLS] for right-padded ALBERT/BERT inputs; clone so the result owns its data.
    return tokens[:, 0].clone()


def _mean_max(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.cat([_mean(tokens, mask), _max(tokens, mask)], dim=-1)


_POOLERS: dict[PoolingMode, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    PoolingMode.MEAN: _mean,
    PoolingMode.MAX: _max,
    PoolingMode.CLS: _cls,
    PoolingMode.MEAN_MAX: _mean_max,
}
