from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Pooling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    POOLING_UNSPECIFIED: _ClassVar[Pooling]
    POOLING_MEAN: _ClassVar[Pooling]
    POOLING_MAX: _ClassVar[Pooling]
    POOLING_CLS: _ClassVar[Pooling]
    POOLING_MEAN_MAX: _ClassVar[Pooling]

class FusionMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FUSION_METHOD_UNSPECIFIED: _ClassVar[FusionMethod]
    FUSION_METHOD_RRF: _ClassVar[FusionMethod]
    FUSION_METHOD_CONVEX: _ClassVar[FusionMethod]
    FUSION_METHOD_ADAPTIVE: _ClassVar[FusionMethod]

class DocumentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_STATUS_UNSPECIFIED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_WRITTEN: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_UNCHANGED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_REJECTED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_METADATA_UPDATED: _ClassVar[DocumentStatus]

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_DENSE: _ClassVar[SearchMode]
    SEARCH_MODE_LEXICAL: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]
POOLING_UNSPECIFIED: Pooling
POOLING_MEAN: Pooling
POOLING_MAX: Pooling
POOLING_CLS: Pooling
POOLING_MEAN_MAX: Pooling
FUSION_METHOD_UNSPECIFIED: FusionMethod
FUSION_METHOD_RRF: FusionMethod
FUSION_METHOD_CONVEX: FusionMethod
FUSION_METHOD_ADAPTIVE: FusionMethod
DOCUMENT_STATUS_UNSPECIFIED: DocumentStatus
DOCUMENT_STATUS_WRITTEN: DocumentStatus
DOCUMENT_STATUS_UNCHANGED: DocumentStatus
DOCUMENT_STATUS_REJECTED: DocumentStatus
DOCUMENT_STATUS_METADATA_UPDATED: DocumentStatus
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_DENSE: SearchMode
SEARCH_MODE_LEXICAL: SearchMode
SEARCH_MODE_HYBRID: SearchMode

class Fusion(_message.Message):
    __slots__ = ("method", "rrf_k", "dense_weight")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    DENSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    method: FusionMethod
    rrf_k: int
    dense_weight: float
    def __init__(self, method: _Optional[_Union[FusionMethod, str]] = ..., rrf_k: _Optional[int] = ..., dense_weight: _Optional[float] = ...) -> None: ...

class CollectionSpec(_message.Message):
    __slots__ = ("model", "pooling", "layers", "max_length", "window", "overlap", "normalize", "index_spec", "vector_dtype", "whitening", "lexical_analyzer", "fusion", "rrf_k", "dense_weight", "classifier", "label_field", "score_field")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_FIELD_NUMBER: _ClassVar[int]
    INDEX_SPEC_FIELD_NUMBER: _ClassVar[int]
    VECTOR_DTYPE_FIELD_NUMBER: _ClassVar[int]
    WHITENING_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_ANALYZER_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    RRF_K_FIELD_NUMBER: _ClassVar[int]
    DENSE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_FIELD_NUMBER: _ClassVar[int]
    model: str
    pooling: Pooling
    layers: _containers.RepeatedScalarFieldContainer[int]
    max_length: int
    window: int
    overlap: int
    normalize: bool
    index_spec: str
    vector_dtype: str
    whitening: bool
    lexical_analyzer: str
    fusion: str
    rrf_k: int
    dense_weight: float
    classifier: str
    label_field: str
    score_field: str
    def __init__(self, model: _Optional[str] = ..., pooling: _Optional[_Union[Pooling, str]] = ..., layers: _Optional[_Iterable[int]] = ..., max_length: _Optional[int] = ..., window: _Optional[int] = ..., overlap: _Optional[int] = ..., normalize: _Optional[bool] = ..., index_spec: _Optional[str] = ..., vector_dtype: _Optional[str] = ..., whitening: _Optional[bool] = ..., lexical_analyzer: _Optional[str] = ..., fusion: _Optional[str] = ..., rrf_k: _Optional[int] = ..., dense_weight: _Optional[float] = ..., classifier: _Optional[str] = ..., label_field: _Optional[str] = ..., score_field: _Optional[str] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "spec", "dimension", "model_revision", "tokenizer_hash")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_REVISION_FIELD_NUMBER: _ClassVar[int]
    TOKENIZER_HASH_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: CollectionSpec
    dimension: int
    model_revision: str
    tokenizer_hash: str
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[CollectionSpec, _Mapping]] = ..., dimension: _Optional[int] = ..., model_revision: _Optional[str] = ..., tokenizer_hash: _Optional[str] = ...) -> None: ...

