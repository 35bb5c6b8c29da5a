"""Warm-start shapes and a tiny exported folder that loads like the real one."""

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AlbertModel, AlbertTokenizer, BertConfig, BertModel, BertTokenizer

from albatross.training.export import export_model
from albatross.training.vocab import piece_strings, train_vocab
from albatross.training.warmstart import (
    bag_vectors,
    copy_layer,
    new_student,
    piece_output_vectors,
    safe_subspace,
    static_start,
    student_config,
    truncated_svd,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A harbour is a sheltered place where ships may anchor safely.",
    "Search engines rank passages by the similarity of their vectors to a query.",
    "Dictionaries give definitions, quotations and the history of words.",
    "What is a lighthouse and why was it built on the rocks?",
    "Quiet rivers flow slowly through green valleys towards the sea.",
] * 40


def tiny_student(vocab_size: int) -> AlbertModel:
    return new_student(student_config(vocab_size, hidden_size=32, num_layers=2,
                                      embedding_size=8, heads=2, intermediate_size=64))


def test_truncated_svd_factorises_to_the_requested_rank() -> None:
    matrix = torch.randn(50, 24, generator=torch.Generator().manual_seed(0))
    factors, basis = truncated_svd(matrix, 8)
    assert factors.shape == (50, 8) and basis.shape == (8, 24)
    torch.testing.assert_close(basis @ basis.T, torch.eye(8), atol=1e-5, rtol=0)
    full_factors, full_basis = truncated_svd(matrix, 24)
    torch.testing.assert_close(full_factors @ full_basis, matrix, atol=1e-4, rtol=0)


def test_a_teacher_layer_maps_one_to_one_onto_the_shared_albert_layer() -> None:
    torch.manual_seed(0)
    teacher = BertModel(BertConfig(vocab_size=30, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=64))
    student = tiny_student(30)
    copy_layer(student, teacher, layer=1)
    shared = student.encoder.albert_layer_groups[0].albert_layers[0]
    source = teacher.encoder.layer[1]
    assert torch.equal(shared.ffn.weight, source.intermediate.dense.weight)
    assert torch.equal(shared.attention.query.bias, source.attention.self.query.bias)
    assert torch.equal(shared.full_layer_layer_norm.weight, source.output.LayerNorm.weight)


def test_the_static_start_computes_the_bag_of_piece_vectors(tmp_path: Path) -> None:
    """At step 0 the whole ALBERT (LayerNorms, six shared layers, mean pooling) must equal the
    rank-reduced bag of teacher piece vectors it was built from; this is what makes it a good
    retriever before any training."""
    words = sorted({w.strip(".,?").lower() for line in SENTENCES for w in line.split()})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    teacher_tok = BertTokenizer(str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    teacher = BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=64)).eval()
    tok_dir = train_vocab(SENTENCES, tmp_path / "tok", vocab_size=120)
    pieces = piece_strings(tok_dir)
    student = new_student(student_config(len(pieces), hidden_size=32, num_layers=6, embedding_size=8,
                                         heads=2, intermediate_size=64)).eval()
    static_start(student, pieces, teacher_tok, teacher)

    bag = bag_vectors(piece_output_vectors(pieces, teacher_tok, teacher))
    inner = safe_subspace(32)
    coords, basis = truncated_svd((bag @ inner) @ inner.T, 8 - 3)
    tokenizer = AlbertTokenizer.from_pretrained(tok_dir)
    for text in SENTENCES[:6]:
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            produced = student(input_ids=ids).last_hidden_state.mean(dim=1)[0]
        expected = (coords[ids[0]] @ basis).sum(dim=0)
        cosine = torch.nn.functional.cosine_similarity(produced, expected, dim=0)
        assert cosine > 0.999, text


