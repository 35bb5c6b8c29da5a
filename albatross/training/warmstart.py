"""Student architecture and its warm start from the teacher's weights.

The student is a published ``AlbertModel``: factorised embeddings (``embedding_size`` 128
projected to ``hidden_size``) and one transformer layer shared by all ``num_hidden_layers``.

Warm start (a random start was far slower to approach the teacher in the pilot; see the
model card):

1. every SentencePiece piece is embedded with the teacher's input word embeddings (the mean of
   the WordPiece sub-tokens of its surface string): ``E`` (V, 384);
2. a truncated SVD ``E ~= (U_r S_r) Vh_r`` gives the factorised pair: word embeddings
   ``U_r S_r`` (V, r) and the projection ``Vh_r^T`` (384, r).  Positions and the token type are
   projected through the same basis;
3. the shared layer is copied from one teacher layer (same shapes, same GELU).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AlbertConfig, AlbertModel, PreTrainedModel, PreTrainedTokenizerBase

from albatross.training.bag import fit_factorised, fit_table
from albatross.training.teacher import budget_batches

#: Albert special pieces -> the teacher's equivalents.
SPECIAL_MAP = {"<pad>": "[PAD]", "<unk>": "[UNK]", "[CLS]": "[CLS]", "[SEP]": "[SEP]",
               "[MASK]": "[MASK]"}

#: Teacher BertLayer parameter -> student AlbertLayer parameter (same shapes).
LAYER_MAP = {
    "attention.self.query": "attention.query",
    "attention.self.key": "attention.key",
    "attention.self.value": "attention.value",
    "attention.output.dense": "attention.dense",
    "attention.output.LayerNorm": "attention.LayerNorm",
    "intermediate.dense": "ffn",
    "output.dense": "ffn_output",
    "output.LayerNorm": "full_layer_layer_norm",
}


def student_config(vocab_size: int, hidden_size: int = 384, num_layers: int = 6,
                   embedding_size: int = 128, heads: int = 12,
                   intermediate_size: int = 1536, groups: int = 1) -> AlbertConfig:
    """AlbertConfig of the default encoder: factorised embeddings, GELU, and ``groups`` layers
    each shared by ``num_layers / groups`` consecutive layers (ALBERT's ``num_hidden_groups``)."""
    if groups < 1 or num_layers % groups:
        raise ValueError(f"{num_layers} layers cannot be split into {groups} equal groups")
    return AlbertConfig(
        vocab_size=vocab_size, embedding_size=embedding_size, hidden_size=hidden_size,
        num_hidden_layers=num_layers, num_hidden_groups=groups, num_attention_heads=heads,
        intermediate_size=intermediate_size, inner_group_num=1, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        max_position_embeddings=512, type_vocab_size=2, layer_norm_eps=1e-12,
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )


def new_student(config: AlbertConfig) -> AlbertModel:
    """A randomly initialised AlbertModel without the (unused) pooler head."""
    return AlbertModel(config, add_pooling_layer=False)


def student_from_state(state: dict[str, torch.Tensor], config: dict | None) -> AlbertModel:
    """An untrained AlbertModel shaped for ``state``: by the saved ``config`` dict when the
    checkpoint has one, else the default shape (checkpoints written before it was saved)."""
    if config is not None:
        return new_student(AlbertConfig.from_dict(config))
    return new_student(student_config(state["embeddings.word_embeddings.weight"].shape[0]))


_GROUP_PARAM = re.compile(r"encoder\.albert_layer_groups\.(\d+)\.(.+)")


def load_exported(student: AlbertModel, folder: Path) -> None:
    """Start ``student`` from an exported model folder, computing exactly what it computes.

    The student may be grown (function-preserving): more layer groups, each a copy of the
    exported group its layers used, and a wider feed-forward layer whose new units feed the
    output through zero weights.  Raises ValueError naming what else differs.
    """
    exported = AlbertModel.from_pretrained(folder, add_pooling_layer=False, dtype=torch.float32)
    ours, theirs = student.config, exported.config
    differing = [k for k in ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers",
                             "num_attention_heads", "hidden_act")
                 if getattr(ours, k) != getattr(theirs, k)]
    if ours.num_hidden_groups % theirs.num_hidden_groups:
        differing.append("num_hidden_groups")
    if ours.intermediate_size < theirs.intermediate_size:
        differing.append("intermediate_size")
    if differing:
        raise ValueError(f"{folder} cannot start this student: {', '.join(differing)} differ")
    grow_into(exported.state_dict(), student, theirs.num_hidden_groups)


