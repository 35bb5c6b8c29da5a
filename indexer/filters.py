"""Compile a ``MetadataFilter`` into a SQLAlchemy boolean expression over the documents' JSON column.

Pure: no database here. The expression works on SQLite (``json_type`` / ``json_extract``) and
PostgreSQL (``jsonb_typeof`` / ``->>``). Every comparison is guarded by the JSON type of the field,
so numbers compare numerically, strings as strings and booleans as booleans, and a field holding
another type simply does not match (PostgreSQL would otherwise raise on ``CAST('abc' AS FLOAT)``).

Values are bound parameters. Field names are validated against ``FIELD_PATTERN`` (no quotes, no
spaces) and then written into the SQL as literal JSON paths: a database uses an expression index
only for a query that spells the same expression, and a path bound as a parameter never does.
``indexed_expression`` is that expression, so the indexes ``indexer.filter_indexes`` creates are
the ones these queries use.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any, Literal, cast

from sqlalchemy import Boolean, Float, String, and_, or_, true
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
    ``_JsonIs`` holds (callers AND the two). Never raises, whatever the field holds."""

    inherit_cache = False

    def __init__(self, column: ColumnElement[Any], field: str, kind: Kind) -> None:
        self.column = column
        self.field = field
        self.kind = kind
        self.type = _VALUE_TYPES[kind]


def _checked_field(field: object) -> str:
    """``field`` if it may be written into SQL as a literal (the pattern admits no quote)."""
    if not isinstance(field, str) or not FIELD_PATTERN.fullmatch(field):
        raise InvalidFilter(f"filter field {field!r} must match {FIELD_PATTERN.pattern}", field=str(field))
    return field


def _sqlite_path(field: str) -> str:
    # Quoting the key keeps a dot in it literal: "a.b" is one top-level key, not a nested path.
    return f"'$.\"{_checked_field(field)}\"'"


def _pg_key(field: str) -> str:
    return f"'{_checked_field(field)}'"


_SQLITE_KINDS = {"string": "('text')", "number": "('integer', 'real')", "boolean": "('true', 'false')"}


