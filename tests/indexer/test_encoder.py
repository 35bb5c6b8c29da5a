"""Encoder: unit vectors in input order, batch-independent, chunking through the real tokenizer,
and every seed family (ALBERT v2 sizes, BERT cased and Chinese) loading through ``Encoder.load``.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AlbertTokenizer, AutoModel, AutoTokenizer

from indexer.chunking import token_windows
from indexer.config import CPU_BATCH_TOKENS, DEFAULT_MODEL_DIR, GPU_BATCH_TOKENS, DeviceConfig, EncoderConfig
from indexer.encoder import INT8_CHECK_FILE, Encoder, record_int8_check
from indexer.errors import InvalidArgument, InvalidCollectionSpec, ModelNotFound
from indexer.records import CollectionSpec, PoolingMode
from indexer.whitening import fit_whitening

try:  # tests/ may or may not be a package: see tests/conftest.py
    from tests.fixtures.tiny_models import PUBLISHED, sample_lines, shrunk_fields
except ModuleNotFoundError:
    from fixtures.tiny_models import PUBLISHED, sample_lines, shrunk_fields

# A small budget so that a handful of texts already spans several batches.
SMALL_BATCHES = EncoderConfig(batch_tokens=64, max_batch=3)
TEXTS = [
    "The kettle clicked off just as the rain started against the kitchen window.",
    "Fresh bread.",
    "The museum has a new exhibition about ancient maps and sea charts, and the queue for it "
    "stretched out of the door and down the street past the bakery.",
    "Swallows return to the barn every spring.",
    "Our cat refuses to eat anything except one brand of food.",
    "Yes.",
    "The storm knocked out the power for most of the evening.",
]


def spec(**fields) -> CollectionSpec:
    return CollectionSpec(model="tiny-albert", **fields)


@pytest.fixture(scope="module")
def encoder(tiny_albert_dir: Path) -> Encoder:
    return Encoder.load(str(tiny_albert_dir), spec(max_length=64, window=32, overlap=8), SMALL_BATCHES)


def test_vectors_are_unit_float32_rows_in_input_order(encoder):
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (len(TEXTS), encoder.dimension) == (7, 32)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    reversed_vectors = encoder.encode(TEXTS[::-1])
    np.testing.assert_allclose(reversed_vectors[::-1], vectors, atol=1e-5)


def test_encoding_is_deterministic_across_calls_and_loads(encoder, tiny_albert_dir):
    again = Encoder.load(str(tiny_albert_dir), spec(max_length=64), EncoderConfig())
    np.testing.assert_array_equal(encoder.encode(TEXTS), encoder.encode(TEXTS))
    np.testing.assert_allclose(again.encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)


def test_a_text_alone_equals_the_same_text_in_a_mixed_batch(encoder):
    mixed = encoder.encode(TEXTS)
    for index, text in enumerate(TEXTS):
        np.testing.assert_allclose(encoder.encode([text])[0], mixed[index], atol=1e-5)


def record_batch_lengths(monkeypatch) -> list[list[int]]:
    """The token lengths of every forward pass's rows, appended as ``Encoder._forward`` runs."""
    seen: list[list[int]] = []
    forward = Encoder._forward

    def recording(self, ids):
        seen.append([len(row) for row in ids])
        return forward(self, ids)

    monkeypatch.setattr(Encoder, "_forward", recording)
    return seen


def record_forward_rows(monkeypatch) -> list[list[int]]:
    """The token ids of every row a forward pass embeds, appended as ``Encoder._forward`` runs."""
    seen: list[list[int]] = []
    forward = Encoder._forward

    def recording(self, ids):
        seen.extend(ids)
        return forward(self, ids)

    monkeypatch.setattr(Encoder, "_forward", recording)
    return seen


def test_batches_respect_the_token_budget_and_the_batch_cap(encoder, monkeypatch):
    seen = record_batch_lengths(monkeypatch)
    encoder.encode(TEXTS)
    assert sum(len(batch) for batch in seen) == len(TEXTS) and len(seen) > 1
    for lengths in seen:
        assert len(lengths) <= SMALL_BATCHES.max_batch
        assert len(lengths) == 1 or len(lengths) * max(lengths) <= SMALL_BATCHES.batch_tokens
    flat = [length for batch in seen for length in batch]
    assert flat == sorted(flat, reverse=True), "batches are formed from length-sorted texts"


