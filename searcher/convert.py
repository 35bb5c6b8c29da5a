"""Protobuf messages <-> domain records: the only module below the servicer that knows ``albatross_pb2``.

Everything arriving from a client is validated here and rejected with ``InvalidArgument`` (or
``InvalidFilter`` / ``InvalidDocument``) naming the offending field, so the servicer maps it to
INVALID_ARGUMENT.

``google.protobuf.Struct`` holds every number as a double; integral values come back as ``int`` so
that ``{"year": 2020}`` round-trips as written rather than as ``2020.0``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field
from typing import Any, Protocol

import numpy as np
from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor

from indexer.errors import InvalidArgument, InvalidDocument, InvalidFilter
from indexer.records import (
    CollectionInfo,
    CollectionSpec,
    CollectionStats,
    Condition,
    DeleteResult,
    Document,
    DocumentStatus,
    Fusion,
    FusionMethod,
    MetadataFilter,
    Range,
    Scalar,
    SearchMode,
    StoredDocument,
)
from indexer.spec import enum_type, is_sequence, spec_fields
from indexer.validation import validate_document
from protos.albatross.v1 import albatross_pb2 as pb
from searcher.fusion import FusionRequest
from searcher.live import IndexStatus
from searcher.results import Hit, LegHit, Ranking

MAX_K = 1000
MAX_BATCH_QUERIES = 1000
# The encoder reads at most max_length tokens of a query, but tokenizes all of it first: a 10 MB
# query held a server thread (and the shared tokenizer) for about 50 s before this limit.
MAX_QUERY_CHARS = 65_536
# Doubles beyond 2**53 are not exact integers any more; leave them as floats.
_EXACT_INT_LIMIT = 2**53

# FUSION_METHOD_<MEMBER> for every member of the spec's enum: a fusion added there reaches gRPC
# (and HTTP, which speaks the same messages) once the proto names it.
_FUSION_FROM_PB = {pb.FusionMethod.Value(f"FUSION_METHOD_{method.name}"): method for method in FusionMethod}
_FUSION_TO_PB = {method: value for value, method in _FUSION_FROM_PB.items()}
_MODE_FROM_PB = {
    pb.SEARCH_MODE_UNSPECIFIED: SearchMode.DENSE,
    pb.SEARCH_MODE_DENSE: SearchMode.DENSE,
    pb.SEARCH_MODE_LEXICAL: SearchMode.LEXICAL,
    pb.SEARCH_MODE_HYBRID: SearchMode.HYBRID,
}
_MODE_TO_PB = {
    SearchMode.DENSE: pb.SEARCH_MODE_DENSE,
    SearchMode.LEXICAL: pb.SEARCH_MODE_LEXICAL,
    SearchMode.HYBRID: pb.SEARCH_MODE_HYBRID,
}

_STATUS_TO_PB = {
    status: pb.DocumentStatus.Value(f"DOCUMENT_STATUS_{status.name}") for status in DocumentStatus
}
STATUS_FROM_PB = {number: status for status, number in _STATUS_TO_PB.items()}


class DocumentOutcomeLike(Protocol):
    """What ``indexer.ingest.DocumentOutcome`` tells about one upserted document."""

    external_id: str
    status: DocumentStatus
    error: str | None
    sequence: int | None
    warning: str | None


# --- requests: validation ------------------------------------------------------------------------


def require_name(value: str, field: str) -> str:
    """A collection name from a request, or ``InvalidArgument`` naming ``field``."""
    if not value.strip():
        raise InvalidArgument(f"{field} must not be empty", field=field)
    return value


def validate_k(k: int, field: str = "k") -> int:
    if not 1 <= k <= MAX_K:
        raise InvalidArgument(f"{field} must be between 1 and {MAX_K}, got {k}", field=field)
    return k


def require_text(value: str, field: str) -> str:
    """A query text: not blank, and at most ``MAX_QUERY_CHARS`` characters."""
    if not value.strip():
        raise InvalidArgument(f"{field} must not be empty", field=field)
    if len(value) > MAX_QUERY_CHARS:
        raise InvalidArgument(
            f"{field} has {len(value)} characters, more than the limit of {MAX_QUERY_CHARS}",
            field=field,
        )
    return value


def vectors_from_pb(messages: Sequence[pb.Vector], field: str) -> np.ndarray:
    """Query vectors -> float32 (n, d): all of one non-zero length and finite (the collection's
    dimension is checked by the search service, which knows it)."""
    lengths = {len(message.values) for message in messages}
    if not messages or 0 in lengths or len(lengths) != 1:
        raise InvalidArgument(f"{field} must hold vectors of one non-zero length", field=field)
    vectors = np.array([list(message.values) for message in messages], dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise InvalidArgument(f"{field} contains NaN or infinite values", field=field)
    return vectors


def vectors_to_pb(vectors: np.ndarray, warnings: Sequence[Sequence[str]] = ()) -> pb.EmbedResponse:
    """``vectors``: float32 (n, d); ``warnings``: one list per vector (none at all is allowed)."""
    return pb.EmbedResponse(
        vectors=[pb.Vector(values=row.tolist()) for row in vectors],
        warnings=[pb.QueryWarnings(warnings=list(said)) for said in warnings],
    )


def check_batch_size(count: int, field: str) -> None:
    """A batch request holds 1 to MAX_BATCH_QUERIES queries or vectors."""
    if not 1 <= count <= MAX_BATCH_QUERIES:
        raise InvalidArgument(f"{field} must hold 1 to {MAX_BATCH_QUERIES} items, got {count}", field=field)


def batch_queries(queries: Sequence[str]) -> list[str]:
    """The query texts of a batch request, each checked, naming its position when bad."""
    check_batch_size(len(queries), "queries")
    return [require_text(q, f"queries[{i}]") for i, q in enumerate(queries)]


@dataclass(frozen=True)
class SearchAsked:
    """A checked search request: ``vectors`` when the client sent vectors, ``queries`` when it sent
    text (both in hybrid mode with vectors: the dense leg uses the vectors, the lexical leg the
    text)."""

    collection: str
    vectors: np.ndarray | None
    queries: list[str]
    k: int
    metadata_filter: MetadataFilter | None
    mode: SearchMode = SearchMode.DENSE
    fusion: FusionRequest = field(default_factory=FusionRequest)


def mode_from_pb(value: int) -> SearchMode:
    if value not in _MODE_FROM_PB:
        raise InvalidArgument(f"mode has unknown value {value}", field="mode")
    return _MODE_FROM_PB[value]


def mode_to_pb(mode: SearchMode) -> int:
    return _MODE_TO_PB[mode]


def fusion_from_pb(message: pb.Fusion) -> FusionRequest:
    """The fusion fields a request set, range-checked against the defaults (so a bad value is
    refused before anything runs)."""
    if message.method not in (pb.FUSION_METHOD_UNSPECIFIED, *_FUSION_FROM_PB):
        raise InvalidArgument(f"fusion.method has unknown value {message.method}", field="fusion.method")
    asked = FusionRequest(
        method=_FUSION_FROM_PB.get(message.method),
        rrf_k=message.rrf_k if message.HasField("rrf_k") else None,
        dense_weight=message.dense_weight if message.HasField("dense_weight") else None,
    )
    asked.resolve(Fusion())
    return asked


def fusion_to_pb(asked: FusionRequest) -> pb.Fusion:
    """The client side of ``fusion_from_pb``."""
    message = pb.Fusion(method=_FUSION_TO_PB[asked.method] if asked.method else pb.FUSION_METHOD_UNSPECIFIED)
    if asked.rrf_k is not None:
        message.rrf_k = asked.rrf_k
    if asked.dense_weight is not None:
        message.dense_weight = asked.dense_weight
    return message


def _check_mode_inputs(mode: SearchMode, by_vector: bool, has_text: bool, vector_field: str) -> None:
    """Lexical search needs words; hybrid needs words, and may bring its dense leg's vectors."""
    if mode is SearchMode.LEXICAL and by_vector:
        raise InvalidArgument(
            f"{vector_field} cannot be searched lexically: send query text", field=vector_field
        )
    if mode is SearchMode.HYBRID and not has_text:
        raise InvalidArgument("hybrid search needs query text for its lexical leg", field="query")