def test_a_fitted_bag_agrees_with_the_teacher_better_and_the_static_start_computes_it(
        tmp_path: Path) -> None:
    """Fitting the bag to teacher sentence vectors (the distillation objective without context)
    must beat the isolated-piece vectors on the texts it was fitted to, and the ALBERT built from
    it must compute it exactly, like the unfitted one."""
    from albatross.training.bag import mean_cosine
    from albatross.training.warmstart import start_bag

    words = sorted({w.strip(".,?").lower() for line in SENTENCES for w in line.split()})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]))
    teacher_tok = BertTokenizer(str(tmp_path / "vocab.txt"))
    torch.manual_seed(0)
    teacher = BertModel(BertConfig(vocab_size=len(words) + 5, hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=2, intermediate_size=64)).eval()
    texts = SENTENCES[:6]
    with torch.no_grad():
        enc = teacher_tok(texts, padding=True, return_tensors="pt")
        hidden = teacher(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        targets = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    tok_dir = train_vocab(SENTENCES, tmp_path / "tok", vocab_size=120)
    tokenizer = AlbertTokenizer.from_pretrained(tok_dir)
    rows = tokenizer(texts)["input_ids"]
    config = student_config(120, hidden_size=32, num_layers=6, embedding_size=12, heads=2,
                            intermediate_size=64)
    pieces = piece_strings(tok_dir)
    plain = start_bag(config, pieces, teacher_tok, teacher)
    fitted = start_bag(config, pieces, teacher_tok, teacher, fit_on=(rows, targets), fit_epochs=200)
    before, after = (mean_cosine(c @ b, rows, targets) for c, b in (plain, fitted))
    assert after > before + 0.05 and after > 0.9, (before, after)

    student = new_student(config).eval()
    static_start(student, pieces, teacher_tok, teacher, fit_on=(rows, targets), fit_epochs=200)
    with torch.no_grad():
        produced = student(**tokenizer(texts, padding=True, return_tensors="pt")).last_hidden_state
    coords, basis = fitted
    for i, row in enumerate(rows):
        expected = (coords[row] @ basis).sum(dim=0)
        pooled = produced[i, :len(row)].mean(dim=0)
        assert torch.nn.functional.cosine_similarity(pooled, expected, dim=0) > 0.999, texts[i]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    tok_dir = train_vocab(SENTENCES, root / "tok", vocab_size=120)
    torch.manual_seed(0)
    return export_model(tiny_student(120), tok_dir, root / "model", card="# tiny\n")


def test_exported_folder_loads_and_tokenizes_real_text(exported: Path) -> None:
    tokenizer = AlbertTokenizer.from_pretrained(exported)
    ids = tokenizer("The quick brown fox")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id == 2 and ids[-1] == tokenizer.sep_token_id == 3
    words = ids[1:-1]
    assert tokenizer.unk_token_id not in words and len(set(words)) >= 3
    model = AlbertModel.from_pretrained(exported, add_pooling_layer=False)
    out = model(**tokenizer(["The quick brown fox"], return_tensors="pt")).last_hidden_state
    assert out.shape == (1, len(ids), 32)


def test_exported_folder_says_how_vectors_are_made(exported: Path) -> None:
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "spiece.model", "tokenizer_config.json",
            "albatross_pooling.json", "README.md"} <= names
    assert '"pooling": "mean"' in (exported / "albatross_pooling.json").read_text()


def test_resuming_on_other_texts_keeps_the_step_but_starts_a_new_epoch(tmp_path: Path) -> None:
    from albatross.training.corpus import Text
    from albatross.training.distill import corpus_fingerprint, restore, save_checkpoint

    model = tiny_student(100)
    optimizer = torch.optim.AdamW(model.parameters())
    old = corpus_fingerprint([Text("a harbour", "x")])
    save_checkpoint(tmp_path, {"step": 70, "epoch": 3, "position": 12, "elapsed_s": 5.0,
                               "corpus": old, "model": model.state_dict(),
                               "optimizer": optimizer.state_dict()}, keep=2)
    same = restore(tiny_student(100), optimizer, tmp_path, old)
    assert (same["step"], same["epoch"], same["position"]) == (70, 3, 12)
    other = restore(tiny_student(100), optimizer, tmp_path,
                    corpus_fingerprint([Text("a harbour", "x"), Text("a lighthouse", "x")]))
    assert (other["step"], other["epoch"], other["position"]) == (70, 0, 0)