def test_without_a_budget_a_cpu_forward_pass_holds_the_cpu_budget(tiny_albert_dir, monkeypatch):
    """80 texts of 64 tokens fit one batch under the GPU budget and need three under the CPU one."""
    assert CPU_BATCH_TOKENS < GPU_BATCH_TOKENS
    assert EncoderConfig().token_budget("cuda") == GPU_BATCH_TOKENS
    assert EncoderConfig(batch_tokens=500).token_budget("cpu") == EncoderConfig(batch_tokens=500).token_budget("cuda") == 500
    cpu = Encoder.load(str(tiny_albert_dir), spec(max_length=64), EncoderConfig(device=DeviceConfig("cpu")))
    seen = record_batch_lengths(monkeypatch)
    cpu.encode([" ".join(sample_lines()[:8])] * 80)
    assert all(length == 64 for batch in seen for length in batch)
    assert [len(batch) for batch in seen] == [32, 32, 16]


def test_concurrent_chunking_and_encoding_from_threads_agree_with_serial_calls(encoder):
    """The server calls one shared encoder from executor threads."""
    text = " ".join(sample_lines()[:6])
    serial = (encoder.chunk(text, 32, 8), encoder.encode(TEXTS))

    def both(_: int):
        return encoder.chunk(text, 32, 8), encoder.encode(TEXTS)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(both, range(8)))
    for chunks, vectors in results:
        assert chunks == serial[0]
        np.testing.assert_allclose(vectors, serial[1], atol=1e-5)


def test_vectors_equal_mean_pooling_by_hand(tiny_albert_dir):
    raw = Encoder.load(str(tiny_albert_dir), spec(normalize=False), EncoderConfig())
    tokenizer = AutoTokenizer.from_pretrained(tiny_albert_dir, local_files_only=True)
    model = AutoModel.from_pretrained(tiny_albert_dir, local_files_only=True).eval()
    with torch.inference_mode():
        states = model(**tokenizer(TEXTS[0], return_tensors="pt")).last_hidden_state
    np.testing.assert_allclose(raw.encode(TEXTS[:1])[0], states[0].mean(dim=0).numpy(), atol=1e-5)