def search_from_pb(request: pb.SearchRequest) -> SearchAsked:
    """Check a Search request field by field, in the order every server reports them."""
    collection = require_name(request.collection, "collection")
    mode = mode_from_pb(request.mode)
    by_vector = request.HasField("vector")
    vectors = vectors_from_pb([request.vector], "vector") if by_vector else None
    with_text = not by_vector or (mode is SearchMode.HYBRID and bool(request.query))
    _check_mode_inputs(mode, by_vector, with_text, "vector")
    queries = [require_text(request.query, "query")] if with_text else []
    return SearchAsked(
        collection,
        vectors,
        queries,
        validate_k(request.k),
        filter_from_pb(request.filter),
        mode,
        fusion_from_pb(request.fusion),
    )


def search_batch_from_pb(request: pb.SearchBatchRequest) -> SearchAsked:
    """Check a SearchBatch request field by field, in the order every server reports them."""
    collection = require_name(request.collection, "collection")
    mode = mode_from_pb(request.mode)
    vectors = None
    if request.vectors:
        check_batch_size(len(request.vectors), "vectors")
        vectors = vectors_from_pb(request.vectors, "vectors")
    with_text = vectors is None or (mode is SearchMode.HYBRID and bool(request.queries))
    _check_mode_inputs(mode, vectors is not None, with_text, "vectors")
    queries = batch_queries(request.queries) if with_text else []
    if vectors is not None and queries and len(queries) != len(vectors):
        raise InvalidArgument(
            f"queries ({len(queries)}) and vectors ({len(vectors)}) must pair up one to one", field="vectors"
        )
    return SearchAsked(
        collection,
        vectors,
        queries,
        validate_k(request.k),
        filter_from_pb(request.filter),
        mode,
        fusion_from_pb(request.fusion),
    )


