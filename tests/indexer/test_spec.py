"""The collection spec's one declaration, and every form derived from it (SQL, proto, CLI)."""

from __future__ import annotations

import argparse

import pytest

from albatross.options import add_collection_spec_options, spec_from_args
from indexer.errors import InvalidArgument, InvalidCollectionSpec
from indexer.schema import CollectionRow
from indexer.spec import (
    CollectionSpec,
    PoolingMode,
    VectorDtype,
    check_dimension,
    column_name,
    complete_spec,
    from_stored,
    spec_fields,
    to_stored,
)
from protos.albatross.v1 import albatross_pb2 as pb
from searcher import convert

NON_DEFAULT = CollectionSpec(
    model="/models/x",
    pooling=PoolingMode.MEAN_MAX,
    layers=(0, -1),
    max_length=128,
    window=100,
    overlap=10,
    normalize=False,
    index_spec="HNSW32",
    vector_dtype=VectorDtype.FLOAT16,
    whitening=True,
    lexical_analyzer="simple",
    fusion="convex",
    rrf_k=10,
    dense_weight=0.25,
    classifier="/models/sentiment",
    label_field="sentiment",
    score_field="sentiment_p",
)


def parse(*flags: str) -> CollectionSpec:
    parser = argparse.ArgumentParser()
    add_collection_spec_options(parser)
    return spec_from_args(parser.parse_args(list(flags)))


def test_every_declared_field_differs_in_the_non_default_example() -> None:
    """The round trips below prove something only if every field leaves its default."""
    defaults = complete_spec(CollectionSpec(model="default"), {})
    assert all(getattr(NON_DEFAULT, f.name) != getattr(defaults, f.name) for f in spec_fields())


def test_every_field_has_a_sql_column_of_its_own() -> None:
    columns = set(CollectionRow.__table__.columns.keys())
    assert {column_name(f) for f in spec_fields()} <= columns
    assert from_stored(to_stored(NON_DEFAULT)) == NON_DEFAULT


def test_every_field_has_a_proto_field_whose_unset_value_means_the_default() -> None:
    """The rule ``spec_from_pb`` relies on: a zero value means "unset". An empty string or list
    and a zero enum are never meaningful values; a plain bool or number is, so one that is not
    ``optional`` in the proto must default to its zero value (``false``, 0)."""
    descriptor = pb.CollectionSpec.DESCRIPTOR
    for spec_field in spec_fields():
        proto_field = descriptor.fields_by_name[spec_field.name]
        plain = not (proto_field.has_presence or proto_field.is_repeated or proto_field.enum_type)
        value = getattr(pb.CollectionSpec(), spec_field.name)
        if plain and not isinstance(value, str):
            assert spec_field.default == type(value)(), spec_field.name
    assert convert.spec_from_pb(convert.spec_to_pb(NON_DEFAULT)) == NON_DEFAULT


def test_fields_left_unset_stay_unset_on_the_wire() -> None:
    """A client's partial spec reaches the server partial: the model's defaults fill it there."""
    partial = CollectionSpec(model="m", window=100)

    assert convert.spec_from_pb(convert.spec_to_pb(partial)) == partial


def test_an_unset_field_is_never_stored() -> None:
    with pytest.raises(InvalidCollectionSpec, match="pooling is unset"):
        to_stored(CollectionSpec(model="m"))


def test_every_field_has_a_cli_option() -> None:
    spec = parse(
        "--model", "/models/x", "--pooling", "mean_max", "--layers", "0,-1", "--max-length", "128",
        "--window", "100", "--overlap", "10", "--no-normalize", "--index-spec", "HNSW32",
        "--vector-dtype", "float16", "--whitening", "--lexical-analyzer", "simple", "--fusion", "convex",
        "--rrf-k", "10", "--dense-weight", "0.25", "--classifier", "/models/sentiment",
        "--label-field", "sentiment", "--score-field", "sentiment_p",
    )

    assert spec == NON_DEFAULT


def test_options_left_out_keep_the_declared_defaults() -> None:
    assert parse() == CollectionSpec(model="default")


def test_bad_layers_name_the_flag() -> None:
    with pytest.raises(InvalidArgument, match="--layers"):
        parse("--layers", "last")


def test_an_unknown_enum_value_is_refused_when_the_spec_is_built() -> None:
    with pytest.raises(InvalidCollectionSpec, match="vector_dtype must be one of float32, float16") as caught:
        CollectionSpec(model="m", vector_dtype="int8")  # type: ignore[arg-type]
    assert caught.value.field == "vector_dtype"


def test_strings_and_lists_become_enum_members_and_tuples() -> None:
    spec = CollectionSpec(model="m", pooling="max", layers=[0, -1], vector_dtype="float16")  # type: ignore[arg-type]

    assert spec.pooling is PoolingMode.MAX and spec.vector_dtype is VectorDtype.FLOAT16
    assert spec.layers == (0, -1)


@pytest.mark.parametrize("dimension", [0, -3, 2.5, True, "8"])
def test_a_dimension_must_be_a_positive_integer(dimension: object) -> None:
    with pytest.raises(InvalidCollectionSpec, match="dimension must be a positive integer"):
        check_dimension(dimension)