def test_layers_and_pooling_modes_shape_the_vectors(tiny_albert_dir):
    both = Encoder.load(
        str(tiny_albert_dir), spec(pooling=PoolingMode.MEAN_MAX, layers=(0, -1)), EncoderConfig()
    )
    vectors = both.encode(TEXTS)
    assert both.dimension == 64 and vectors.shape == (7, 64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_whitening_is_applied_to_pooled_vectors_before_normalisation(encoder):
    whitening = fit_whitening(encoder.pooled(sample_lines()[:40]), dim=8)
    vectors = encoder.encode(TEXTS, whitening=whitening)
    assert vectors.shape == (7, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    expected = whitening.apply(encoder.pooled(TEXTS))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_pooled_vectors_are_what_encode_normalises(encoder):
    pooled = encoder.pooled(TEXTS)
    assert not np.allclose(np.linalg.norm(pooled, axis=1), 1.0)
    unit = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(encoder.encode(TEXTS), unit, atol=1e-6)


def test_empty_input_and_a_bare_string(encoder):
    assert encoder.encode([]).shape == (0, encoder.dimension)
    with pytest.raises(InvalidArgument):
        encoder.encode("not a list")


def test_a_long_text_yields_several_overlapping_chunks(encoder):
    text = " ".join(sample_lines()[:12])
    chunks = encoder.chunk(text, window=32, overlap=8)
    assert len(chunks) > 2
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert all(c.text == text[c.start : c.end] for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(b.start < a.end for a, b in zip(chunks, chunks[1:], strict=False)), "overlap"
    vectors = encoder.encode([c.text for c in chunks])
    assert vectors.shape == (len(chunks), encoder.dimension)


def test_chunk_and_encode_embeds_each_window_from_its_own_token_ids(encoder, monkeypatch):
    texts = [" ".join(sample_lines()[:8]), "Stop! Go.", "   ", "Fresh bread."]
    seen = record_forward_rows(monkeypatch)
    results = encoder.chunk_and_encode(texts, window=encoder.max_window, overlap=8)
    tokenizer = encoder.tokenizer
    expected_windows = []
    for text, (chunks, vectors) in zip(texts, results, strict=True):
        assert chunks == encoder.chunk(text, encoder.max_window, 8)
        assert vectors.shape == (len(chunks), encoder.dimension)
        body = tokenizer(text, add_special_tokens=False)["input_ids"]
        for first in range(0, max(len(body) - 8, 1), encoder.max_window - 8):
            window = body[first : first + encoder.max_window]
            if window:
                expected_windows.append(
                    [tokenizer.cls_token_id, *window, tokenizer.sep_token_id]
                )
    assert sorted(seen) == sorted(expected_windows)
    assert max(len(ids) for ids in seen) <= encoder.max_length
    assert [len(chunks) for chunks, _ in results][1:] == [1, 0, 1]
    # A text that is one chunk gets the very vector ``encode`` gives it.
    np.testing.assert_allclose(results[3][1], encoder.encode(texts[3:]), atol=1e-6)


def test_a_long_title_with_a_full_window_keeps_every_token_of_the_window(encoder, monkeypatch):
    """The title fills what the window leaves of max_length and is cut there; a title that once
    pushed the chunk's tail past max_length silently dropped it."""
    tokenizer = encoder.tokenizer
    title = " ".join(sample_lines()[:6])
    text = " ".join(sample_lines()[6:30])
    body = tokenizer(text, add_special_tokens=False)["input_ids"]
    title_ids = tokenizer(title, add_special_tokens=False)["input_ids"]
    window = encoder.max_window - 4
    assert len(body) > 2 * window and len(title_ids) > encoder.max_length
    seen = record_forward_rows(monkeypatch)
    ((chunks, vectors),) = encoder.chunk_and_encode([text], window, 8, titles=[title])

    expected = []
    for first, last in token_windows(len(body), window, 8):
        room = encoder.max_length - 2 - (last - first)
        expected.append([tokenizer.cls_token_id, *title_ids[:room], *body[first:last], tokenizer.sep_token_id])
    assert len(chunks) == len(vectors) == len(expected)
    assert sorted(seen) == sorted(expected)
    assert expected[0][1:5] == title_ids[:4] and len(expected[0]) == encoder.max_length


def test_a_title_that_fits_is_embedded_whole_before_the_window(encoder):
    title, text = "Fresh bread", "Swallows return to the barn every spring."
    ((_, vectors),) = encoder.chunk_and_encode([text], 32, 8, titles=[title])

    np.testing.assert_allclose(vectors, encoder.encode([f"{title}\n{text}"]), atol=1e-5)


def test_re_tokenizing_chunk_text_can_outgrow_the_window_which_chunk_and_encode_avoids(encoder):
    """Why ``chunk_and_encode`` exists: SentencePiece slices starting inside a word gain a "▁"."""
    text = " ".join(sample_lines()[:40])
    chunks = encoder.chunk(text, encoder.max_window, 8)
    lengths = [len(encoder.tokenizer(c.text, add_special_tokens=False)["input_ids"]) for c in chunks]
    assert max(lengths) > encoder.max_window


def test_short_and_empty_texts_chunk_to_one_and_none(encoder):
    (chunk,) = encoder.chunk("  Fresh bread.  ", window=32, overlap=8)
    assert chunk.text == "Fresh bread."
    assert encoder.chunk("   ", window=32, overlap=8) == []


def test_the_window_must_leave_room_for_special_tokens(encoder):
    assert encoder.max_window == encoder.max_length - 2
    encoder.chunk("Fresh bread.", window=62, overlap=8)
    with pytest.raises(InvalidCollectionSpec, match="special tokens"):
        encoder.chunk("Fresh bread.", window=63, overlap=8)
    with pytest.raises(InvalidCollectionSpec):
        encoder.chunk("Fresh bread.", window=8, overlap=8)


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"max_length": 4096}, "max_length"), ({"layers": (3,)}, "layers"), ({"layers": ()}, "layers")],
)
def test_a_spec_that_does_not_fit_the_model_is_rejected(tiny_albert_dir, fields, field):
    with pytest.raises(InvalidCollectionSpec) as caught:
        Encoder.load(str(tiny_albert_dir), spec(**fields), EncoderConfig())
    assert caught.value.field == field


