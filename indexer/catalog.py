"""Collections and the encoders that embed them.

A collection is one embedding space (DESIGN invariant 4): it records the model revision and
tokenizer it was created with, and an encoder is only ever used on a collection whose recorded
space it reproduces. Encoders are loaded once per space and shared by every collection in it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from indexer.config import EncoderConfig
from indexer.encoder import Encoder
from indexer.errors import EmbeddingSpaceMismatch, InvalidCollectionSpec
from indexer.index import validate_index_spec
from indexer.records import Chunk, CollectionInfo, CollectionSpec, CollectionStats
from indexer.store import Store
from indexer.whitening import Whitening, fit_whitening

DEFAULT_MODEL_REF = "default"


@dataclass(frozen=True)
class CollectionEncoder:
    """The encoder of one collection, with its whitening (if fitted) applied to every vector."""

    encoder: Encoder
    whitening: Whitening | None

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts -> float32 (n, d) vectors of this collection's space."""
        return self.encoder.encode(texts, whitening=self.whitening)

    def chunk(self, text: str, window: int, overlap: int) -> list[Chunk]:
        return self.encoder.chunk(text, window, overlap)


class EncoderRegistry:
    """Loads each distinct encoder once; thread-safe."""

    def __init__(self, config: EncoderConfig, default_model: Path) -> None:
        self._config = config
        self._default_model = default_model
        self._loaded: dict[tuple[object, ...], Encoder] = {}
        self._lock = threading.Lock()

    def resolve(self, model_ref: str) -> str:
        """``default`` (or empty) names the model the package ships."""
        return str(self._default_model) if model_ref in ("", DEFAULT_MODEL_REF) else model_ref

    def load(self, spec: CollectionSpec) -> Encoder:
        model = self.resolve(spec.model)
        key = (model, spec.pooling, spec.layers, spec.max_length, spec.normalize)
        with self._lock:
            encoder = self._loaded.get(key)
            if encoder is None:
                encoder = Encoder.load(model, spec, self._config)
                self._loaded[key] = encoder
            return encoder


def validate_spec(spec: CollectionSpec) -> None:
    """Reject specs that cannot work, before anything is loaded or written."""
    if spec.max_length < 8:
        raise InvalidCollectionSpec("max_length must be at least 8 tokens", field="max_length")
    if not 0 <= spec.overlap < spec.window:
        raise InvalidCollectionSpec(
            f"overlap ({spec.overlap}) must be >= 0 and smaller than window ({spec.window})",
            field="overlap",
        )
    if spec.window > spec.max_length - 2:
        raise InvalidCollectionSpec(
            f"window ({spec.window}) must leave room for the special tokens within max_length "
            f"({spec.max_length})",
            field="window",
        )
    if spec.vector_dtype not in ("float32", "float16"):
        raise InvalidCollectionSpec("vector_dtype must be float32 or float16", field="vector_dtype")
    if not spec.index_spec.strip():
        raise InvalidCollectionSpec("index_spec must not be empty", field="index_spec")


class Catalog:
    """Create, find and drop collections; hand out the encoder of a collection's space."""

    def __init__(self, store: Store, encoders: EncoderRegistry) -> None:
        self._store = store
        self._encoders = encoders
        self._whitening: dict[int, Whitening | None] = {}
        self._lock = threading.Lock()

    def create(self, name: str, spec: CollectionSpec) -> CollectionInfo:
        validate_spec(spec)
        encoder = self._encoders.load(spec)
        validate_index_spec(spec.index_spec, encoder.dimension)
        stored_spec = replace(spec, model=spec.model or DEFAULT_MODEL_REF)
        return self._store.create_collection(
            name,
            stored_spec,
            dimension=encoder.dimension,
            model_revision=encoder.model_revision,
            tokenizer_hash=encoder.tokenizer_hash,
        )

    def get(self, name: str) -> CollectionInfo:
        return self._store.get_collection(name)

    def list(self) -> list[CollectionInfo]:
        return self._store.list_collections()

    def drop(self, name: str) -> None:
        info = self._store.get_collection(name)
        self._store.drop_collection(name)
        with self._lock:
            self._whitening.pop(info.id, None)

    def stats(self, name: str) -> CollectionStats:
        return self._store.stats(self._store.get_collection(name).id)

    def encoder_for(self, info: CollectionInfo) -> CollectionEncoder:
        """The encoder that reproduces ``info``'s embedding space, or ``EmbeddingSpaceMismatch``."""
        encoder = self._encoders.load(info.spec)
        if encoder.model_revision != info.model_revision or encoder.tokenizer_hash != info.tokenizer_hash:
            raise EmbeddingSpaceMismatch(
                f"collection {info.name!r} was embedded with model revision {info.model_revision} "
                f"(tokenizer {info.tokenizer_hash}) but {self._encoders.resolve(info.spec.model)!r} "
                f"is now revision {encoder.model_revision} (tokenizer {encoder.tokenizer_hash}); "
                "restore that model or re-ingest into a new collection"
            )
        return CollectionEncoder(encoder, self._whitening_of(info))

    def needs_whitening(self, info: CollectionInfo) -> bool:
        return info.spec.whitening and self._whitening_of(info) is None

    def fit_whitening(self, info: CollectionInfo, sample_texts: Sequence[str]) -> None:
        """Fit the collection's whitening on raw vectors of ``sample_texts`` and store it.

        Fitted on the pooled vectors before normalisation, because that is where ``encode``
        applies it.
        """
        raw = self._encoders.load(info.spec).pooled(sample_texts)
        whitening = fit_whitening(raw)
        self._store.set_whitening(info.name, whitening.to_bytes())
        with self._lock:
            self._whitening[info.id] = whitening

    def _whitening_of(self, info: CollectionInfo) -> Whitening | None:
        if not info.spec.whitening:
            return None
        with self._lock:
            if info.id in self._whitening:
                return self._whitening[info.id]
        blob = self._store.whitening(info.name)
        whitening = Whitening.from_bytes(blob) if blob is not None else None
        with self._lock:
            if whitening is not None:
                self._whitening[info.id] = whitening
        return whitening