@torch.no_grad()
def grow_into(source: dict[str, torch.Tensor], student: AlbertModel, source_groups: int) -> None:
    """Copy ``source`` (a state dict of ``source_groups`` groups) into the larger ``student``."""
    per_group = student.config.num_hidden_layers // student.config.num_hidden_groups
    per_source_group = student.config.num_hidden_layers // source_groups
    for name, target in student.state_dict().items():
        match = _GROUP_PARAM.match(name)
        if match:
            first_layer = int(match.group(1)) * per_group
            name = f"encoder.albert_layer_groups.{first_layer // per_source_group}.{match.group(2)}"
        value = source[name]
        if name.endswith("ffn_output.weight"):
            target.zero_()  # new units contribute nothing until training moves them
        target[tuple(slice(0, n) for n in value.shape)] = value


def piece_embeddings(pieces: list[str], tokenizer: PreTrainedTokenizerBase,
                     word_embeddings: torch.Tensor) -> torch.Tensor:
    """Teacher input embedding of each SentencePiece piece.

    pieces: V strings (``▁`` marks a word start); word_embeddings: (V_teacher, d).
    Returns (V, d) float32.  A piece that continues a word uses the teacher's ``##`` form when it
    exists, because that is the sub-token the teacher saw in the same position.
    """
    vocab = tokenizer.get_vocab()
    fallback = word_embeddings.mean(dim=0)
    rows = []
    for piece in pieces:
        if piece in SPECIAL_MAP:
            ids = [vocab[SPECIAL_MAP[piece]]]
        elif not piece.startswith("▁") and f"##{piece}" in vocab:
            ids = [vocab[f"##{piece}"]]
        else:
            ids = tokenizer(piece.lstrip("▁"), add_special_tokens=False)["input_ids"]
        rows.append(word_embeddings[ids].mean(dim=0) if ids else fallback)
    return torch.stack(rows).float()


def truncated_svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factorisation ``matrix ~= factors @ basis``.

    matrix: (n, d).  Returns factors (n, rank) = U_r S_r and basis (rank, d) = Vh_r with
    orthonormal rows.
    """
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return (u[:, :rank] * s[:rank]).float(), vh[:rank].float()


@torch.no_grad()
def warm_start(student: AlbertModel, pieces: list[str], teacher_tokenizer: PreTrainedTokenizerBase,
               teacher: PreTrainedModel, layer: int | None = 0) -> None:
    """Overwrite ``student``'s embeddings, and its shared layer unless ``layer`` is None, from
    ``teacher`` (in place)."""
    t_emb = teacher.embeddings
    s_emb = student.embeddings
    rank = student.config.embedding_size
    factors, basis = truncated_svd(
        piece_embeddings(pieces, teacher_tokenizer, t_emb.word_embeddings.weight), rank)
    s_emb.word_embeddings.weight.copy_(factors)
    n_pos = s_emb.position_embeddings.weight.shape[0]
    s_emb.position_embeddings.weight.copy_(t_emb.position_embeddings.weight[:n_pos] @ basis.T)
    s_emb.token_type_embeddings.weight.copy_(t_emb.token_type_embeddings.weight @ basis.T)
    s_emb.LayerNorm.weight.fill_(1.0)
    s_emb.LayerNorm.bias.zero_()
    # The teacher normalises in 384 dims, the student in 128 before projecting: for a vector in
    # the basis' span the two differ by sqrt(384/128) in scale, then the teacher's affine applies.
    mapping = student.encoder.embedding_hidden_mapping_in
    scale = math.sqrt(basis.shape[1] / rank)
    mapping.weight.copy_(t_emb.LayerNorm.weight[:, None] * basis.T * scale)
    mapping.bias.copy_(t_emb.LayerNorm.bias)
    if layer is not None:
        copy_layer(student, teacher, layer)


@torch.no_grad()
def copy_layer(student: AlbertModel, teacher: PreTrainedModel, layer: int) -> None:
    """Copy teacher ``encoder.layer[layer]`` into the student's single shared AlbertLayer."""
    source = dict(teacher.encoder.layer[layer].named_parameters())
    target = dict(student.encoder.albert_layer_groups[0].albert_layers[0].named_parameters())
    for t_name, s_name in LAYER_MAP.items():
        for kind in ("weight", "bias"):
            target[f"{s_name}.{kind}"].copy_(source[f"{t_name}.{kind}"])