def test_cpu_defaults_to_float32_and_explicit_dtype_is_honoured(encoder, tiny_albert_dir):
    assert (encoder.device.type, encoder.dtype) == ("cpu", torch.float32)
    config = EncoderConfig(device=DeviceConfig(device="cpu", dtype="bf16"))
    half = Encoder.load(str(tiny_albert_dir), spec(), config)
    assert half.dtype == torch.bfloat16
    vectors = half.encode(TEXTS[:2])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_unknown_devices_and_dtypes_are_rejected(tiny_albert_dir):
    for device in (DeviceConfig(dtype="int3"), DeviceConfig(device="quantum")):
        with pytest.raises(InvalidArgument):
            Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig(device=device))
    if not torch.cuda.is_available():
        with pytest.raises(InvalidArgument, match="CUDA"):
            Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig(device=DeviceConfig("cuda")))


BULK = EncoderConfig(device=DeviceConfig(device="cpu", int8_on_cpu=True))


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1)))


def test_bulk_ingestion_takes_int8_on_cpu_when_the_model_keeps_its_vectors(encoder, tiny_albert_dir):
    exact = Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig())
    bulk = Encoder.load(str(tiny_albert_dir), spec(), BULK)
    assert not exact.quantized and exact.precision == "float32"
    assert bulk.quantized and bulk.precision.startswith("int8 (min cosine to float32 0.99")
    assert _min_cosine(bulk.encode(TEXTS), exact.encode(TEXTS)) > 0.99
    # Activations are quantised per batch: close to, not equal to, the vector in another batch.
    alone = np.stack([bulk.encode([text])[0] for text in TEXTS])
    assert _min_cosine(alone, bulk.encode(TEXTS)) > 0.99


@pytest.fixture(scope="module")
def fragile_dir(tiny_albert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ALBERT with one embedding coordinate scaled up 1000x and the projection's weights
    for it down as much: float32 computes the same function, but int8 spends the 255 levels of the
    projection's input on that coordinate and those of its weights on the others, crushing both."""
    folder = tmp_path_factory.mktemp("fragile")
    for source in tiny_albert_dir.iterdir():
        shutil.copy(source, folder / source.name)
    model = AutoModel.from_pretrained(tiny_albert_dir)
    with torch.no_grad():
        norm = model.embeddings.LayerNorm
        norm.weight[0] *= 1000.0
        norm.bias[0] *= 1000.0
        model.encoder.embedding_hidden_mapping_in.weight[:, 0] /= 1000.0
    model.save_pretrained(folder)
    return folder


def test_bulk_ingestion_keeps_float32_for_a_model_that_int8_would_move(fragile_dir, tiny_albert_dir):
    bulk = Encoder.load(str(fragile_dir), spec(), BULK)
    assert not bulk.quantized and bulk.precision == "float32"
    original = Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig())
    assert _min_cosine(bulk.encode(TEXTS), original.encode(TEXTS)) > 0.9999  # same function in fp32


def test_dtype_int8_is_int8_even_where_it_moves_the_vectors(fragile_dir, caplog):
    forced = Encoder.load(str(fragile_dir), spec(), EncoderConfig(device=DeviceConfig("cpu", "int8")))
    exact = Encoder.load(str(fragile_dir), spec(), EncoderConfig())
    assert forced.quantized
    assert _min_cosine(forced.encode(TEXTS), exact.encode(TEXTS)) < 0.99
    assert "moves this model's vectors" in caplog.text


@pytest.fixture
def recorded_dir(tiny_albert_dir: Path, tmp_path: Path) -> Path:
    """A copy of the tiny ALBERT whose folder records its int8 probe verdict."""
    folder = tmp_path / "recorded"
    shutil.copytree(tiny_albert_dir, folder)
    return folder


def test_the_recorded_int8_verdict_is_the_probes_and_loads_reuse_it(recorded_dir):
    cosine = record_int8_check(recorded_dir)
    record = json.loads((recorded_dir / INT8_CHECK_FILE).read_text())
    assert record["model_revision"] == Encoder.load(str(recorded_dir), spec(), EncoderConfig()).model_revision
    bulk = Encoder.load(str(recorded_dir), spec(), BULK)
    assert bulk.quantized and bulk.precision == f"int8 (min cosine to float32 {cosine:.4f} on probe texts)"
    # A verdict written into the record decides without a probe: this model keeps its vectors
    # under int8 (above), yet a record saying it does not keeps float32.
    (recorded_dir / INT8_CHECK_FILE).write_text(json.dumps({**record, "min_cosine": 0.5}))
    assert not Encoder.load(str(recorded_dir), spec(), BULK).quantized
    forced = Encoder.load(str(recorded_dir), spec(), EncoderConfig(device=DeviceConfig("cpu", "int8")))
    assert forced.quantized and "0.5000" in forced.precision


