"""A BERT encoder rewritten, weight for weight, as an ``AlbertModel``.

With one layer group per layer (``num_hidden_groups = num_hidden_layers``, ``inner_group_num``
1), ``embedding_size = hidden_size`` and the embedding-to-hidden mapping set to the identity, an
AlbertModel computes exactly what the BertModel computes (all-MiniLM-L6-v2: max |difference| 0.0
of ``last_hidden_state``).  Two ``AlbertConfig`` defaults would break that silently and are set
here: ``hidden_act`` (``gelu_new``, the tanh approximation, where BERT uses erf ``gelu``) and
``embedding_size`` (128).
"""

from __future__ import annotations

import torch
from transformers import AlbertConfig, AlbertModel, BertConfig, BertModel

from albatross.training.warmstart import LAYER_MAP

#: ALBERT's special ids (``<pad>`` 0, ``[CLS]`` 2, ``[SEP]`` 3), as in ``spiece.model``.
ALBERT_SPECIAL_IDS = {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def albert_config(bert: BertConfig, vocab_size: int | None = None) -> AlbertConfig:
    """The unshared, unfactorised AlbertConfig that computes what ``bert`` computes."""
    positions = getattr(bert, "position_embedding_type", "absolute")  # transformers 5 drops it
    if positions != "absolute":
        raise ValueError(f"only absolute positions convert, not {positions!r}")
    return AlbertConfig(
        vocab_size=vocab_size or bert.vocab_size,
        embedding_size=bert.hidden_size,
        hidden_size=bert.hidden_size,
        num_hidden_layers=bert.num_hidden_layers,
        num_hidden_groups=bert.num_hidden_layers,
        inner_group_num=1,
        num_attention_heads=bert.num_attention_heads,
        intermediate_size=bert.intermediate_size,
        hidden_act=bert.hidden_act,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=bert.max_position_embeddings,
        type_vocab_size=bert.type_vocab_size,
        layer_norm_eps=bert.layer_norm_eps,
        **ALBERT_SPECIAL_IDS,
    )


@torch.no_grad()
def convert_bert(bert: BertModel, rows: torch.Tensor | None = None) -> AlbertModel:
    """An AlbertModel (no pooler, eval mode) computing exactly what ``bert`` computes.

    ``rows``: (V,) int64 teacher token id of each new token id (the vocabulary is reordered,
    e.g. to SentencePiece ids); None keeps the teacher's ids.
    """
    word = bert.embeddings.word_embeddings.weight
    rows = torch.arange(word.shape[0]) if rows is None else rows
    albert = AlbertModel(albert_config(bert.config, len(rows)), add_pooling_layer=False)
    embeddings = albert.embeddings
    embeddings.word_embeddings.weight.copy_(word[rows])
    embeddings.position_embeddings.weight.copy_(bert.embeddings.position_embeddings.weight)
    embeddings.token_type_embeddings.weight.copy_(bert.embeddings.token_type_embeddings.weight)
    embeddings.LayerNorm.load_state_dict(bert.embeddings.LayerNorm.state_dict())
    mapping = albert.encoder.embedding_hidden_mapping_in
    mapping.weight.copy_(torch.eye(mapping.weight.shape[0]))
    mapping.bias.zero_()
    for group, layer in zip(albert.encoder.albert_layer_groups, bert.encoder.layer, strict=True):
        copy_bert_layer(layer, group.albert_layers[0])
    return albert.eval()


@torch.no_grad()
def copy_bert_layer(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Copy one ``BertLayer``'s parameters into one ``AlbertLayer`` (same shapes)."""
    theirs = dict(source.named_parameters())
    ours = dict(target.named_parameters())
    for bert_name, albert_name in LAYER_MAP.items():
        for kind in ("weight", "bias"):
            ours[f"{albert_name}.{kind}"].copy_(theirs[f"{bert_name}.{kind}"])