# -- static start ---------------------------------------------------------------------------------
#
# A bag of teacher-derived piece vectors (each piece run through the teacher alone, centred,
# weighted by log(1 + rank) so frequent pieces count less) already retrieves well: on the
# msmarco-5k check it scored nDCG@10 0.664 (0.638 when squeezed into a 125-d factorised
# embedding), against 0.582 for the student distilled 2,093 steps from the "warm" start.  The
# static start builds an ALBERT whose output at step 0 *is* that bag, so distillation begins
# from a good retriever and only has to learn context:
#
# - every LayerNorm in the path sees ``h + BIG * u``, where ``u = (e0 - e1) / sqrt(2)`` and ``h``
#   lives in the subspace with zero coordinates 0 and 1 and zero coordinate sum.  The big
#   constant fixes the normalising std, so LayerNorm becomes ``h * BIG / sqrt(BIG^2 + |h|^2)``,
#   i.e. the identity to within 0.2% for ``|h| <= 1``, and a zero gain on coordinates 0 and 1
#   removes ``u`` again;
# - the attention and feed-forward output projections start at zero (a standard zero-init of
#   residual branches) with bias ``BIG * u``, so each layer is that identity until training moves
#   them; queries, keys, values and the first feed-forward layer come from a teacher layer.

BIG = 20.0
SPECIAL_PIECES = 5  # <pad> <unk> [CLS] [SEP] [MASK]: ids 0-4, no weight in the bag


