"""ALBERT's factorised embedding fitted to an unfactorised model, not trained.

The embedding sum ``x = word + position + token_type`` (H dims) is LayerNorm'd and passed on.
LayerNorm only sees the centred ``Cx`` (C removes the mean) and its length: ``LN(x) = g *
sqrt(H) * Cx / |Cx| + b``.  Keeping the ``E - 1`` principal directions ``U`` of the centred
tables and placing them in E dims with a Householder reflection that maps the first axis onto
the all-ones direction gives ``z = Q x`` (``Q = Hs U``, Hs the other E - 1 columns) whose mean is
zero and whose length is ``|Cx|`` up to the truncation.  So LayerNorm in E dims (gain 1, bias 0)
followed by the mapping ``M = g * sqrt(H / E) * Q^T``, bias ``b``, reproduces the H-dim
LayerNorm on the kept subspace: the transformer layers see what they saw, minus the
discarded variance.
"""

from __future__ import annotations

import copy
import math

import torch
from transformers import AlbertModel


def householder_complement(size: int) -> torch.Tensor:
    """(size, size - 1) orthonormal columns spanning the zero-mean subspace of R^size.

    They are the columns 1.. of the reflection that maps the first axis onto ones / sqrt(size).
    """
    v = torch.zeros(size, dtype=torch.float64)
    v[0] = 1.0
    v -= 1.0 / math.sqrt(size)
    reflection = torch.eye(size, dtype=torch.float64) - 2.0 * torch.outer(v, v) / (v @ v)
    return reflection[:, 1:]


def principal_directions(word: torch.Tensor, position: torch.Tensor, token_type: torch.Tensor,
                         count: int, positions: int,
                         word_weights: torch.Tensor | None = None,
                         position_weights: torch.Tensor | None = None) -> torch.Tensor:
    """(count, H) orthonormal rows: the top eigenvectors of the second moment of ``C x`` for
    ``x = word + position + token_type[0]``, a word drawn uniformly from the table and a position
    uniformly from the first ``positions``, in float64.

    Stacking the tables' rows instead would weigh each position 1/30,000 and the token type (added
    to every token) 1/30,000 too, and lose both (cosine 0.13 at ``[CLS]`` in a probe).
    """
    centred = [t.double() - t.double().mean(dim=1, keepdim=True)
               for t in (word, position[:positions], token_type[:1])]
    weights = [torch.ones(len(t), dtype=torch.float64) for t in centred]
    if word_weights is not None:
        weights[0] = word_weights.double()
    if position_weights is not None:
        weights[1] = position_weights[:positions].double()
    weights = [w / w.sum() for w in weights]
    means = [w @ t for w, t in zip(weights, centred, strict=True)]
    total = sum(means)
    moment = sum(torch.cov(t.T, correction=0, aweights=w) for t, w in zip(centred[:2], weights[:2], strict=True))
    moment = moment + torch.outer(total, total)
    values, vectors = torch.linalg.eigh(moment)
    return vectors[:, values.argsort(descending=True)[:count]].T


@torch.no_grad()
def factorise(model: AlbertModel, embedding_size: int, positions: int = 256,
              word_weights: torch.Tensor | None = None,
              position_weights: torch.Tensor | None = None) -> AlbertModel:
    """A copy of ``model`` (embedding size H) with ``embedding_size`` E < H, fitted for texts of
    up to ``positions`` tokens."""
    hidden = model.config.hidden_size
    if not 2 <= embedding_size < hidden:
        raise ValueError(f"embedding size {embedding_size} must lie in 2..{hidden - 1}")
    if model.config.embedding_size != hidden:
        raise ValueError(f"the model is already factorised (embedding size "
                         f"{model.config.embedding_size} < hidden size {hidden})")
    source = model.embeddings
    tables = [source.word_embeddings.weight, source.position_embeddings.weight,
              source.token_type_embeddings.weight]
    directions = principal_directions(*tables, embedding_size - 1, positions, word_weights,
                                      position_weights)
    q = householder_complement(embedding_size) @ directions
    config = copy.deepcopy(model.config)
    config.embedding_size = embedding_size
    target = AlbertModel(config, add_pooling_layer=False)
    target.load_state_dict(_encoder_state(model), strict=False)
    for table, new in zip(tables, (target.embeddings.word_embeddings,
                                   target.embeddings.position_embeddings,
                                   target.embeddings.token_type_embeddings), strict=True):
        new.weight.copy_((table.double() @ q.T).float())
    target.embeddings.LayerNorm.weight.fill_(1.0)
    target.embeddings.LayerNorm.bias.zero_()
    mapping = target.encoder.embedding_hidden_mapping_in
    in_mapping = model.encoder.embedding_hidden_mapping_in
    # The source mapping (the identity after conversion) still applies after its LayerNorm.
    gain = source.LayerNorm.weight.double()
    projection = gain[:, None] * math.sqrt(hidden / embedding_size) * q.T
    mapping.weight.copy_((in_mapping.weight.double() @ projection).float())
    mapping.bias.copy_(in_mapping(source.LayerNorm.bias))
    return target.eval()


def _encoder_state(model: AlbertModel) -> dict[str, torch.Tensor]:
    """``model``'s parameters that keep their shape when the embedding is factorised."""
    return {name: value for name, value in model.state_dict().items()
            if not name.startswith("embeddings.") and "embedding_hidden_mapping_in" not in name}
