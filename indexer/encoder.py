"""The encoder: tokenizer + ALBERT/BERT-family model + pooling, loaded once and shared.

``Encoder.load`` resolves the model locally (never the network), picks device and dtype, and
checks that the collection's spec fits the model. ``encode`` turns texts into ``float32 (n, d)``
vectors in length-sorted batches bounded by a token budget; ``chunk`` cuts a document into
token windows with character offsets.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import json
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from transformers import (
    MODEL_MAPPING,
    AutoConfig,
    AutoModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from indexer.checkpoints import (
    model_defaults,
    model_revision,
    resolve_model,
    stored_tensor_names,
    tokenizer_hash,
)
from indexer.chunking import chunk_text, token_windows, validate_window, window_input
from indexer.config import DeviceConfig, EncoderConfig
from indexer.errors import InvalidArgument, InvalidCollectionSpec
from indexer.placement import Placement, placement_for, quantize_int8
from indexer.pooling import check_layers, output_dimension, pool
from indexer.records import Chunk, CollectionSpec
from indexer.samples import SAMPLE_CORPUS
from indexer.spec import complete_spec
from indexer.tokens import load_tokenizer, pad_ids, split_specials
from indexer.vocabulary import unknown_share
from indexer.whitening import Whitening

log = logging.getLogger(__name__)

# Batching: sorted MS MARCO passages cut by the token budget alone (16384 tokens, 128 texts)
# spent 19% of the forward pass on padding, batches of 32 spent 7%; closing a batch at a 5% drop
# in length, once it holds 1024 tokens (far past where CPU matmuls stop gaining from size),
# spends 3% (bench/RESULTS.md).
_PADDING_TOLERANCE = 0.05
_MIN_BATCH_TOKENS = 1024

# int8 is taken only when it keeps the vectors: the distilled default of November kept its probe
# texts at cosine >= 0.994 of fp32 (MS MARCO passages >= 0.98, nDCG@10 unchanged), an earlier
# build fell to 0.89, and the converted all-MiniLM-L6-v2 of December falls to 0.877, so it stays
# in fp32 (bench/RESULTS.md).
_INT8_MIN_COSINE = 0.99
_PROBE_TEXTS = 48
# The probe's verdict for one set of weights under one torch build, written beside the weights
# by ``record_int8_check`` (the model build does it) so that loading skips the two probe passes.
INT8_CHECK_FILE = "albatross_int8.json"


class Encoder:
    """One model in one embedding space. Build with ``Encoder.load``; safe to share read-only."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        model: PreTrainedModel,
        spec: CollectionSpec,
        config: EncoderConfig,
        placement: Placement,
        folder: Path,
    ) -> None:
        self._tokenizer = tokenizer
        # transformers reconfigures truncation on the shared Rust tokenizer at every call, which
        # concurrent callers (the server's executor threads) can trip over ("Already borrowed",
        # huggingface/tokenizers#537); tokenizing is cheap next to the forward pass.
        self._tokenizer_lock = threading.Lock()
        self._model = model
        self._spec = spec
        self._config = config
        self._placement = placement
        self._folder = folder
        self._model_revision = model_revision(folder)
        self._tokenizer_hash = tokenizer_hash(folder)
        self._dimension = output_dimension(model.config.hidden_size, spec.pooling)
        # Only ask for every layer's states when the spec pools something other than the last.
        self._all_layers = tuple(spec.layers) != (-1,)
        self._int8_cosine: float | None = None

    @classmethod
    def load(cls, model_ref: str, spec: CollectionSpec, config: EncoderConfig) -> Encoder:
        """Load tokenizer and model from a local folder or the local hub cache.

        Fields the spec leaves unset take the folder's own defaults (``model_defaults``). Raises
        ``ModelNotFound`` when the model is not here and ``InvalidCollectionSpec`` when the
        spec does not fit the model.
        """
        folder = resolve_model(model_ref, config.hf_cache_dir)
        spec = complete_spec(spec, model_defaults(folder))  # the folder says how it is used
        placement = placement_for(config.device)
        # The spec is checked against config.json before any weights are read.
        model_config = AutoConfig.from_pretrained(folder, local_files_only=True)
        _check_spec(spec, model_config)
        tokenizer = load_tokenizer(folder)
        model = AutoModel.from_pretrained(
            folder,
            config=model_config,
            local_files_only=True,
            dtype=placement.dtype,
            **_pooler_choice(folder, model_config),
        )
        model.to(placement.device).eval()
        encoder = cls(tokenizer, model, spec, config, placement, folder)
        if placement.int8 is not False:
            encoder = encoder._with_int8(required=bool(placement.int8))
        log.info("loaded %s on %s as %s", folder, placement.device, encoder.precision)
        return encoder

    @property
    def dimension(self) -> int:
        """Length of the pooled vectors ``encode`` returns (before any whitening)."""
        return self._dimension

    @property
    def spec(self) -> CollectionSpec:
        """The complete spec this encoder embeds with."""
        return self._spec

    @property
    def model_revision(self) -> str:
        return self._model_revision

    @property
    def tokenizer_hash(self) -> str:
        return self._tokenizer_hash

    @property
    def max_length(self) -> int:
        """Most tokens one forward pass sees, special tokens included."""
        return self._spec.max_length

    @property
    def device(self) -> torch.device:
        return self._placement.device

    @property
    def dtype(self) -> torch.dtype:
        return self._placement.dtype

    @property
    def quantized(self) -> bool:
        """True when the Linear layers run in int8 (CPU), activations in ``dtype``."""
        return self._int8_cosine is not None

    @property
    def precision(self) -> str:
        """``float32``, ``bfloat16``, ``float16``, or ``int8 (min cosine to float32 ... on probe
        texts)``, for logs and benchmarks."""
        if self._int8_cosine is not None:
            return f"int8 (min cosine to float32 {self._int8_cosine:.4f} on probe texts)"
        return str(self._placement.dtype).removeprefix("torch.")

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        """The fast tokenizer (shared; do not change its settings)."""
        return self._tokenizer

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def max_window(self) -> int:
        """Largest chunk window in tokens: ``max_length`` less the special tokens added."""
        return self._spec.max_length - self._tokenizer.num_special_tokens_to_add(pair=False)

    def chunk(self, text: str, window: int, overlap: int) -> list[Chunk]:
        """Token windows of ``text`` with character offsets; ``[]`` for a text without tokens."""
        self._check_window(window, overlap)
        with self._tokenizer_lock:
            encoded = self._tokenizer(
                text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
        return chunk_text(text, encoded["offset_mapping"], window, overlap)

    def unknown_shares(self, texts: Sequence[str]) -> list[float]:
        """The ``unknown_share`` of each text (of all of it: nothing is truncated)."""
        texts = _as_texts(texts)
        if not texts:
            return []
        with self._tokenizer_lock:
            encoded = self._tokenizer(
                list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False
            )
        unk_id = self._tokenizer.unk_token_id
        return [
            unknown_share(text, ids, offsets, unk_id)
            for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"], strict=True)
        ]

    def encode(self, texts: Sequence[str], whitening: Whitening | None = None) -> np.ndarray:
        """Vectors of ``texts`` in input order: float32 (n, d), or (n, k) with a whitening.

        Texts longer than ``max_length`` tokens are truncated; cut documents with ``chunk``
        (or use ``chunk_and_encode``) first. The whitening is applied to the pooled vectors,
        then rows are L2-normalised when the spec says so.
        """
        return self._finish(self.pooled(texts), whitening)

    def pooled(self, texts: Sequence[str]) -> np.ndarray:
        """Pooled vectors before whitening and normalisation: float32 (n, d), input order.

        This is the sample ``fit_whitening`` expects: ``encode(..., whitening)`` applies the
        whitening to exactly these vectors.
        """
        return self._pooled_ids(self._tokenize(_as_texts(texts)))

    def chunk_and_encode(
        self,
        texts: Sequence[str],
        window: int,
        overlap: int,
        whitening: Whitening | None = None,
        titles: Sequence[str] | None = None,
    ) -> list[tuple[list[Chunk], np.ndarray]]:
        """For each text, its chunks and their vectors: float32 (len(chunks), d) each.

        Each text (and its title) is tokenized once and each window embedded from its own token
        ids. Feeding ``chunk.text`` to ``encode`` instead re-tokenizes a slice that may start or
        end inside a word, which can add a token or two (SentencePiece) that ``max_length`` then
        cuts. With ``titles``, every window of a text is embedded after its title's tokens; a
        title too long to leave room for a full window is cut, the window never is
        (``chunking.window_input``). All windows of all texts share length-sorted batches.
        """
        self._check_window(window, overlap)
        texts = _as_texts(texts)
        if not texts:
            return []
        with self._tokenizer_lock:
            encoded = self._tokenizer(
                list(texts),
                add_special_tokens=True,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
                verbose=False,
            )
            title_ids = (
                self._tokenizer(list(titles), add_special_tokens=False, verbose=False)["input_ids"]
                if titles is not None
                else [[] for _ in texts]
            )
        chunked: list[list[Chunk]] = []
        window_ids: list[list[int]] = []
        for index, text in enumerate(texts):
            prefix, body, suffix = split_specials(
                encoded["input_ids"][index], encoded["special_tokens_mask"][index]
            )
            offsets = encoded["offset_mapping"][index][len(prefix) : len(prefix) + len(body)]
            chunked.append(chunk_text(text, offsets, window, overlap))
            for first, last in token_windows(len(body), window, overlap):
                window_ids.append(
                    window_input(prefix, title_ids[index], body[first:last], suffix, self.max_length)
                )
        vectors = self._finish(self._pooled_ids(window_ids), whitening)
        bounds = np.cumsum([0] + [len(chunks) for chunks in chunked])
        return [(chunks, vectors[bounds[i] : bounds[i + 1]]) for i, chunks in enumerate(chunked)]

    def _with_int8(self, *, required: bool) -> Encoder:
        """This encoder with int8 Linear layers, when ``required`` or when the int8 vectors of
        the probe texts stay within ``_INT8_MIN_COSINE`` of the fp32 ones; else ``self``.

        int8 activations are quantised per batch, so a text's vector moves slightly with its
        batch-mates (cosine >= 0.993 for a model that passes the probe); fp32 is batch-independent.
        Loading pays two passes over the probe texts unless the folder records their verdict for
        these weights and this torch (``INT8_CHECK_FILE``).
        """
        cosine = _recorded_int8_cosine(self._folder, self._model_revision)
        quantized = None if cosine is not None and cosine < _INT8_MIN_COSINE else self._quantized()
        if cosine is None:
            cosine = self._probe_int8_cosine(quantized)
        if cosine < _INT8_MIN_COSINE:
            if not required:
                log.info(
                    "int8 would move this model's vectors (min cosine %.4f < %.2f): float32",
                    cosine,
                    _INT8_MIN_COSINE,
                )
                return self
            log.warning(
                "dtype int8 moves this model's vectors: min cosine %.4f to float32 on the "
                "probe texts (auto would keep float32 below %.2f)",
                cosine,
                _INT8_MIN_COSINE,
            )
        if quantized is None:
            quantized = self._quantized()
        quantized._int8_cosine = cosine
        return quantized

    def _quantized(self) -> Encoder:
        """A copy of this encoder with int8 Linear layers (its int8 verdict not yet set)."""
        quantized = copy.copy(self)
        quantized._model = quantize_int8(self._model)
        return quantized

    def _probe_int8_cosine(self, quantized: Encoder) -> float:
        """Min cosine of ``quantized``'s probe vectors to this encoder's."""
        probe = _probe_texts()
        exact = _l2_normalise(self.pooled(probe))
        return float(np.min(np.sum(exact * _l2_normalise(quantized.pooled(probe)), axis=1)))

    def _check_window(self, window: int, overlap: int) -> None:
        validate_window(window, overlap)
        if window > self.max_window:
            raise InvalidCollectionSpec(
                f"window {window} leaves no room for special tokens within max_length "
                f"{self.max_length}: use at most {self.max_window}",
                field="window",
            )

    def _finish(self, vectors: np.ndarray, whitening: Whitening | None) -> np.ndarray:
        """Pooled (n, d) -> whitened (n, k) when given -> unit rows when the spec normalises."""
        if whitening is not None:
            vectors = whitening.apply(vectors)
        if self._spec.normalize:
            vectors = _l2_normalise(vectors)
        return vectors

    def _pooled_ids(self, ids: list[list[int]]) -> np.ndarray:
        """Token ids (special tokens included) -> pooled float32 (n, d) in input order."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        pooled = np.empty((len(ids), self._dimension), dtype=np.float32)
        budget = self._config.token_budget(self.device.type)
        lengths = [len(ids[i]) for i in order]
        groups = [[order[i] for i in batch] for batch in _batches(lengths, budget, self._config.max_batch)]

        def forward(members: list[int]) -> np.ndarray:
            return self._forward([ids[i] for i in members])

        streams = min(self._placement.streams, len(groups))
        if streams > 1:
            # torch releases the GIL inside its kernels, so threads are enough to run
            # the batches side by side; each has its own share of torch's threads.
            with ThreadPoolExecutor(streams, thread_name_prefix="albatross-encode") as pool:
                results = list(pool.map(forward, groups))
        else:
            results = [forward(members) for members in groups]
        for members, vectors in zip(groups, results, strict=True):
            pooled[members] = vectors
        return pooled

    def _tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        with self._tokenizer_lock:
            encoded = self._tokenizer(
                list(texts), add_special_tokens=True, truncation=True, max_length=self.max_length
            )
        return encoded["input_ids"]

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        """One padded batch -> pooled float32 (batch, d)."""
        input_ids, attention_mask = pad_ids(ids, self._tokenizer.pad_token_id, self.device)
        with torch.inference_mode():
            output = self._model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=self._all_layers,
            )
            states = output.hidden_states if self._all_layers else (output.last_hidden_state,)
            vectors = pool(states, attention_mask, self._spec.pooling, tuple(self._spec.layers))
        return vectors.float().cpu().numpy()


def _as_texts(texts: Sequence[str]) -> Sequence[str]:
    if isinstance(texts, str):
        raise InvalidArgument("expected a sequence of texts, not one string", field="texts")
    return texts


def _probe_texts() -> list[str]:
    """Texts of one, three or eight shipped WordNet glosses (about 10 to 150 tokens), always the
    same: the sample on which int8 must keep a model's vectors."""
    with SAMPLE_CORPUS.open(encoding="utf-8") as stream:
        rows = [json.loads(line) for line in itertools.islice(stream, 8 * _PROBE_TEXTS)]
    glosses = [f"{row['title']}: {row['text']}" for row in rows]
    sizes = (1, 3, 8)
    return [" ".join(glosses[8 * i : 8 * i + sizes[i % 3]]) for i in range(_PROBE_TEXTS)]


def _int8_check_key(revision: str) -> dict[str, object]:
    return {"model_revision": revision, "torch": torch.__version__, "probe_texts": _PROBE_TEXTS}


def _recorded_int8_cosine(folder: Path, revision: str) -> float | None:
    """The probe's min cosine recorded in ``folder`` for these weights and this torch, if any."""
    try:
        record = json.loads((folder / INT8_CHECK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or any(record.get(k) != v for k, v in _int8_check_key(revision).items()):
        return None
    cosine = record.get("min_cosine")
    return float(cosine) if isinstance(cosine, int | float) else None


def record_int8_check(folder: Path) -> float:
    """Run the int8 probe on ``folder``'s model (CPU, fp32 against int8) and record its min
    cosine in ``folder / INT8_CHECK_FILE`` (atomically), for loads to reuse. Returns it."""
    model_ref = str(folder)
    fp32 = Encoder.load(model_ref, CollectionSpec(model=model_ref), EncoderConfig(device=DeviceConfig("cpu", "float32")))
    cosine = fp32._probe_int8_cosine(fp32._quantized())
    record = {**_int8_check_key(fp32.model_revision), "min_cosine": round(cosine, 6)}
    staging = folder / (INT8_CHECK_FILE + ".tmp")
    staging.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(staging, folder / INT8_CHECK_FILE)
    return cosine


def _pooler_choice(folder: Path, model_config: PretrainedConfig) -> dict[str, bool]:
    """``from_pretrained``'s keywords: no pooler layer where the weights store none.

    Pooling reads hidden states, never the pooler's output, and the shipped ALBERT is saved
    without one; building it anyway makes transformers log a load report ("pooler.weight
    MISSING", newly initialised) on every start. Every other missing or unexpected weight is still
    reported. Only classes that take ``add_pooling_layer`` (ALBERT, BERT, RoBERTa...) are asked."""
    names = stored_tensor_names(folder)
    if names is None or any(name.startswith("pooler.") or ".pooler." in name for name in names):
        return {}
    model_class = MODEL_MAPPING.get(type(model_config), None)
    if model_class is None or "add_pooling_layer" not in inspect.signature(model_class.__init__).parameters:
        return {}
    return {"add_pooling_layer": False}


def _check_spec(spec: CollectionSpec, model_config: PretrainedConfig) -> None:
    """The spec must fit this model: its position table and its layer indices."""
    positions = model_config.max_position_embeddings
    if not 2 < spec.max_length <= positions:
        raise InvalidCollectionSpec(
            f"max_length {spec.max_length} must be in 3..{positions} for this model",
            field="max_length",
        )
    check_layers(spec.layers, model_config.num_hidden_layers + 1)  # the embeddings, then each layer


def _batches(lengths: Sequence[int], budget: int, max_batch: int) -> list[range]:
    """Consecutive index ranges over length-descending ``lengths`` within the batch budget.

    A batch costs ``size * longest`` padded tokens; it stays within ``budget`` tokens and
    ``max_batch`` texts (a single text longer than the budget still gets a batch of its own).
    Once it holds ``_MIN_BATCH_TOKENS`` it also closes before a text more than
    ``_PADDING_TOLERANCE`` shorter than its longest, so little of the forward pass goes to padding.
    """
    if budget < 1 or max_batch < 1:
        raise InvalidArgument("batch_tokens and max_batch must be >= 1", field="batch_tokens")
    batches: list[range] = []
    start = 0
    while start < len(lengths):
        longest = lengths[start]
        size = max(1, min(max_batch, budget // max(longest, 1)))
        limit = min(start + size, len(lengths))
        stop = start + 1
        shortest_kept = longest * (1 - _PADDING_TOLERANCE)
        while stop < limit and (
            (stop - start) * longest < _MIN_BATCH_TOKENS or lengths[stop] >= shortest_kept
        ):
            stop += 1
        batches.append(range(start, stop))
        start = stop
    return batches


def _l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Unit rows; an all-zero row stays zero rather than becoming NaN."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