@compiles(_JsonIs, "sqlite")
def _json_is_sqlite(element: _JsonIs, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"(json_type({column}, {_sqlite_path(element.field)}) IN {_SQLITE_KINDS[element.kind]})"


@compiles(_JsonIs, "postgresql")
def _json_is_postgresql(element: _JsonIs, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"(jsonb_typeof({column} -> {_pg_key(element.field)}) = '{element.kind}')"


@compiles(_JsonValue, "sqlite")
def _json_value_sqlite(element: _JsonValue, compiler: Any, **kw: Any) -> str:
    # json_extract returns SQLite-native values: numbers as numbers, true/false as 1/0. One
    # expression for every kind, so one index per field serves them all (the guard tells 1 from true).
    column = compiler.process(element.column, **kw)
    return f"json_extract({column}, {_sqlite_path(element.field)})"


_PG_CASTS = {"string": "", "number": "DOUBLE PRECISION", "boolean": "BOOLEAN"}


@compiles(_JsonValue, "postgresql")
def _json_value_postgresql(element: _JsonValue, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    key = _pg_key(element.field)
    text = f"({column} ->> {key})"
    kind_cast = _PG_CASTS[element.kind]
    if not kind_cast:
        return text
    # PostgreSQL may evaluate either side of an AND first, so the cast carries its own guard.
    return (
        f"(CASE WHEN jsonb_typeof({column} -> {key}) = '{element.kind}' THEN CAST({text} AS {kind_cast}) END)"
    )


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


def _compared(
    column: ColumnElement[Any], field: str, kind: Kind, compare: Callable[[ColumnElement[Any]], Any]
) -> ColumnElement[bool]:
    """``compare(value)`` where the field has JSON type ``kind``; false elsewhere (nothing matches).

    The comparison is on the bare ``_JsonValue`` (not under a CASE) so that it is the expression
    an index holds; the type guard beside it tells the number 1 from true on SQLite."""
    return and_(_JsonIs(column, field, kind), compare(_JsonValue(column, field, kind)))


def _bound_value(value: Scalar, kind: Kind) -> Scalar:
    # Numbers bind as floats: the indexed PostgreSQL expression is DOUBLE PRECISION, and SQLite
    # compares integer 3 and real 3.0 as equal anyway.
    return float(value) if kind == "number" else value


def _one_of(column: ColumnElement[Any], field: str, values: tuple[Scalar, ...]) -> ColumnElement[bool]:
    by_kind: dict[Kind, list[Scalar]] = {}
    for value in values:
        kind = _kind_of(value, field)
        by_kind.setdefault(kind, []).append(_bound_value(value, kind))
    return or_(
        *(
            _compared(column, field, kind, lambda value, group=group: value.in_(group))
            for kind, group in by_kind.items()
        )
    )


def _bound(value: Any, field: str, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or _kind_of(value, field) != "number":
        raise InvalidFilter(f"filter on {field!r}: range bound {name}={value!r} is not a number", field=field)
    return float(value)


_RANGE_OPERATORS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


def _range(column: ColumnElement[Any], field: str, bounds: Range) -> ColumnElement[bool]:
    limits = []
    for name, compare in _RANGE_OPERATORS.items():
        bound = _bound(getattr(bounds, name), field, name)
        if bound is not None:
            limits.append((compare, bound))
    if not limits:
        raise InvalidFilter(f"filter on {field!r}: range has no bound", field=field)
    return _compared(column, field, "number", lambda value: and_(*(op(value, b) for op, b in limits)))


def _kinds(condition: Condition) -> tuple[Kind, ...]:
    """The JSON kinds ``condition`` compares its field as; ``InvalidFilter`` (naming the field)
    if it is malformed."""
    field = _checked_field(condition.field)
    set_ops = [op for op in ("equals", "one_of", "range") if getattr(condition, op) is not None]
    if len(set_ops) != 1:
        raise InvalidFilter(
            f"filter on {field!r} must set exactly one of equals, one_of, range (got {set_ops or 'none'})",
            field=field,
        )
    if condition.equals is not None:
        return (_kind_of(condition.equals, field),)
    if condition.one_of is not None:
        if len(condition.one_of) == 0:
            raise InvalidFilter(f"filter on {field!r}: one_of is empty", field=field)
        return tuple(dict.fromkeys(_kind_of(value, field) for value in condition.one_of))
    return ("number",)


def compile_condition(condition: Condition, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """One condition as a boolean expression; ``InvalidFilter`` (naming the field) if malformed."""
    (kind, *_) = _kinds(condition)
    field = condition.field
    if condition.equals is not None:
        value = _bound_value(condition.equals, kind)
        return _compared(column, field, kind, lambda json_value: json_value == value)
    if condition.one_of is not None:
        return _one_of(column, field, tuple(condition.one_of))
    return _range(column, field, cast(Range, condition.range))


def compile_filter(metadata_filter: MetadataFilter, column: ColumnElement[Any]) -> ColumnElement[bool]:
    """The conjunction of all conditions over ``column`` (a JSON column); TRUE when there are none."""
    if not metadata_filter.conditions:
        return true()
    return and_(*(compile_condition(c, column) for c in metadata_filter.conditions))


def indexed_expressions(
    metadata_filter: MetadataFilter, column: ColumnElement[Any]
) -> list[ColumnElement[Any]]:
    """The value expressions ``compile_filter`` compares, one per (field, kind): an index on each
    (after the collection id) serves the filter. ``InvalidFilter`` as ``compile_filter``."""
    wanted: dict[tuple[str, Kind], None] = {}
    for condition in metadata_filter.conditions:
        for kind in _kinds(condition):
            wanted[(condition.field, kind)] = None
    return [_JsonValue(column, field, kind) for field, kind in wanted]