@torch.no_grad()
def piece_output_vectors(pieces: list[str], tokenizer: PreTrainedTokenizerBase,
                         teacher: PreTrainedModel) -> torch.Tensor:
    """Teacher output for each piece alone: ``[CLS] sub-tokens [SEP]`` mean-pooled, not
    normalised.  Returns (V, d) float32."""
    rows = [tokenizer(p.replace("▁", " ").strip() or p, truncation=True, max_length=16)["input_ids"]
            for p in pieces]
    out = torch.zeros(len(rows), teacher.config.hidden_size)
    for idx in budget_batches(np.array([len(r) for r in rows])):
        enc = tokenizer.pad({"input_ids": [rows[i] for i in idx]}, return_tensors="pt")
        hidden = teacher(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        out[torch.from_numpy(idx)] = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return out


def bag_vectors(outputs: torch.Tensor) -> torch.Tensor:
    """Centred piece vectors weighted by ``log(1 + id)`` (unigram ids follow piece frequency, so
    this is a Zipf weight); special pieces get zero.  (V, d) -> (V, d)."""
    weights = torch.log1p(torch.arange(len(outputs), dtype=torch.float32))
    weights[:SPECIAL_PIECES] = 0.0
    return (outputs - outputs[SPECIAL_PIECES:].mean(dim=0)) * weights[:, None]


def safe_subspace(dim: int) -> torch.Tensor:
    """Orthonormal basis (dim, dim - 3) of {x : x0 = x1 = 0, sum(x) = 0}: vectors LayerNorm
    leaves alone once ``BIG * u`` fixes its statistics."""
    centring = torch.eye(dim - 2, dtype=torch.float64) - 1.0 / (dim - 2)
    basis = torch.linalg.svd(centring)[0][:, : dim - 3]
    return torch.cat([torch.zeros(2, dim - 3, dtype=torch.float64), basis]).float()


def big_direction(dim: int) -> torch.Tensor:
    """``BIG * (e0 - e1) / sqrt(2)``: zero-sum, outside the safe subspace."""
    u = torch.zeros(dim)
    u[0], u[1] = 1.0, -1.0
    return BIG * u / math.sqrt(2.0)


def _linear_layer_norm(norm: torch.nn.LayerNorm) -> None:
    """Gain BIG/sqrt(d) (undoes the std that BIG fixes), zero on the BIG coordinates, no bias."""
    dim = norm.weight.shape[0]
    norm.weight.fill_(BIG / math.sqrt(dim))
    norm.weight[:2] = 0.0
    norm.bias.zero_()


def static_start(student: AlbertModel, pieces: list[str], teacher_tokenizer: PreTrainedTokenizerBase,
                 teacher: PreTrainedModel, layer: int = 0,
                 fit_on: tuple[Sequence[Sequence[int]], torch.Tensor] | None = None,
                 fit_epochs: int = 18) -> None:
    """Make ``student`` compute the bag of piece vectors (see above), in place.

    ``fit_on`` = (token ids per text, (n, d) unit teacher vectors): fit the bag to them first
    (``albatross.training.bag``) instead of taking each piece's isolated teacher vector.
    """
    coords, basis = start_bag(student.config, pieces, teacher_tokenizer, teacher, fit_on, fit_epochs)
    _write_static(student, coords, basis, teacher, layer)


def start_bag(config: AlbertConfig, pieces: list[str], teacher_tokenizer: PreTrainedTokenizerBase,
              teacher: PreTrainedModel,
              fit_on: tuple[Sequence[Sequence[int]], torch.Tensor] | None = None,
              fit_epochs: int = 18) -> tuple[torch.Tensor, torch.Tensor]:
    """The static start's bag as (coords (V, E-3) with row norms <= 1, basis (E-3, H) with
    orthonormal rows in the hidden safe subspace)."""
    rank = config.embedding_size - 3
    bag = bag_vectors(piece_output_vectors(pieces, teacher_tokenizer, teacher))
    inner_h = safe_subspace(config.hidden_size)
    if fit_on is not None:
        rows, targets = fit_on
        bag = fit_table(bag, rows, targets, frozen=SPECIAL_PIECES, epochs=fit_epochs)
    coords, basis = truncated_svd((bag @ inner_h) @ inner_h.T, rank)
    if fit_on is not None:
        table = fit_factorised(coords, basis, inner_h, rows, targets, frozen=SPECIAL_PIECES)
        coords, basis = truncated_svd(table, rank)
    return coords / coords.norm(dim=1).max(), basis


@torch.no_grad()
def _write_static(student: AlbertModel, coords: torch.Tensor, basis: torch.Tensor,
                  teacher: PreTrainedModel, layer: int) -> None:
    """Write the bag (coords @ basis) into ``student``'s embeddings and make every layer the
    identity on it (see above)."""
    emb, hidden = student.config.embedding_size, student.config.hidden_size
    inner_e = safe_subspace(emb)  # (E, r)
    s_emb = student.embeddings
    s_emb.word_embeddings.weight.copy_(coords @ inner_e.T + big_direction(emb))
    s_emb.position_embeddings.weight.zero_()
    s_emb.token_type_embeddings.weight.zero_()
    _linear_layer_norm(s_emb.LayerNorm)
    mapping = student.encoder.embedding_hidden_mapping_in
    mapping.weight.copy_(basis.T @ inner_e.T)  # (H, E): embedding coordinates -> hidden subspace
    mapping.bias.zero_()
    copy_layer(student, teacher, layer)
    shared = student.encoder.albert_layer_groups[0].albert_layers[0]
    for projection in (shared.attention.dense, shared.ffn_output):
        projection.weight.zero_()
        projection.bias.copy_(big_direction(hidden))
    _linear_layer_norm(shared.attention.LayerNorm)
    _linear_layer_norm(shared.full_layer_layer_norm)