def test_a_record_for_other_weights_or_another_torch_is_ignored(recorded_dir):
    record_int8_check(recorded_dir)
    record = json.loads((recorded_dir / INT8_CHECK_FILE).read_text())
    for stale in ({"model_revision": "0" * 12}, {"torch": "0.0"}):
        (recorded_dir / INT8_CHECK_FILE).write_text(json.dumps({**record, **stale, "min_cosine": 0.5}))
        assert Encoder.load(str(recorded_dir), spec(), BULK).quantized  # probed again: int8 holds
    (recorded_dir / INT8_CHECK_FILE).write_text("not json")
    assert Encoder.load(str(recorded_dir), spec(), BULK).quantized


def test_int8_is_refused_off_the_cpu():
    from indexer.placement import precision_for

    with pytest.raises(InvalidArgument, match="CPU only"):
        precision_for("int8", torch.device("cuda"))
    assert precision_for("auto", torch.device("cpu"), int8_on_cpu=True).int8 is None
    assert precision_for("float32", torch.device("cpu"), int8_on_cpu=True).int8 is False


@pytest.fixture
def torch_threads():
    """cpu_streams sets torch's process-wide thread count: put it back for the other tests."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_streams_run_batches_side_by_side_with_the_same_vectors(encoder, tiny_albert_dir, torch_threads,
                                                                    monkeypatch):
    streamed = Encoder.load(
        str(tiny_albert_dir),
        spec(max_length=64, window=32, overlap=8),
        EncoderConfig(batch_tokens=64, max_batch=3, device=DeviceConfig("cpu", "float32", threads=2, cpu_streams=2)),
    )
    assert torch.get_num_threads() == 1  # two threads shared out among two streams
    threads: set[str] = set()
    forward = Encoder._forward

    def recording(self, ids):
        threads.add(threading.current_thread().name)
        return forward(self, ids)

    monkeypatch.setattr(Encoder, "_forward", recording)
    np.testing.assert_allclose(streamed.encode(TEXTS), encoder.encode(TEXTS), atol=1e-5)
    assert any(name.startswith("albatross-encode") for name in threads)


def test_bulk_ingestion_asks_for_two_cpu_streams_and_zero_streams_are_refused(tiny_albert_dir, torch_threads):
    from indexer.config import AppConfig, for_bulk_ingestion

    assert for_bulk_ingestion(AppConfig()).encoder.device.cpu_streams == 2
    one_core = Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig(device=DeviceConfig("cpu", threads=1,
                                                                                            cpu_streams=2)))
    assert one_core._placement.streams == 1  # a one-CPU worker (a Ray actor) runs one stream
    with pytest.raises(InvalidArgument, match="cpu_streams"):
        Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig(device=DeviceConfig("cpu", cpu_streams=0)))


def _model_files(source: Path, target: Path) -> Path:
    target.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, target / name)
    return target


def test_a_tokenizer_saved_with_save_pretrained_still_tokenizes_real_text(tiny_albert_dir, tmp_path):
    """transformers 5 writes tokenizer.json without spiece.model; the folder must still work."""
    original = AutoTokenizer.from_pretrained(tiny_albert_dir, local_files_only=True)
    saved = _model_files(tiny_albert_dir, tmp_path / "saved")
    original.save_pretrained(saved)
    reloaded = Encoder.load(str(saved), spec(), EncoderConfig())
    text = sample_lines()[0]
    ids = reloaded.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == original(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 5 and original.unk_token_id not in ids


def test_a_tokenizer_that_ignored_its_vocabulary_is_refused(tiny_albert_dir, tmp_path):
    """``AlbertTokenizer(vocab_file=...)`` silently keeps a 5-token vocabulary: refuse it."""
    broken = AlbertTokenizer(vocab_file=str(tiny_albert_dir / "spiece.model"))
    assert len(broken) < 16
    folder = _model_files(tiny_albert_dir, tmp_path / "broken")
    broken.save_pretrained(folder)
    with pytest.raises(ModelNotFound, match="vocabulary"):
        Encoder.load(str(folder), spec(), EncoderConfig())


def test_sample_text_tokenizes_without_unknown_pieces(encoder):
    tokenizer = encoder.tokenizer
    for line in sample_lines()[:50]:
        assert tokenizer.unk_token_id not in tokenizer(line)["input_ids"], line


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory, build_tiny_checkpoint):
    root = tmp_path_factory.mktemp("families")
    return lambda family: build_tiny_checkpoint(family, root / family)


_HEAVY = {"albert-xlarge-v2", "albert-xxlarge-v2"}  # 1-3 s each to build on two busy cores


@pytest.mark.parametrize(
    "family",
    [pytest.param(f, marks=pytest.mark.slow) if f in _HEAVY else f for f in PUBLISHED],
)
def test_each_seed_family_loads_and_yields_unit_vectors_of_its_hidden_size(family, family_dir):
    """Published shapes, except (see ``shrunk_fields``): num_hidden_layers 1 and the tiny
    tokenizer's vocab_size everywhere, for speed; albert-xxlarge-v2 also intermediate_size 4096
    instead of 16384 (a full layer is ~200M parameters). Hidden size, heads, embedding size,
    positions, activation and token types are the published ones.
    """
    folder = family_dir(family)
    written = json.loads((folder / "config.json").read_text())
    shrunk = shrunk_fields(family)
    for name, value in PUBLISHED[family].items():
        if name not in shrunk:
            assert written[name] == value, name
    encoder = Encoder.load(str(folder), CollectionSpec(model=family, max_length=512), EncoderConfig())
    text = "我们去公园散步" if family.endswith("chinese") else sample_lines()[3]
    vectors = encoder.encode([text, "Short one.", sample_lines()[10]])
    assert encoder.dimension == PUBLISHED[family]["hidden_size"]
    assert vectors.shape == (3, encoder.dimension)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    ids = encoder.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert encoder.tokenizer.unk_token_id not in ids


def test_chinese_text_tokenizes_per_character(family_dir):
    encoder = Encoder.load(str(family_dir("bert-base-chinese")), spec(), EncoderConfig())
    text = "我们喜欢读书"
    tokenizer = encoder.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == list(text)
    assert tokenizer.unk_token_id not in ids
    chunks = encoder.chunk(text, window=4, overlap=1)
    assert [c.text for c in chunks] == ["我们喜欢", "欢读书"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_auto_picks_cuda_in_half_precision_and_agrees_with_the_cpu(tiny_albert_dir):
    gpu = Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig())
    cpu = Encoder.load(str(tiny_albert_dir), spec(), EncoderConfig(device=DeviceConfig("cpu")))
    assert gpu.device.type == "cuda" and gpu.dtype in (torch.bfloat16, torch.float16)
    vectors = gpu.encode(TEXTS)
    assert vectors.dtype == np.float32
    # bf16 keeps about 3 significant digits: cosine to the fp32 vectors, not elementwise equality.
    assert np.min(np.sum(vectors * cpu.encode(TEXTS), axis=1)) > 0.99


def _load_output(folder: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> str:
    """What loading ``folder`` writes to stdout, stderr and the log (transformers' logger writes
    to stderr, or to the log when something, pytest here, has a handler on it)."""
    from transformers.utils import logging as transformers_logging

    capfd.readouterr()
    caplog.clear()
    # Whatever verbosity an earlier in-process test left transformers at: below WARNING would
    # hide the very report these tests look for.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()
    try:
        with caplog.at_level(logging.WARNING):
            Encoder.load(str(folder), CollectionSpec(model=str(folder)), EncoderConfig(device=DeviceConfig("cpu")))
    finally:
        transformers_logging.set_verbosity(verbosity)
    captured = capfd.readouterr()
    return captured.out + captured.err + caplog.text


def test_the_shipped_model_loads_without_a_load_report(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """It is saved without a pooler, which pooling never reads: no "pooler.weight MISSING" report."""
    output = _load_output(DEFAULT_MODEL_DIR, capfd, caplog)
    assert "LOAD REPORT" not in output and "MISSING" not in output


def test_a_weight_missing_from_the_checkpoint_is_still_reported(
    tiny_albert_dir: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Only the pooler the weights lack is left out; anything else missing is a real problem."""
    folder = shutil.copytree(tiny_albert_dir, tmp_path / "broken")
    weights = load_file(folder / "model.safetensors")
    missing = next(name for name in weights if name.startswith("encoder."))
    save_file({k: v for k, v in weights.items() if k != missing}, folder / "model.safetensors")
    output = _load_output(folder, capfd, caplog)
    assert "LOAD REPORT" in output and missing in output and "pooler" not in output
