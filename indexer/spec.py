"""The collection spec, declared once: every other form of it is derived from this declaration.

``CollectionSpec`` says how a collection's vectors are made and indexed; it is fixed when the
collection is created (one collection = one embedding space, docs/ARCHITECTURE.md). Each field
carries a ``SpecField`` in its metadata, and from the dataclass fields with that metadata come:

- the SQL columns of ``collections`` (``indexer.schema``), one per field, typed by its default
  (or its fallback);
- the proto conversion both ways (``searcher.convert``), matched by field name;
- the CLI options of ``collections create`` and ``ingest`` (``albatross.options``).

Adding a field is this declaration, a field of the same name in ``message CollectionSpec``
(``protos/albatross/v1/albatross.proto``) and an alembic revision adding its column; the steps
are in docs/ARCHITECTURE.md ("Adding a spec field").

No I/O and no third-party imports here: ``indexer.records`` re-exports the names below.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from indexer.errors import InvalidCollectionSpec

# What the spec's ``model`` says when it means "the model the package ships".
DEFAULT_MODEL_REF = "default"
# The model of a collection that embeds nothing: it stores the vectors its documents bring.
NO_MODEL = "none"
# The file in a model folder that says how its vectors are made (written by
# ``albatross.training.export``): ``{"pooling": "mean", "layers": [-1], "normalize": true,
# "max_length": 256}``. Its values are the defaults of a collection created with that model.
MODEL_DEFAULTS_FILE = "albatross_pooling.json"


class PoolingMode(enum.StrEnum):
    """How token embeddings become one vector (see ``indexer.pooling``)."""

    MEAN = "mean"
    MAX = "max"
    CLS = "cls"
    MEAN_MAX = "mean_max"


class VectorDtype(enum.StrEnum):
    """How ``chunks.vector`` is stored; vectors are float32 in memory either way."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"


class LexicalAnalyzer(enum.StrEnum):
    """How text becomes terms for the lexical index (see ``indexer.lexical``).

    ``english``: words lowercased, English stop words dropped, Snowball (Porter 2) stems;
    ``simple``: words lowercased, nothing dropped nor stemmed (any alphabetic language, identifiers);
    ``cjk``: character unigrams and bigrams, for Chinese, Japanese and Korean, which have no spaces.
    """

    ENGLISH = "english"
    SIMPLE = "simple"
    CJK = "cjk"


class FusionMethod(enum.StrEnum):
    """How a hybrid search merges its two ranked lists (see ``searcher.fusion``)."""

    RRF = "rrf"
    CONVEX = "convex"
    ADAPTIVE = "adaptive"


@dataclass(frozen=True)
class SpecField:
    """What a spec field needs beyond its name, type and default.

    ``help`` is the CLI help (and the proto comment's gist); ``column`` the SQL column when it
    is not the field's name; ``max_chars`` bounds a string column (None: unbounded text);
    ``cli_default`` the CLI's value for a field the dataclass requires.

    A field whose default is None is "unset" until ``complete_spec`` fills it when the collection
    is created: ``from_model`` fields take the model folder's ``MODEL_DEFAULTS_FILE`` value, else
    ``fallback``; ``derive`` fields are computed from the fields before them. ``fallback`` also
    gives the field's type (SQL column, CLI parsing) where the default cannot.

    ``encoder`` marks the fields an ``Encoder`` is built with (besides the model): two specs that
    agree on them share one loaded encoder (``indexer.catalog.EncoderRegistry``).
    """

    help: str
    column: str | None = None
    max_chars: int | None = None
    cli_default: Any = None
    from_model: bool = False
    fallback: Any = None
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    encoder: bool = False


def _spec(default: Any = dataclasses.MISSING, **meta: Any) -> Any:
    return field(default=default, metadata={"spec": SpecField(**meta)})


