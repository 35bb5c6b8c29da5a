"""Collections and the encoders that embed them.

A collection is one embedding space (docs/ARCHITECTURE.md, Invariants 4): it records the model
revision and tokenizer it was created with, and an encoder is only ever used on a collection whose
recorded space it reproduces. Encoders are loaded once per space and shared by every collection in it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from indexer.checkpoints import model_defaults, resolve_model
from indexer.classifier import Classifier
from indexer.config import EncoderConfig, WhiteningPolicy
from indexer.encoder import Encoder
from indexer.errors import (
    CollectionExists,
    CollectionNotFound,
    EmbeddingSpaceMismatch,
    InvalidArgument,
    InvalidCollectionSpec,
)
from indexer.index import validate_index_spec
from indexer.records import Chunk, CollectionInfo, CollectionSpec, CollectionStats
from indexer.spec import (
    DEFAULT_MODEL_REF,
    NO_MODEL,
    complete_spec,
    encoder_values,
    is_complete,
    validate_spec,
)
from indexer.store import Store
from indexer.sync import sample_vectors
from indexer.whitening import fit_whitening, refit_due

log = logging.getLogger(__name__)

# Far above any text encoder's width (4096 for ALBERT xxlarge), far below what would exhaust memory.
MAX_DIMENSION = 65_536


@dataclass(frozen=True)
class CollectionEncoder:
    """The encoder of one collection. Its vectors are the stored space: a collection that whitens
    is whitened by its index (``indexer.whitening.IndexSpace``), documents and queries alike."""

    encoder: Encoder

    @property
    def dimension(self) -> int:
        return self.encoder.dimension

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """texts -> float32 (n, d) vectors of this collection's space."""
        return self.encoder.encode(texts)

    def chunk(self, text: str, window: int, overlap: int) -> list[Chunk]:
        return self.encoder.chunk(text, window, overlap)

    def chunk_and_encode(
        self, texts: Sequence[str], titles: Sequence[str], window: int, overlap: int
    ) -> list[tuple[list[Chunk], np.ndarray]]:
        """Each text's chunks and their vectors of this space (``Encoder.chunk_and_encode``)."""
        return self.encoder.chunk_and_encode(texts, window, overlap, titles=titles)

    def unknown_shares(self, texts: Sequence[str]) -> list[float]:
        return self.encoder.unknown_shares(texts)

    @property
    def model_name(self) -> str:
        """How warnings name the model: its folder's name."""
        return self.encoder.folder.name


class EncoderRegistry:
    """Loads each distinct encoder once; thread-safe."""

    def __init__(self, config: EncoderConfig, default_model: Path) -> None:
        self._config = config
        self._default_model = default_model
        self._loaded: dict[tuple[object, ...], Encoder] = {}
        self._classifiers: dict[str, Classifier] = {}
        self._lock = threading.Lock()

    def resolve(self, model_ref: str) -> str:
        """``default`` (or empty) names the model the package ships."""
        return str(self._default_model) if model_ref in ("", DEFAULT_MODEL_REF) else model_ref

    def complete(self, spec: CollectionSpec) -> CollectionSpec:
        """``spec`` with its unset fields taken from its model folder (a stored spec is complete)."""
        if is_complete(spec):
            return spec
        if spec.takes_vectors:
            return complete_spec(spec, {})  # no model folder to ask: the fallbacks
        folder = resolve_model(self.resolve(spec.model), self._config.hf_cache_dir)
        return complete_spec(spec, model_defaults(folder))

    def loaded(self, spec: CollectionSpec) -> Encoder | None:
        """The encoder of ``spec`` if it is loaded already, else None; never blocks (``load``
        holds the lock while a model loads, so this reads without it: one dict lookup)."""
        return self._loaded.get(self._key(spec))

    def _key(self, spec: CollectionSpec) -> tuple[object, ...]:
        return (self.resolve(spec.model), *encoder_values(spec))

    def load_classifier(self, ref: str) -> Classifier:
        with self._lock:
            classifier = self._classifiers.get(ref)
            if classifier is None:
                classifier = self._classifiers[ref] = Classifier.load(ref, self._config)
            return classifier

    def load(self, spec: CollectionSpec) -> Encoder:
        spec = self.complete(spec)
        model = self.resolve(spec.model)
        key = self._key(spec)
        with self._lock:
            encoder = self._loaded.get(key)
            if encoder is None:
                encoder = Encoder.load(model, spec, self._config)
                self._loaded[key] = encoder
            return encoder


