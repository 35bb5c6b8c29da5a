"""Metadata filters: validation, compilation to bound SQL, and results on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, create_engine, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from indexer.errors import InvalidFilter
from indexer.filters import compile_filter
from indexer.records import Condition, MetadataFilter, Range
from indexer.store import Store
from tests.conftest_db import encoded, make_collection

INJECTION = "x' OR '1'='1"

ROWS: dict[str, dict[str, Any]] = {
    "en-3": {"lang": "en", "year": 3, "draft": False, "a.b": "dotted"},
    "fr-5.5": {"lang": "fr", "year": 5.5, "draft": True},
    "str-year": {"lang": "de", "year": "3", "draft": "true"},
    "bool-year": {"lang": "en", "year": True, "draft": 0},
    "no-fields": {},
    "injection": {"lang": INJECTION},
}

CASES: list[tuple[list[Condition], set[str]]] = [
    ([Condition("lang", equals="en")], {"en-3", "bool-year"}),
    ([Condition("year", equals=3)], {"en-3"}),  # the string "3" and true are not the number 3
    ([Condition("year", equals=3.0)], {"en-3"}),  # numbers compare numerically
    ([Condition("year", equals="3")], {"str-year"}),
    ([Condition("draft", equals=True)], {"fr-5.5"}),  # not the string "true"
    ([Condition("draft", equals=False)], {"en-3"}),  # not the number 0
    ([Condition("year", one_of=(3, "3"))], {"en-3", "str-year"}),
    ([Condition("lang", one_of=("fr", "de"))], {"fr-5.5", "str-year"}),
    ([Condition("year", range=Range(gt=3))], {"fr-5.5"}),
    ([Condition("year", range=Range(gte=3, lte=5.5))], {"en-3", "fr-5.5"}),
    ([Condition("year", range=Range(lt=10))], {"en-3", "fr-5.5"}),  # strings and bools excluded
    ([Condition("lang", equals="en"), Condition("year", range=Range(gte=1))], {"en-3"}),
    ([Condition("a.b", equals="dotted")], {"en-3"}),  # a top-level key with a dot in it
    ([Condition("missing", equals="x")], set()),
    ([Condition("lang", equals=INJECTION)], {"injection"}),  # matched literally, nothing more
    ([Condition("lang", equals="x' OR '1'='1' --")], set()),
    ([Condition("lang", one_of=(INJECTION + "'",))], set()),
    ([], set(ROWS)),
]


@pytest.mark.parametrize(
    ("condition", "field"),
    [
        (Condition("lang"), "lang"),  # no operator
        (Condition("lang", equals="en", one_of=("en",)), "lang"),  # two operators
        (Condition("lang", one_of=()), "lang"),
        (Condition("year", range=Range()), "year"),
        (Condition("year", range=Range(gt="3")), "year"),  # type: ignore[arg-type]
        (Condition("year", range=Range(gt=True)), "year"),
        (Condition("year", equals=float("nan")), "year"),
        (Condition("year", equals=[1]), "year"),  # type: ignore[arg-type]
        (Condition("la'ng", equals="en"), "la'ng"),
        (Condition("lang) OR 1=1 --", equals="en"), "lang) OR 1=1 --"),
        (Condition("", equals="en"), ""),
        (Condition("lang\n", equals="en"), "lang\n"),  # ``$`` alone would let a final newline in
        (Condition("x" * 129, equals="en"), "x" * 129),
    ],
)
def test_malformed_conditions_name_the_field(condition: Condition, field: str) -> None:
    table = _table()
    with pytest.raises(InvalidFilter) as raised:
        compile_filter(MetadataFilter((condition,)), table.c.metadata)
    assert raised.value.field == field


@pytest.mark.parametrize(
    ("dialect", "path"),
    [(sqlite.dialect(), "'$.\"lang\"'"), (postgresql.dialect(), "-> 'lang'")],
    ids=["sqlite", "postgresql"],
)
def test_values_are_bound_and_validated_field_names_literal(dialect: Any, path: str) -> None:
    """A literal path is what lets the database match the query to an expression index."""
    expression = compile_filter(
        MetadataFilter((Condition("lang", equals=INJECTION), Condition("year", range=Range(gt=2)))),
        _table().c.metadata,
    )
    compiled = expression.compile(dialect=dialect)
    assert INJECTION not in str(compiled) and path in str(compiled)
    assert INJECTION in compiled.params.values() and 2.0 in compiled.params.values()


def _table() -> Table:
    return Table(
        "docs",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("name", String),
        Column("metadata", JSON),
    )


@pytest.fixture(scope="module")
def sqlite_rows() -> Iterator[tuple[Engine, Table]]:
    engine = create_engine("sqlite://")
    table = _table()
    table.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(table), [{"name": name, "metadata": meta} for name, meta in ROWS.items()])
    yield engine, table
    engine.dispose()


@pytest.mark.parametrize(("conditions", "expected"), CASES)
def test_filters_on_sqlite(
    sqlite_rows: tuple[Engine, Table], conditions: list[Condition], expected: set[str]
) -> None:
    engine, table = sqlite_rows
    expression = compile_filter(MetadataFilter(tuple(conditions)), table.c.metadata)
    with engine.connect() as connection:
        names = set(connection.execute(select(table.c.name).where(expression)).scalars())
        assert connection.execute(text("SELECT count(*) FROM docs")).scalar_one() == len(ROWS)
    assert names == expected


def test_filters_through_the_store(store: Store) -> None:
    """The same cases against the real documents table, on SQLite and PostgreSQL (jsonb)."""
    info = make_collection(store)
    store.write_documents(info.id, [encoded(name, chunks=1, metadata=meta) for name, meta in ROWS.items()])
    chunk_of = {
        chunk.external_id: chunk_id
        for chunk_id, chunk in store.chunks_by_id(
            [c.chunk_id for c in store.changes_since(info.id, 0)]
        ).items()
    }
    for conditions, expected in CASES:
        ids = store.chunk_ids_matching(info.id, MetadataFilter(tuple(conditions)))
        assert sorted(ids.tolist()) == sorted(chunk_of[name] for name in expected), conditions
    assert store.stats(info.id).documents == len(ROWS)