class CollectionStats(_message.Message):
    __slots__ = ("documents", "chunks", "last_sequence", "index_sequence", "index_vectors", "lexical_sequence", "lexical_chunks", "mostly_unknown_documents")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INDEX_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INDEX_VECTORS_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    MOSTLY_UNKNOWN_DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    documents: int
    chunks: int
    last_sequence: int
    index_sequence: int
    index_vectors: int
    lexical_sequence: int
    lexical_chunks: int
    mostly_unknown_documents: int
    def __init__(self, documents: _Optional[int] = ..., chunks: _Optional[int] = ..., last_sequence: _Optional[int] = ..., index_sequence: _Optional[int] = ..., index_vectors: _Optional[int] = ..., lexical_sequence: _Optional[int] = ..., lexical_chunks: _Optional[int] = ..., mostly_unknown_documents: _Optional[int] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "spec", "dimension")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    spec: CollectionSpec
    dimension: int
    def __init__(self, name: _Optional[str] = ..., spec: _Optional[_Union[CollectionSpec, _Mapping]] = ..., dimension: _Optional[int] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetCollectionResponse(_message.Message):
    __slots__ = ("collection", "stats")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    collection: Collection
    stats: CollectionStats
    def __init__(self, collection: _Optional[_Union[Collection, _Mapping]] = ..., stats: _Optional[_Union[CollectionStats, _Mapping]] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections",)
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ...) -> None: ...

class DropCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DropCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "text", "title", "metadata", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    text: str
    title: str
    metadata: _struct_pb2.Struct
    vector: Vector
    def __init__(self, id: _Optional[str] = ..., text: _Optional[str] = ..., title: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("collection", "documents")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    def __init__(self, collection: _Optional[str] = ..., documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ...) -> None: ...

class DocumentResult(_message.Message):
    __slots__ = ("id", "status", "error", "sequence", "warning")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    id: str
    status: DocumentStatus
    error: str
    sequence: int
    warning: str
    def __init__(self, id: _Optional[str] = ..., status: _Optional[_Union[DocumentStatus, str]] = ..., error: _Optional[str] = ..., sequence: _Optional[int] = ..., warning: _Optional[str] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[DocumentResult]
    def __init__(self, results: _Optional[_Iterable[_Union[DocumentResult, _Mapping]]] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted", "missing", "last_sequence")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    deleted: _containers.RepeatedScalarFieldContainer[str]
    missing: _containers.RepeatedScalarFieldContainer[str]
    last_sequence: int
    def __init__(self, deleted: _Optional[_Iterable[str]] = ..., missing: _Optional[_Iterable[str]] = ..., last_sequence: _Optional[int] = ...) -> None: ...

class Value(_message.Message):
    __slots__ = ("string_value", "number_value", "bool_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    NUMBER_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    number_value: float
    bool_value: bool
    def __init__(self, string_value: _Optional[str] = ..., number_value: _Optional[float] = ..., bool_value: _Optional[bool] = ...) -> None: ...

class ValueList(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[Value]
    def __init__(self, values: _Optional[_Iterable[_Union[Value, _Mapping]]] = ...) -> None: ...

class Range(_message.Message):
    __slots__ = ("gt", "gte", "lt", "lte")
    GT_FIELD_NUMBER: _ClassVar[int]
    GTE_FIELD_NUMBER: _ClassVar[int]
    LT_FIELD_NUMBER: _ClassVar[int]
    LTE_FIELD_NUMBER: _ClassVar[int]
    gt: float
    gte: float
    lt: float
    lte: float
    def __init__(self, gt: _Optional[float] = ..., gte: _Optional[float] = ..., lt: _Optional[float] = ..., lte: _Optional[float] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("field", "equals", "one_of", "range")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    EQUALS_FIELD_NUMBER: _ClassVar[int]
    ONE_OF_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    field: str
    equals: Value
    one_of: ValueList
    range: Range
    def __init__(self, field: _Optional[str] = ..., equals: _Optional[_Union[Value, _Mapping]] = ..., one_of: _Optional[_Union[ValueList, _Mapping]] = ..., range: _Optional[_Union[Range, _Mapping]] = ...) -> None: ...

class Filter(_message.Message):
    __slots__ = ("conditions",)
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    def __init__(self, conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("collection", "query", "k", "filter", "vector", "allow_partial", "mode", "fusion")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    query: str
    k: int
    filter: Filter
    vector: Vector
    allow_partial: bool
    mode: SearchMode
    fusion: Fusion
    def __init__(self, collection: _Optional[str] = ..., query: _Optional[str] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., allow_partial: _Optional[bool] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., fusion: _Optional[_Union[Fusion, _Mapping]] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("collection", "queries")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    collection: str
    queries: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., queries: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("vectors", "warnings")
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    warnings: _containers.RepeatedCompositeFieldContainer[QueryWarnings]
    def __init__(self, vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[QueryWarnings, _Mapping]]] = ...) -> None: ...

class QueryWarnings(_message.Message):
    __slots__ = ("warnings",)
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("id", "score", "title", "text", "start", "end", "metadata", "legs")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LEGS_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    title: str
    text: str
    start: int
    end: int
    metadata: _struct_pb2.Struct
    legs: _containers.RepeatedCompositeFieldContainer[LegScore]
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., start: _Optional[int] = ..., end: _Optional[int] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., legs: _Optional[_Iterable[_Union[LegScore, _Mapping]]] = ...) -> None: ...

class LegScore(_message.Message):
    __slots__ = ("leg", "score", "rank")
    LEG_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    leg: str
    score: float
    rank: int
    def __init__(self, leg: _Optional[str] = ..., score: _Optional[float] = ..., rank: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "partial", "missing_shards", "warnings", "whitening_version")
    HITS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    MISSING_SHARDS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    WHITENING_VERSION_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    partial: bool
    missing_shards: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    whitening_version: int
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., partial: _Optional[bool] = ..., missing_shards: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., whitening_version: _Optional[int] = ...) -> None: ...

class SearchBatchRequest(_message.Message):
    __slots__ = ("collection", "queries", "k", "filter", "vectors", "allow_partial", "mode", "fusion")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    QUERIES_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PARTIAL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FUSION_FIELD_NUMBER: _ClassVar[int]
    collection: str
    queries: _containers.RepeatedScalarFieldContainer[str]
    k: int
    filter: Filter
    vectors: _containers.RepeatedCompositeFieldContainer[Vector]
    allow_partial: bool
    mode: SearchMode
    fusion: Fusion
    def __init__(self, collection: _Optional[str] = ..., queries: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[Filter, _Mapping]] = ..., vectors: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., allow_partial: _Optional[bool] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., fusion: _Optional[_Union[Fusion, _Mapping]] = ...) -> None: ...

class SearchBatchResponse(_message.Message):
    __slots__ = ("results", "partial", "missing_shards")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    MISSING_SHARDS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    partial: bool
    missing_shards: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ..., partial: _Optional[bool] = ..., missing_shards: _Optional[_Iterable[str]] = ...) -> None: ...

class GetDocumentsRequest(_message.Message):
    __slots__ = ("collection", "ids")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    collection: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, collection: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class StoredDocument(_message.Message):
    __slots__ = ("id", "title", "text", "metadata", "content_hash", "chunk_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    text: str
    metadata: _struct_pb2.Struct
    content_hash: str
    chunk_count: int
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., text: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., content_hash: _Optional[str] = ..., chunk_count: _Optional[int] = ...) -> None: ...

class GetDocumentsResponse(_message.Message):
    __slots__ = ("documents", "missing")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[StoredDocument]
    missing: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, documents: _Optional[_Iterable[_Union[StoredDocument, _Mapping]]] = ..., missing: _Optional[_Iterable[str]] = ...) -> None: ...
