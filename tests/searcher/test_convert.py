"""Protobuf <-> domain records, and the validation that names the offending field."""

from __future__ import annotations

import math

import pytest
from google.protobuf import struct_pb2

from indexer.errors import InvalidArgument, InvalidDocument, InvalidFilter
from indexer.records import (
    CollectionInfo,
    CollectionSpec,
    Condition,
    MetadataFilter,
    PoolingMode,
    Range,
    StoredDocument,
)
from indexer.spec import complete_spec
from protos.albatross.v1 import albatross_pb2 as pb
from searcher import convert
from searcher.results import Hit, Ranking


def test_metadata_round_trips_with_integers_kept_integral() -> None:
    metadata = {"year": 2020, "score": 0.5, "tags": ["x", 3], "nested": {"ok": True, "none": None}}

    struct = convert.dict_to_struct(metadata)

    assert convert.struct_to_dict(struct) == metadata
    assert isinstance(convert.struct_to_dict(struct)["year"], int)


def test_an_unset_spec_takes_the_server_defaults() -> None:
    spec = convert.spec_from_pb(pb.CollectionSpec())

    assert spec == CollectionSpec(model="")


def test_a_spec_round_trips() -> None:
    spec = CollectionSpec(
        model="/models/x",
        pooling=PoolingMode.MEAN_MAX,
        layers=(-1, -2),
        max_length=128,
        window=100,
        overlap=0,
        normalize=False,
        index_spec="HNSW32",
        vector_dtype="float16",
        whitening=True,
    )

    assert convert.spec_from_pb(convert.spec_to_pb(spec)) == spec


def test_an_unknown_pooling_value_names_the_field() -> None:
    with pytest.raises(InvalidArgument, match="spec.pooling"):
        convert.spec_from_pb(pb.CollectionSpec(pooling=42))


def test_collection_info_becomes_a_collection_message() -> None:
    info = CollectionInfo(
        id=7, name="news", spec=complete_spec(CollectionSpec(model="default"), {}), dimension=64,
        model_revision="abc", tokenizer_hash="def",
    )

    message = convert.collection_to_pb(info)

    assert (message.name, message.dimension, message.model_revision) == ("news", 64, "abc")
    assert message.spec.pooling == pb.POOLING_MEAN
    assert convert.spec_from_pb(message.spec) == info.spec


def test_a_streamed_document_becomes_a_document() -> None:
    message = pb.Document(id="d1", text="hello", title="t")
    message.metadata.update({"lang": "en", "n": 1})

    document = convert.document_from_pb(message, position=0)

    assert (document.external_id, document.text, document.title) == ("d1", "hello", "t")
    assert document.metadata == {"lang": "en", "n": 1}


def test_a_document_without_text_is_rejected_naming_position_id_and_field() -> None:
    with pytest.raises(InvalidDocument) as caught:
        convert.document_from_pb(pb.Document(id="d9", text="  "), position=3)

    assert caught.value.field == "text"
    assert "documents[3]" in str(caught.value) and "d9" in str(caught.value)


def test_a_document_without_id_is_rejected_naming_the_id() -> None:
    with pytest.raises(InvalidDocument) as caught:
        convert.document_from_pb(pb.Document(text="x"), position=0)

    assert caught.value.field == "id"


@pytest.mark.parametrize("k", [0, -1, 1001])
def test_k_out_of_range_names_k(k: int) -> None:
    with pytest.raises(InvalidArgument, match="k must be between 1 and 1000") as caught:
        convert.validate_k(k)

    assert caught.value.field == "k"


def test_an_empty_collection_name_is_invalid() -> None:
    with pytest.raises(InvalidArgument) as caught:
        convert.require_name(" ", "collection")

    assert caught.value.field == "collection"


def test_empty_ids_name_their_position() -> None:
    with pytest.raises(InvalidArgument) as caught:
        convert.require_ids(["a", ""])

    assert caught.value.field == "ids[1]"


def test_an_empty_filter_means_no_filter() -> None:
    assert convert.filter_from_pb(pb.Filter()) is None


def test_every_kind_of_condition_converts() -> None:
    message = pb.Filter(
        conditions=[
            pb.Condition(field="lang", equals=pb.Value(string_value="en")),
            pb.Condition(field="year", equals=pb.Value(number_value=2020)),
            pb.Condition(field="draft", equals=pb.Value(bool_value=False)),
            pb.Condition(
                field="tag",
                one_of=pb.ValueList(values=[pb.Value(string_value="a"), pb.Value(number_value=1.5)]),
            ),
            pb.Condition(field="score", range=pb.Range(gte=0.5, lt=2)),
        ]
    )

    metadata_filter = convert.filter_from_pb(message)

    assert metadata_filter == MetadataFilter(
        (
            Condition(field="lang", equals="en"),
            Condition(field="year", equals=2020),
            Condition(field="draft", equals=False),
            Condition(field="tag", one_of=("a", 1.5)),
            Condition(field="score", range=Range(gte=0.5, lt=2)),
        )
    )
    assert convert.filter_from_pb(convert.filter_to_pb(metadata_filter)) == metadata_filter


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        (pb.Condition(field="", equals=pb.Value(string_value="x")), "filter.conditions[0].field"),
        (pb.Condition(field="a"), "filter.conditions[0]"),
        (pb.Condition(field="a", equals=pb.Value()), "filter.conditions[0].equals"),
        (pb.Condition(field="a", one_of=pb.ValueList()), "filter.conditions[0].one_of"),
        (pb.Condition(field="a", range=pb.Range()), "filter.conditions[0].range"),
        (pb.Condition(field="a", range=pb.Range(gt=1, gte=1)), "filter.conditions[0].range"),
        (pb.Condition(field="a", range=pb.Range(lt=math.inf)), "filter.conditions[0].range.lt"),
        (
            pb.Condition(field="a", equals=pb.Value(number_value=math.nan)),
            "filter.conditions[0].equals",
        ),
    ],
)
def test_a_bad_condition_names_its_field(condition: pb.Condition, field: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        convert.filter_from_pb(pb.Filter(conditions=[condition]))

    assert caught.value.field == field
    assert field in str(caught.value)


def test_hits_and_documents_become_messages() -> None:
    hit = Hit("d1", 0.5, "t", "chunk", 3, 8, {"n": 1})
    document = StoredDocument("d1", "t", "body", {"n": 1}, "hash", 2)

    answer = convert.ranking_to_pb(Ranking([hit], whitening_version=3))
    hit_message = answer.hits[0]
    doc_message = convert.stored_document_to_pb(document)

    assert answer.HasField("whitening_version") and answer.whitening_version == 3
    assert convert.ranking_to_pb(Ranking([])).HasField("whitening_version")  # 0 said, not unknown

    assert (hit_message.id, hit_message.score, hit_message.start, hit_message.end) == ("d1", 0.5, 3, 8)
    assert convert.struct_to_dict(hit_message.metadata) == {"n": 1}
    assert (doc_message.text, doc_message.chunk_count, doc_message.content_hash) == ("body", 2, "hash")
    assert isinstance(doc_message.metadata, struct_pb2.Struct)
