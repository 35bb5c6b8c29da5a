"""The CSV typing rule, cell by cell (the ladder of ``indexer.csv_cells``)."""

from __future__ import annotations

import pytest

from indexer.csv_cells import CellType, convert_cell, infer_cell


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("2009", 2009),
        ("-3", -3),
        ("+4", 4),
        ("0", 0),
        (" 12 ", 12),
        ("3.5", 3.5),
        ("-.25", -0.25),
        ("1e-3", 0.001),
        ("2.", 2.0),
        ("true", True),
        ("FALSE", False),
        ("007", "007"),
        ("02139", "02139"),
        ("1,000", "1,000"),
        ("nan", "nan"),
        ("inf", "inf"),
        ("1e999", "1e999"),
        ("yes", "yes"),
        ("", ""),
        ("2009-01-02", "2009-01-02"),
    ],
)
def test_inference_climbs_boolean_integer_float_then_string(raw: str, value: object) -> None:
    inferred = infer_cell(raw)
    assert inferred == value and type(inferred) is type(value)


@pytest.mark.parametrize(
    ("raw", "cell_type", "value"),
    [
        ("007", CellType.INT, 7),
        ("2009", CellType.STR, "2009"),
        ("3", CellType.FLOAT, 3.0),
        ("True", CellType.BOOL, True),
        ("", CellType.INT, None),
        ("", CellType.STR, ""),
    ],
)
def test_a_pinned_type_overrides_inference(raw: str, cell_type: CellType, value: object) -> None:
    converted = convert_cell(raw, cell_type)
    assert converted == value and type(converted) is type(value)


@pytest.mark.parametrize(
    ("raw", "cell_type"), [("2.5", CellType.INT), ("x", CellType.FLOAT), ("inf", CellType.FLOAT), ("1", CellType.BOOL)]
)
def test_a_pinned_cell_that_does_not_parse_is_an_error(raw: str, cell_type: CellType) -> None:
    with pytest.raises(ValueError, match=repr(raw)):
        convert_cell(raw, cell_type)
