"""What a CSV cell means: CSV has no types, so the reader decides, by one rule or by the user's word.

Inference looks at one cell at a time (the reader streams, so it never sees a whole column) and
climbs the ladder DuckDB's sniffer uses: boolean, integer, float, else string.

- ``true`` / ``false`` (any case) are booleans; ``yes``, ``no``, ``1``, ``0`` are not.
- An optional ``-``/``+`` sign and digits make an integer, unless they start with a ``0`` that is
  not the whole number: ``007`` and ``02139`` are codes, and stay strings.
- A decimal point or an exponent makes a float (``3.5``, ``-0.25``, ``1e-3``); ``nan``, ``inf``
  and thousands separators stay strings.
- Everything else, the empty cell included, stays the string it was.

``--csv-types year=int,zip=str,...`` pins a column's type instead; a cell of a pinned column that
does not parse as that type is a rejected record naming the line and the column, and an empty
cell of a pinned non-string column becomes null.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping

from indexer.errors import InvalidArgument

_INTEGER = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"[-+]?(([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)")
_BOOLEANS = {"true": True, "false": False}


class CellType(enum.StrEnum):
    """A type a CSV column can be pinned to."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"


Cell = str | int | float | bool | None


def infer_cell(raw: str) -> Cell:
    """The value of an unpinned cell, by the ladder in the module docstring."""
    text = raw.strip()
    boolean = _BOOLEANS.get(text.lower())
    if boolean is not None:
        return boolean
    if _INTEGER.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        value = float(text)
        if math.isfinite(value):  # 1e999 overflows to inf, which JSON cannot hold
            return value
    return raw


def convert_cell(raw: str, cell_type: CellType) -> Cell:
    """The value of a cell of a column pinned to ``cell_type``; ``ValueError`` when it does not parse."""
    if cell_type is CellType.STR:
        return raw
    text = raw.strip()
    if not text:
        return None
    if cell_type is CellType.BOOL:
        if text.lower() not in _BOOLEANS:
            raise ValueError(f"{raw!r} is not a boolean (true or false)")
        return _BOOLEANS[text.lower()]
    if cell_type is CellType.INT:
        if not re.fullmatch(r"[-+]?[0-9]+", text):
            raise ValueError(f"{raw!r} is not an integer")
        return int(text)
    try:
        value = float(text)
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a number") from exc
    if not math.isfinite(value):
        raise ValueError(f"{raw!r} is not a finite number")
    return value


def parse_csv_types(raw: str | None) -> dict[str, CellType]:
    """``"year=int,draft=bool"`` -> ``{"year": CellType.INT, "draft": CellType.BOOL}``."""
    types: dict[str, CellType] = {}
    for part in (raw or "").split(","):
        if not part.strip():
            continue
        column, sep, name = part.partition("=")
        column, name = column.strip(), name.strip().lower()
        if not sep or not column:
            raise InvalidArgument(
                f"--csv-types {part.strip()!r} must be COLUMN=TYPE (e.g. year=int)", field="csv_types"
            )
        try:
            types[column] = CellType(name)
        except ValueError as exc:
            choices = ", ".join(t.value for t in CellType)
            raise InvalidArgument(
                f"--csv-types {column}={name}: unknown type; choose {choices}", field="csv_types"
            ) from exc
    return types


def check_pinned_columns(types: Mapping[str, CellType], header: list[str], file: str) -> None:
    """A pinned column that the file does not have is a typo: say so before reading a row."""
    missing = sorted(set(types) - set(header))
    if missing:
        raise InvalidArgument(
            f"{file}: --csv-types names column(s) {', '.join(missing)} that the header "
            f"({', '.join(header)}) does not have",
            field="csv_types",
        )