def test_a_later_phase_starts_from_the_exported_weights(exported: Path) -> None:
    from albatross.training.warmstart import load_exported

    student = tiny_student(120)
    load_exported(student, exported)
    shipped = AlbertModel.from_pretrained(exported, add_pooling_layer=False)
    for name, value in shipped.state_dict().items():
        assert torch.equal(student.state_dict()[name], value), name
    with pytest.raises(ValueError, match="vocab_size"):
        load_exported(tiny_student(121), exported)


def test_a_later_phase_keeps_the_exported_vocabulary(exported: Path, tmp_path: Path) -> None:
    from albatross.training.vocab import adopt_vocab

    tok_dir = adopt_vocab(exported, tmp_path / "tok")
    assert (tok_dir / "spiece.model").read_bytes() == (exported / "spiece.model").read_bytes()
    assert AlbertTokenizer.from_pretrained(tok_dir)("a harbour")["input_ids"] == \
        AlbertTokenizer.from_pretrained(exported)("a harbour")["input_ids"]
    adopt_vocab(exported, tok_dir)  # the same vocabulary again is fine
    other = train_vocab(SENTENCES, tmp_path / "other", vocab_size=110)
    with pytest.raises(ValueError, match="another vocabulary"):
        adopt_vocab(exported, other)


def test_a_grown_student_computes_exactly_what_the_exported_model_computes(exported: Path) -> None:
    """Two layer groups and a wider feed-forward layer: more to train, same function at step 0."""
    from albatross.training.warmstart import load_exported

    grown = new_student(student_config(120, hidden_size=32, num_layers=2, embedding_size=8, heads=2,
                                       intermediate_size=96, groups=2)).eval()
    load_exported(grown, exported)
    shipped = AlbertModel.from_pretrained(exported, add_pooling_layer=False).eval()
    inputs = AlbertTokenizer.from_pretrained(exported)(SENTENCES[:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = shipped(**inputs).last_hidden_state
        produced = grown(**inputs).last_hidden_state
    torch.testing.assert_close(produced, expected, atol=1e-5, rtol=0)
    groups = grown.encoder.albert_layer_groups
    assert len(groups) == 2 and groups[0].albert_layers[0].ffn.weight.shape == (96, 32)
    with pytest.raises(ValueError, match="intermediate_size"):
        load_exported(new_student(student_config(120, hidden_size=32, num_layers=2, embedding_size=8,
                                                 heads=2, intermediate_size=32)), exported)


def test_neighbour_agreement_is_one_for_the_teacher_itself_and_low_for_noise() -> None:
    from albatross.training.distill import neighbour_agreement

    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(200, 16)).astype(np.float32)
    teacher /= np.linalg.norm(teacher, axis=1, keepdims=True)
    assert neighbour_agreement(teacher.copy(), teacher) == 1.0
    noise = rng.normal(size=(200, 16)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    assert neighbour_agreement(noise, teacher) < 0.2  # chance is 10 / 199
    nearby = teacher + 0.05 * noise
    nearby /= np.linalg.norm(nearby, axis=1, keepdims=True)
    assert 0.5 < neighbour_agreement(nearby, teacher) < 1.0


def test_the_word_embeddings_learn_at_their_own_rate() -> None:
    from albatross.training.distill import DistillConfig, parameter_groups

    model = tiny_student(100)
    embedding, rest = parameter_groups(model, DistillConfig(lr=3e-5, embedding_lr=1e-3))
    assert (embedding["peak_lr"], rest["peak_lr"]) == (1e-3, 3e-5)
    ids = {id(p) for p in embedding["params"]}
    assert id(model.embeddings.word_embeddings.weight) in ids
    assert id(model.encoder.embedding_hidden_mapping_in.weight) in ids
    assert id(model.embeddings.position_embeddings.weight) not in ids
    assert len(embedding["params"]) + len(rest["params"]) == len(list(model.parameters()))
    same = parameter_groups(model, DistillConfig(lr=3e-4))
    assert same[0]["peak_lr"] == same[1]["peak_lr"] == 3e-4
