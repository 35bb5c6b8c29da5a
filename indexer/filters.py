"""Compile a ``MetadataFilter`` into a SQLAlchemy boolean expression over the documents' JSON column.

Pure: no database here. The expression works on SQLite (``json_type`` / ``json_extract``) and
PostgreSQL (``jsonb_typeof`` / ``->>``). Every comparison is guarded by the JSON type of the field,
so numbers compare numerically, strings as strings and booleans as booleans, and a field holding
another type simply does not match (PostgreSQL would otherwise raise on ``CAST('abc' AS FLOAT)``).
Field names are validated and every value, field name included, is a bound parameter.
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Literal, cast

from sqlalchemy import Boolean, Float, String, and_, bindparam, case, or_, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.type_api import TypeEngine

from indexer.errors import InvalidFilter
from indexer.records import Condition, MetadataFilter, Range, Scalar

FIELD_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

Kind = Literal["string", "number", "boolean"]
_VALUE_TYPES: dict[Kind, TypeEngine[Any]] = {
    "string": String(),
    "number": Float(),
    "boolean": Boolean(),
}


class _JsonIs(ColumnElement[bool]):
    """True where top-level ``field`` of the JSON ``column`` holds a value of JSON type ``kind``."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], field: str, kind: Kind) -> None:
        self.column = column
        self.field = field
        self.kind = kind


class _JsonValue(ColumnElement[Any]):
    """Top-level ``field`` of the JSON ``column`` as an SQL value of ``kind``; only meaningful where
    ``_JsonIs`` holds (callers wrap it in a CASE)."""

    inherit_cache = False

    def __init__(self, column: ColumnElement[Any], field: str, kind: Kind) -> None:
        self.column = column
        self.field = field
        self.kind = kind
        self.type = _VALUE_TYPES[kind]


def _sqlite_path(compiler: Any, field: str, **kw: Any) -> str:
    # The field is validated (no quotes) and bound anyway; quoting keeps dots literal.
    return compiler.process(bindparam(None, f'$."{field}"', type_=String()), **kw)


def _pg_key(compiler: Any, field: str, **kw: Any) -> str:
    return compiler.process(bindparam(None, field, type_=String()), **kw)


_SQLITE_KINDS = {"string": "('text')", "number": "('integer', 'real')", "boolean": "('true', 'false')"}


@compiles(_JsonIs, "sqlite")
def _json_is_sqlite(element: _JsonIs, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    path = _sqlite_path(compiler, element.field, **kw)
    return f"(json_type({column}, {path}) IN {_SQLITE_KINDS[element.kind]})"


@compiles(_JsonIs, "postgresql")
def _json_is_postgresql(element: _JsonIs, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    key = _pg_key(compiler, element.field, **kw)
    return f"(jsonb_typeof({column} -> {key}) = '{element.kind}')"


@compiles(_JsonValue, "sqlite")
def _json_value_sqlite(element: _JsonValue, compiler: Any, **kw: Any) -> str:
    # json_extract returns SQLite-native values: numbers as numbers, true/false as 1/0.
    column = compiler.process(element.column, **kw)
    return f"json_extract({column}, {_sqlite_path(compiler, element.field, **kw)})"


_PG_CASTS = {"string": "", "number": "DOUBLE PRECISION", "boolean": "BOOLEAN"}


@compiles(_JsonValue, "postgresql")
def _json_value_postgresql(element: _JsonValue, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    text = f"({column} ->> {_pg_key(compiler, element.field, **kw)})"
    cast = _PG_CASTS[element.kind]
    return f"CAST({text} AS {cast})" if cast else text


def _kind_of(value: Any, field: str) -> Kind:
    """JSON kind of a filter value; bool is checked first because it is an int in Python."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidFilter(f"filter on {field!r}: {value!r} is not a finite number", field=field)
        return "number"
    if isinstance(value, str):
        return "string"
    raise InvalidFilter(
        f"filter on {field!r}: {type(value).__name__} values are not supported "
        "(use a string, number or boolean)",
        field=field,
    )


def _typed(column: ColumnElement[Any], field: str, kind: Kind) -> ColumnElement[Any]:
    """The field's value where it has JSON type ``kind``, NULL elsewhere (so nothing matches)."""
    return case((_JsonIs(column, field, kind), _JsonValue(column, field, kind)))


def _one_of(column: ColumnElement[Any], field: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    by_kind: dict[Kind, list[Scalar]] = {}
    for value in values:
        by_kind.setdefault(_kind_of(value, field), []).append(value)
    return or_(*(_typed(column, field, kind).in_(group) for kind, group in by_kind.items()))


def _bound(value: Any, field: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or _kind_of(value, field) != "number":
        raise InvalidFilter(f"filter on {field!r}: range bound {name}={value!r} is not a number", field=field)
    return float(value)


_RANGE_OPERATORS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _range(column: ColumnElement[Any], field: str, bounds: Range) -> ColumnElement[bool]:
    value = _typed(column, field, "number")
    parts = []
    for name, compare in _RANGE_OPERATORS.items():
        bound = _bound(getattr(bounds, name), field, name)
        if bound is not None:
            parts.append(compare(value, bound))
    if not parts:
        raise InvalidFilter(f"filter on {field!r}: range has no bound", field=field)
    return and_(*parts)


def compile_condition(condition: Condition, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """One condition as a boolean expression; ``InvalidFilter`` (naming the field) if malformed."""
    field = condition.field
    if not isinstance(field, str) or not FIELD_PATTERN.match(field):
        raise InvalidFilter(f"filter field {field!r} must match {FIELD_PATTERN.pattern}", field=str(field))
    set_ops = [op for op in ("equals", "one_of", "range") if getattr(condition, op) is not None]
    if len(set_ops) != 1:
        raise InvalidFilter(
            f"filter on {field!r} must set exactly one of equals, one_of, range (got {set_ops or 'none'})",
            field=field,
        )
    if condition.equals is not None:
        kind = _kind_of(condition.equals, field)
        return _typed(column, field, kind) == condition.equals
    if condition.one_of is not None:
        if len(condition.one_of) == 0:
            raise InvalidFilter(f"filter on {field!r}: one_of is empty", field=field)
        return _one_of(column, field, tuple(condition.one_of))
    return _range(column, field, cast(Range, condition.range))


def compile_filter(metadata_filter: MetadataFilter, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """The conjunction of all conditions over ``column`` (a JSON column); TRUE when there are none."""
    if not metadata_filter.conditions:
        return true()
    return and_(*(compile_condition(c, column) for c in metadata_filter.conditions))