def require_ids(ids: Sequence[str], field: str = "ids") -> list[str]:
    for position, external_id in enumerate(ids):
        if not external_id.strip():
            raise InvalidArgument(f"{field}[{position}] is empty", field=f"{field}[{position}]")
    return list(ids)


# --- metadata ------------------------------------------------------------------------------------


def _restore_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INT_LIMIT:
        return int(value)
    if isinstance(value, dict):
        return {key: _restore_ints(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_restore_ints(item) for item in value]
    return value


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return _restore_ints(json_format.MessageToDict(struct))


def dict_to_struct(mapping: Mapping[str, Any], out: struct_pb2.Struct | None = None) -> struct_pb2.Struct:
    struct = struct_pb2.Struct() if out is None else out
    struct.update(dict(mapping))
    return struct


# --- collections ---------------------------------------------------------------------------------


def spec_from_pb(message: pb.CollectionSpec) -> CollectionSpec:
    """The ``CollectionSpec`` a client asks for; fields it leaves unset stay unset (None), for
    the catalog to fill from the model folder when it creates the collection (model "" = default).

    Derived from the spec's declaration: each field reads the proto field of its name. Unset
    means no presence (``optional``), an empty list, a zero enum (``*_UNSPECIFIED``) or an empty
    string; a required field (``model``) takes the message's value as it is.
    """
    values = {}
    for spec_field in spec_fields():
        descriptor = message.DESCRIPTOR.fields_by_name[spec_field.name]
        if _is_set(message, descriptor):
            values[spec_field.name] = _value_from_pb(message, descriptor, spec_field)
        elif spec_field.default is MISSING:
            values[spec_field.name] = getattr(message, spec_field.name)
    return CollectionSpec(**values)


def _is_set(message: pb.CollectionSpec, descriptor: FieldDescriptor) -> bool:
    if descriptor.has_presence:
        return message.HasField(descriptor.name)
    return bool(getattr(message, descriptor.name))


def _value_from_pb(message: pb.CollectionSpec, descriptor: FieldDescriptor, spec_field: Field[Any]) -> Any:
    value = getattr(message, descriptor.name)
    members = enum_type(spec_field)
    if members is None or descriptor.enum_type is None:  # a string names the member itself
        return tuple(value) if is_sequence(spec_field) else value
    by_number = {_enum_number(descriptor, member): member for member in members}
    if value not in by_number:
        name = f"spec.{spec_field.name}"
        raise InvalidArgument(f"{name} has unknown value {value}", field=name)
    return by_number[value]


def _enum_number(descriptor: FieldDescriptor, member: enum.Enum) -> int:
    """``PoolingMode.MEAN_MAX`` <-> ``POOLING_MEAN_MAX``: proto enum values are named after the
    field and the member's value (a spec enum may also travel as its string value)."""
    return descriptor.enum_type.values_by_name[f"{descriptor.name}_{member.value}".upper()].number


def spec_to_pb(spec: CollectionSpec) -> pb.CollectionSpec:
    values: dict[str, Any] = {}
    for spec_field in spec_fields():
        value = getattr(spec, spec_field.name)
        if value is None:  # unset: the server completes it from the model
            continue
        descriptor = pb.CollectionSpec.DESCRIPTOR.fields_by_name[spec_field.name]
        if isinstance(value, enum.Enum):
            value = _enum_number(descriptor, value) if descriptor.enum_type else value.value
        values[spec_field.name] = list(value) if isinstance(value, tuple) else value
    return pb.CollectionSpec(**values)


def collection_to_pb(info: CollectionInfo) -> pb.Collection:
    return pb.Collection(
        name=info.name,
        spec=spec_to_pb(info.spec),
        dimension=info.dimension,
        model_revision=info.model_revision,
        tokenizer_hash=info.tokenizer_hash,
    )


def stats_to_pb(stats: CollectionStats, status: IndexStatus) -> pb.CollectionStats:
    return pb.CollectionStats(
        documents=stats.documents,
        chunks=stats.chunks,
        last_sequence=stats.last_sequence,
        index_sequence=status.sequence,
        index_vectors=status.vectors,
        lexical_sequence=status.lexical_sequence,
        lexical_chunks=status.lexical_chunks,
        mostly_unknown_documents=stats.mostly_unknown,
    )


# --- documents -----------------------------------------------------------------------------------


def document_from_pb(message: pb.Document, position: int, record: str | None = None) -> Document:
    """Validate one streamed document; ``InvalidDocument`` names its position (or ``record``, e.g.
    an NDJSON line), id and the field."""
    where = record or f"documents[{position}]"
    record = where + (f" (id {message.id!r})" if message.id else "")
    try:
        metadata = struct_to_dict(message.metadata)
    except ValueError as exc:  # NaN or infinity: no JSON form (json_format refuses them)
        raise InvalidDocument(
            "field 'metadata' holds NaN or an infinite number, which JSON cannot represent",
            record=record,
            field="metadata",
        ) from exc
    vector = list(message.vector.values) if message.HasField("vector") else None
    return validate_document(message.id, message.text, message.title, metadata, record=record, vector=vector)


def rejected_to_pb(external_id: str, error: str) -> pb.DocumentResult:
    return pb.DocumentResult(id=external_id, status=pb.DOCUMENT_STATUS_REJECTED, error=error)


def outcome_to_pb(outcome: DocumentOutcomeLike) -> pb.DocumentResult:
    return pb.DocumentResult(
        id=outcome.external_id,
        status=_STATUS_TO_PB.get(outcome.status, pb.DOCUMENT_STATUS_UNSPECIFIED),
        error=outcome.error or "",
        sequence=outcome.sequence or 0,
        warning=outcome.warning or "",
    )


def delete_result_to_pb(result: DeleteResult) -> pb.DeleteResponse:
    return pb.DeleteResponse(
        deleted=list(result.deleted), missing=list(result.missing), last_sequence=result.last_sequence
    )


def stored_document_to_pb(document: StoredDocument) -> pb.StoredDocument:
    message = pb.StoredDocument(
        id=document.external_id,
        title=document.title,
        text=document.text,
        content_hash=document.content_hash,
        chunk_count=document.chunk_count,
    )
    dict_to_struct(document.metadata, message.metadata)
    return message


def hit_to_pb(hit: Hit) -> pb.Hit:
    message = pb.Hit(
        id=hit.external_id,
        score=hit.score,
        title=hit.title,
        text=hit.text,
        start=hit.start,
        end=hit.end,
        legs=[pb.LegScore(leg=leg.leg, score=leg.score, rank=leg.rank) for leg in hit.legs],
    )
    dict_to_struct(hit.metadata, message.metadata)
    return message


def hit_from_pb(message: pb.Hit) -> Hit:
    """The client side of ``hit_to_pb``."""
    return Hit(
        external_id=message.id,
        score=message.score,
        title=message.title,
        text=message.text,
        start=message.start,
        end=message.end,
        metadata=struct_to_dict(message.metadata),
        legs=tuple(LegHit(leg.leg, leg.score, leg.rank) for leg in message.legs),
    )


def ranking_to_pb(ranking: Ranking, warnings: Sequence[str] = ()) -> pb.SearchResponse:
    return pb.SearchResponse(
        hits=[hit_to_pb(hit) for hit in ranking.hits],
        warnings=list(warnings),
        whitening_version=ranking.whitening_version,
    )


# --- filters -------------------------------------------------------------------------------------


def _scalar_from_pb(value: pb.Value, field: str) -> Scalar:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value":
        number = value.number_value
        if not math.isfinite(number):
            raise InvalidFilter(f"{field} must be a finite number", field=field)
        return _restore_ints(number)
    raise InvalidFilter(f"{field} has no value set", field=field)


def _range_from_pb(message: pb.Range, field: str) -> Range:
    bounds = {name: getattr(message, name) for name in ("gt", "gte", "lt", "lte") if message.HasField(name)}
    if not bounds:
        raise InvalidFilter(f"{field} needs at least one of gt, gte, lt, lte", field=field)
    if "gt" in bounds and "gte" in bounds:
        raise InvalidFilter(f"{field} sets both gt and gte", field=field)
    if "lt" in bounds and "lte" in bounds:
        raise InvalidFilter(f"{field} sets both lt and lte", field=field)
    for name, bound in bounds.items():
        if not math.isfinite(bound):
            raise InvalidFilter(f"{field}.{name} must be a finite number", field=f"{field}.{name}")
    return Range(**bounds)


def _condition_from_pb(message: pb.Condition, where: str) -> Condition:
    if not message.field.strip():
        raise InvalidFilter(f"{where}.field must name a metadata field", field=f"{where}.field")
    op = message.WhichOneof("op")
    if op == "equals":
        return Condition(field=message.field, equals=_scalar_from_pb(message.equals, f"{where}.equals"))
    if op == "one_of":
        if not message.one_of.values:
            raise InvalidFilter(f"{where}.one_of is empty", field=f"{where}.one_of")
        values = tuple(
            _scalar_from_pb(value, f"{where}.one_of.values[{i}]")
            for i, value in enumerate(message.one_of.values)
        )
        return Condition(field=message.field, one_of=values)
    if op == "range":
        return Condition(field=message.field, range=_range_from_pb(message.range, f"{where}.range"))
    raise InvalidFilter(f"{where} needs one of equals, one_of, range", field=where)


def filter_from_pb(message: pb.Filter, field: str = "filter") -> MetadataFilter | None:
    """The request's filter, or ``None`` when it has no conditions (search everything)."""
    conditions = tuple(
        _condition_from_pb(condition, f"{field}.conditions[{i}]")
        for i, condition in enumerate(message.conditions)
    )
    return MetadataFilter(conditions) if conditions else None


def _scalar_to_pb(value: Scalar) -> pb.Value:
    if isinstance(value, bool):
        return pb.Value(bool_value=value)
    if isinstance(value, str):
        return pb.Value(string_value=value)
    return pb.Value(number_value=float(value))


def filter_to_pb(metadata_filter: MetadataFilter | None) -> pb.Filter:
    """The client side of ``filter_from_pb``."""
    message = pb.Filter()
    for condition in metadata_filter.conditions if metadata_filter else ():
        out = message.conditions.add(field=condition.field)
        if condition.equals is not None:
            out.equals.CopyFrom(_scalar_to_pb(condition.equals))
        elif condition.one_of is not None:
            out.one_of.values.extend(_scalar_to_pb(value) for value in condition.one_of)
        elif condition.range is not None:
            bounds = {
                name: getattr(condition.range, name)
                for name in ("gt", "gte", "lt", "lte")
                if getattr(condition.range, name) is not None
            }
            out.range.CopyFrom(pb.Range(**bounds))
    return message