@dataclass(frozen=True)
class CollectionSpec:
    """How a collection's vectors are made and indexed. Fixed at creation: one collection = one space.

    ``overlap`` is the number of tokens two consecutive windows share (what Hugging Face calls
    ``stride``). ``max_length`` caps one forward pass, special tokens and the chunk's title
    included (a title that would not leave room for a whole window is shortened,
    ``indexer.chunking.window_input``).

    Enum fields accept their string values and list fields any sequence; both are normalised
    here, so an unknown ``pooling`` or ``vector_dtype`` fails when the spec is built. None means
    "unset": ``complete_spec`` fills it from the model when the collection is created, so a
    stored collection's spec is always complete.
    """

    model: str = _spec(
        help=f"local model folder or cached hub id; {NO_MODEL}: no model, the collection stores the "
        "vectors its documents bring (with --dimension N)",
        cli_default=DEFAULT_MODEL_REF,
    )
    pooling: PoolingMode | None = _spec(
        None,
        help="how token vectors become one vector",
        max_chars=16,
        from_model=True,
        fallback=PoolingMode.MEAN,
        encoder=True,
    )
    layers: tuple[int, ...] | None = _spec(
        None,
        help="hidden layer(s) to pool, comma-separated (e.g. -1 or 0,-1)",
        from_model=True,
        fallback=(-1,),
        encoder=True,
    )
    max_length: int | None = _spec(
        None, help="tokens per forward pass", from_model=True, fallback=512, encoder=True
    )
    # Half of max_length by default: the other half is room for the title before each window.
    window: int | None = _spec(
        None,
        help="tokens per chunk (default: half of max_length, at most 256)",
        fallback=256,
        derive=lambda spec: min(256, spec["max_length"] // 2),
    )
    overlap: int | None = _spec(
        None,
        help="tokens shared by consecutive chunks (default: a quarter of window)",
        fallback=64,
        derive=lambda spec: spec["window"] // 4,
    )
    normalize: bool | None = _spec(
        None, help="L2-normalise vectors", from_model=True, fallback=True, encoder=True
    )
    index_spec: str = _spec(
        "Flat", help="FAISS factory string (Flat, HNSW32, IVF1024,PQ32)", max_chars=256
    )
    vector_dtype: VectorDtype = _spec(VectorDtype.FLOAT32, help="how vectors are stored", max_chars=16)
    whitening: bool = _spec(
        False, help="fit and apply whitening (raw checkpoints)", column="use_whitening"
    )
    # The lexical index: its analyser is fixed with the collection (index and queries must be
    # analysed alike); the fusion is what hybrid searches use unless a request says otherwise.
    lexical_analyzer: LexicalAnalyzer = _spec(
        LexicalAnalyzer.ENGLISH, help="words of the lexical index: english, simple or cjk", max_chars=16
    )
    # Adaptive: a convex fusion whose dense share is dense_weight for ordinary queries and
    # 1 - dense_weight for exact-term lookups (searcher.exact_terms). 0.75 is Weaviate's documented
    # default alpha; its mirror, 0.25, leans on BM25 where the query names a string an encoder has
    # never seen. RRF k=60 is the other convention (Elasticsearch, Milvus, Qdrant, Vespa). None of
    # these was chosen by measuring: msmarco-5k is the set quality is measured on, never tuned on.
    # Its figures for every fusion: docs/OPERATIONS.md, "Lexical and hybrid search".
    fusion: FusionMethod = _spec(
        FusionMethod.ADAPTIVE, help="hybrid search's default fusion: adaptive, rrf or convex", max_chars=16
    )
    rrf_k: int = _spec(60, help="hybrid with rrf: the rank constant")
    dense_weight: float = _spec(
        0.75,
        help="hybrid with convex: the dense side's share, 0..1; with adaptive: its share for "
        "ordinary queries (exact-term lookups get 1 - it)",
    )

    # Labels, not vectors: a classifier does not change the embedding space.
    classifier: str = _spec(
        "", help="a local ALBERT/BERT *ForSequenceClassification checkpoint that labels every document"
    )
    label_field: str = _spec("label", help="metadata field of the classifier's label", max_chars=128)
    score_field: str = _spec(
        "label_score", help="metadata field of the classifier's label probability", max_chars=128
    )

    @property
    def takes_vectors(self) -> bool:
        """True for a collection that stores its documents' own vectors and embeds nothing."""
        return self.model == NO_MODEL

    def __post_init__(self) -> None:
        for spec_field in spec_fields():
            value = getattr(self, spec_field.name)
            normalised = _normalise(spec_field, value)
            if normalised is not value:
                object.__setattr__(self, spec_field.name, normalised)


def spec_default(name: str) -> Any:
    """The declared default of the spec field ``name`` (for records that mirror a field)."""
    return CollectionSpec.__dataclass_fields__[name].default


def spec_fields() -> Iterator[dataclasses.Field[Any]]:
    """The declared fields of ``CollectionSpec``, in declaration order."""
    return (f for f in dataclasses.fields(CollectionSpec) if "spec" in f.metadata)


def field_info(spec_field: dataclasses.Field[Any]) -> SpecField:
    return spec_field.metadata["spec"]


def column_name(spec_field: dataclasses.Field[Any]) -> str:
    """The SQL column holding this field."""
    return field_info(spec_field).column or spec_field.name


def example(spec_field: dataclasses.Field[Any]) -> Any:
    """A value of the field's type: its default, else its fallback (or its CLI default)."""
    info = field_info(spec_field)
    if spec_field.default not in (None, dataclasses.MISSING):
        return spec_field.default
    return info.fallback if info.fallback is not None else info.cli_default


def enum_type(spec_field: dataclasses.Field[Any]) -> type[enum.Enum] | None:
    """The enum a field's values come from, or None."""
    value = example(spec_field)
    return type(value) if isinstance(value, enum.Enum) else None


def is_sequence(spec_field: dataclasses.Field[Any]) -> bool:
    return isinstance(example(spec_field), tuple)


def _normalise(spec_field: dataclasses.Field[Any], value: Any) -> Any:
    if value is None:
        return value
    members = enum_type(spec_field)
    if members is not None and not isinstance(value, members):
        try:
            return members(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in members)
            raise InvalidCollectionSpec(
                f"{spec_field.name} must be one of {choices}, got {value!r}", field=spec_field.name
            ) from None
    if is_sequence(spec_field) and not isinstance(value, tuple):
        return tuple(value)
    return value


def encoder_values(spec: CollectionSpec) -> tuple[Any, ...]:
    """The values of the fields an encoder is built with, in declaration order."""
    return tuple(getattr(spec, f.name) for f in spec_fields() if field_info(f).encoder)


def is_complete(spec: CollectionSpec) -> bool:
    return all(getattr(spec, f.name) is not None for f in spec_fields())


def complete_spec(spec: CollectionSpec, model_defaults: Mapping[str, Any]) -> CollectionSpec:
    """``spec`` with every unset field filled, in declaration order.

    model_defaults: what the model folder says (``MODEL_DEFAULTS_FILE``, read by
        ``indexer.checkpoints.model_defaults``); fields it does not name take their fallback.
    """
    values: dict[str, Any] = {}
    for spec_field in spec_fields():
        value = getattr(spec, spec_field.name)
        info = field_info(spec_field)
        if value is None and info.from_model:
            value = model_defaults.get(spec_field.name, info.fallback)
        elif value is None and info.derive is not None:
            value = info.derive(values)
        values[spec_field.name] = _normalise(spec_field, value)
    return CollectionSpec(**values)


def to_stored(spec: CollectionSpec) -> dict[str, Any]:
    """``column -> value`` with JSON/SQL-ready values (enums as strings, tuples as lists).

    Only a complete spec is stored: ``InvalidCollectionSpec`` names a field left unset.
    """
    stored: dict[str, Any] = {}
    for spec_field in spec_fields():
        value = getattr(spec, spec_field.name)
        if value is None:
            raise InvalidCollectionSpec(f"{spec_field.name} is unset (complete the spec first)", field=spec_field.name)
        if isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        stored[column_name(spec_field)] = value
    return stored


def from_stored(stored: Any) -> CollectionSpec:
    """The spec of a stored row or mapping (anything with the columns as attributes or keys)."""
    get = stored.get if isinstance(stored, dict) else lambda name: getattr(stored, name)
    return CollectionSpec(**{f.name: get(column_name(f)) for f in spec_fields()})


def check_dimension(dimension: object) -> int:
    """A vector dimension: a positive integer, or ``InvalidCollectionSpec``."""
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension <= 0:
        raise InvalidCollectionSpec(f"dimension must be a positive integer, got {dimension!r}", field="dimension")
    return dimension


def validate_spec(spec: CollectionSpec) -> None:
    """Reject specs whose fields cannot work together, before anything is loaded or written.

    Each field's own kind (an enum member, a tuple) is checked when the spec is built; what
    needs the model (its position table, its layers) is checked when the encoder loads.
    """
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
    if not spec.index_spec.strip():
        raise InvalidCollectionSpec("index_spec must not be empty", field="index_spec")
    if not 1 <= spec.rrf_k <= 100_000:
        raise InvalidCollectionSpec(f"rrf_k must be between 1 and 100000, got {spec.rrf_k}", field="rrf_k")
    if not 0.0 <= spec.dense_weight <= 1.0:
        raise InvalidCollectionSpec(
            f"dense_weight must be between 0 and 1, got {spec.dense_weight}", field="dense_weight"
        )
    if spec.classifier and (not spec.label_field.strip() or not spec.score_field.strip()):
        raise InvalidCollectionSpec("label_field and score_field must name metadata fields", field="label_field")
    if spec.classifier and spec.label_field == spec.score_field:
        raise InvalidCollectionSpec(
            f"label_field and score_field are both {spec.label_field!r}: a label and its score need two fields",
            field="score_field",
        )
