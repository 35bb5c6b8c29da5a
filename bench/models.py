"""Model folders the benchmarks compare, built locally (nothing is downloaded).

- the default model: ``indexer/models/albatross-albert-small`` when it is there; otherwise a
  stand-in of the same shape (hidden 384, 6 layers sharing one group, 12 heads, intermediate
  1536, embedding 128) with random weights and a SentencePiece vocabulary trained here on the
  shipped WordNet glosses. Speed depends on the shape, not on the weights.
- the albert-base-v2-shaped model: random weights in albert-base-v2's exact published config
  (hidden 768, 12 layers, 12 heads, intermediate 3072, embedding 128, vocabulary 30000), with the
  default model's tokenizer so that both see the same token ids.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import AlbertConfig, AlbertModel

from albatross.training.vocab import TOKENIZER_CONFIG, unigram_model
from indexer.config import DEFAULT_MODEL_DIR
from indexer.samples import SAMPLE_CORPUS

SEED = 0
STANDIN_VOCABULARY = 8000
DEFAULT_SHAPE = dict(
    embedding_size=128, hidden_size=384, num_hidden_layers=6, num_hidden_groups=1,
    num_attention_heads=12, intermediate_size=1536, max_position_embeddings=512,
    hidden_act="gelu_new", type_vocab_size=2,
)
# albert-base-v2's published config.json (the fields that decide the computation).
ALBERT_BASE_V2 = dict(
    embedding_size=128, hidden_size=768, num_hidden_layers=12, num_hidden_groups=1,
    num_attention_heads=12, intermediate_size=3072, max_position_embeddings=512,
    hidden_act="gelu_new", type_vocab_size=2, vocab_size=30000,
)
_TOKENIZER_FILES = ("spiece.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class BenchModel:
    folder: Path
    label: str


def default_model(workdir: Path) -> BenchModel:
    """The shipped default model, or a same-shaped random stand-in built under ``workdir``."""
    if (DEFAULT_MODEL_DIR / "config.json").exists():
        return BenchModel(DEFAULT_MODEL_DIR, "albatross-albert-small (shipped, trained)")
    folder = workdir / "default-standin"
    _write_tokenizer(folder)
    vocabulary = spm.SentencePieceProcessor(model_file=str(folder / "spiece.model")).get_piece_size()
    _save(folder, AlbertConfig(vocab_size=vocabulary, pad_token_id=0, **DEFAULT_SHAPE))
    return BenchModel(folder, "albatross-albert-small shape, random stand-in (trained model absent)")


def albert_base_shaped(workdir: Path, tokenizer_from: Path) -> BenchModel:
    """Random weights in albert-base-v2's config, tokenizer copied from ``tokenizer_from``."""
    folder = workdir / "albert-base-v2-shaped"
    folder.mkdir(parents=True, exist_ok=True)
    for name in _TOKENIZER_FILES:
        if (tokenizer_from / name).exists():
            shutil.copy(tokenizer_from / name, folder / name)
    _save(folder, AlbertConfig(pad_token_id=0, bos_token_id=2, eos_token_id=3, **ALBERT_BASE_V2))
    return BenchModel(folder, "albert-base-v2 shape, random weights")


def _save(folder: Path, config: AlbertConfig) -> None:
    torch.manual_seed(SEED)
    AlbertModel(config).save_pretrained(folder)


def _write_tokenizer(folder: Path) -> None:
    """A unigram SentencePiece model of the WordNet glosses, ALBERT's specials at ids 0..4."""
    folder.mkdir(parents=True, exist_ok=True)
    with SAMPLE_CORPUS.open(encoding="utf-8") as stream:
        rows = [json.loads(line) for line in stream if line.strip()]
    sentences = [f"{row['title']} {row['text']}".lower() for row in rows]
    model = unigram_model(sentences, STANDIN_VOCABULARY, exact_size=False)
    (folder / "spiece.model").write_bytes(model)
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2) + "\n")