class Catalog:
    """Create, find and drop collections; hand out the encoder of a collection's space.

    With ``info_ttl_s`` > 0 (the server: its poll interval) a looked-up collection is remembered
    that long, so a search does not ask SQL for it on every call (a tenth of a loaded server's
    CPU did that). A collection's record never changes while it exists, so the only staleness is
    a drop by another process, seen here at most ``info_ttl_s`` late, as that process's writes
    are; drops and creations through this catalog are seen at once.
    """

    def __init__(self, store: Store, encoders: EncoderRegistry, *, info_ttl_s: float = 0.0) -> None:
        self._store = store
        self._encoders = encoders
        self._info_ttl_s = info_ttl_s
        self._infos: dict[str, tuple[CollectionInfo, float]] = {}
        self._lock = threading.Lock()

    def create(self, name: str, spec: CollectionSpec, dimension: int | None = None) -> CollectionInfo:
        """``dimension``: required with model ``none`` (the length of the vectors its documents
        bring); with a model, None takes the model's and a number is checked against it."""
        self._forget(name)
        self._refuse_existing(name)  # before the model loads, which takes seconds for a large one
        spec = self._encoders.complete(spec)
        validate_spec(spec)
        classifier_revision = self._encoders.load_classifier(spec.classifier).revision if spec.classifier else ""
        if spec.takes_vectors:
            return self._create_without_model(name, spec, dimension, classifier_revision)
        encoder = self._encoders.load(spec)
        if dimension is not None and dimension != encoder.dimension:
            raise InvalidCollectionSpec(
                f"dimension {dimension} does not match model {spec.model or DEFAULT_MODEL_REF!r}, "
                f"whose vectors have {encoder.dimension}; leave it out, or use --model {NO_MODEL} "
                "to bring vectors of your own",
                field="dimension",
            )
        validate_index_spec(spec.index_spec, encoder.dimension)
        stored_spec = replace(spec, model=spec.model or DEFAULT_MODEL_REF)
        return self._store.create_collection(
            name,
            stored_spec,
            dimension=encoder.dimension,
            model_revision=encoder.model_revision,
            tokenizer_hash=encoder.tokenizer_hash,
            classifier_revision=classifier_revision,
        )

    def _create_without_model(
        self, name: str, spec: CollectionSpec, dimension: int | None, classifier_revision: str
    ) -> CollectionInfo:
        """A collection that stores the vectors it is given: its space is whatever made them."""
        if dimension is None:
            raise InvalidCollectionSpec(
                f"a collection with model {NO_MODEL!r} stores the vectors it is given: say how long "
                "they are with --dimension N (CreateCollectionRequest.dimension)",
                field="dimension",
            )
        if isinstance(dimension, bool) or not 1 <= dimension <= MAX_DIMENSION:
            raise InvalidCollectionSpec(
                f"dimension must be between 1 and {MAX_DIMENSION}, got {dimension}", field="dimension"
            )
        if spec.whitening:
            raise InvalidCollectionSpec(
                f"whitening is fitted on a model's vectors; model {NO_MODEL!r} has none", field="whitening"
            )
        validate_index_spec(spec.index_spec, dimension)
        return self._store.create_collection(
            name,
            spec,
            dimension=dimension,
            model_revision=NO_MODEL,
            tokenizer_hash=NO_MODEL,
            classifier_revision=classifier_revision,
        )

    def _refuse_existing(self, name: str) -> None:
        """CollectionExists when ``name`` is taken (the store refuses it again if another process
        creates it meanwhile)."""
        try:
            self._store.get_collection(name)
        except CollectionNotFound:
            return
        raise CollectionExists(name)

    def get(self, name: str) -> CollectionInfo:
        """The collection called ``name``, or ``CollectionNotFound`` (blocking: may ask SQL)."""
        info = self.cached(name)
        if info is not None:
            return info
        info = self._store.get_collection(name)
        if self._info_ttl_s > 0:
            with self._lock:
                self._infos[name] = (info, time.monotonic())
        return info

    def cached(self, name: str) -> CollectionInfo | None:
        """``name``'s collection if it was looked up within ``info_ttl_s``, else None; never
        blocks, so an event loop may call it."""
        with self._lock:
            entry = self._infos.get(name)
        if entry is None or time.monotonic() - entry[1] >= self._info_ttl_s:
            return None
        return entry[0]

    def _forget(self, name: str) -> None:
        with self._lock:
            self._infos.pop(name, None)

    def list(self) -> list[CollectionInfo]:
        return self._store.list_collections()

    def drop(self, name: str) -> None:
        self._forget(name)
        self._store.drop_collection(name)
        self._forget(name)

    def stats(self, name: str) -> CollectionStats:
        return self._store.stats(self._store.get_collection(name).id)

    def ready_encoder(self, info: CollectionInfo) -> CollectionEncoder | None:
        """``encoder_for(info)`` if that needs no model load, SQL read or error, else None; never
        blocks, so a searcher's event loop asks here before it sends the call to a thread."""
        if info.spec.takes_vectors:
            return None  # encoder_for says why there is none
        encoder = self._encoders.loaded(info.spec)
        if encoder is None or not _same_space(encoder, info):
            return None
        return CollectionEncoder(encoder)

    def encoder_for(self, info: CollectionInfo) -> CollectionEncoder:
        """The encoder that reproduces ``info``'s embedding space, or ``EmbeddingSpaceMismatch``
        (``InvalidArgument`` for a collection without a model: it embeds no text)."""
        if info.spec.takes_vectors:
            raise InvalidArgument(
                f"collection {info.name!r} has no model (it stores the vectors its documents bring): "
                "search it with a vector of its space, not with text",
                field="query",
            )
        encoder = self._encoders.load(info.spec)
        if not _same_space(encoder, info):
            raise EmbeddingSpaceMismatch(
                f"collection {info.name!r} was embedded with model revision {info.model_revision} "
                f"(tokenizer {info.tokenizer_hash}) but {self._encoders.resolve(info.spec.model)!r} "
                f"is now revision {encoder.model_revision} (tokenizer {encoder.tokenizer_hash}); "
                "restore that model or re-ingest into a new collection"
            )
        return CollectionEncoder(encoder)

    def classifier_for(self, info: CollectionInfo) -> Classifier | None:
        """The classifier that labels ``info``'s documents (None when it has none), or
        ``EmbeddingSpaceMismatch`` when its folder now holds other weights: labels of two
        classifiers would not mean the same."""
        if not info.spec.classifier:
            return None
        classifier = self._encoders.load_classifier(info.spec.classifier)
        if classifier.revision != info.classifier_revision:
            raise EmbeddingSpaceMismatch(
                f"collection {info.name!r} is labelled by classifier {info.spec.classifier!r} revision "
                f"{info.classifier_revision}, which is now revision {classifier.revision}; restore "
                "that classifier or ingest into a new collection"
            )
        return classifier

    def refit_whitening(self, info: CollectionInfo, policy: WhiteningPolicy, *, force: bool = False) -> int | None:
        """Fit ``info``'s whitening on up to ``policy.max_sample`` of its stored vectors when
        ``refit_due`` says so (or now, with ``force``); returns the new version, None when not due.
        Searchers rebuild their indexes in the new space when they see the version move."""
        if not info.spec.whitening:
            raise InvalidArgument(f"collection {info.name!r} does not whiten (created without whitening)", field="whitening")
        stored = self._store.whitening(info.id)
        vectors = self._store.stats(info.id).chunks
        due = refit_due(
            stored.fitted_on if stored else None,
            vectors,
            min_sample=policy.min_sample,
            growth=policy.growth,
            max_sample=policy.max_sample,
        )
        if not (due or force):
            return None
        if vectors < policy.min_sample:
            raise InvalidArgument(
                f"collection {info.name!r} holds {vectors} vectors; a whitening needs at least "
                f"{policy.min_sample} (until then its vectors are searched unwhitened)",
                field="whitening",
            )
        sample = sample_vectors(self._store, info.id, policy.max_sample)
        version = self._store.set_whitening(info.id, fit_whitening(sample).to_bytes(), len(sample))
        log.info("collection %r: whitening version %d fitted on %d vectors", info.name, version, len(sample))
        return version


def _same_space(encoder: Encoder, info: CollectionInfo) -> bool:
    return encoder.model_revision == info.model_revision and encoder.tokenizer_hash == info.tokenizer_hash
