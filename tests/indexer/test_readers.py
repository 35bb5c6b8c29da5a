"""Readers turn files into documents; a bad record is reported with file and line, never dropped."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer.csv_cells import parse_csv_types
from indexer.errors import InvalidArgument
from indexer.readers import ReadOptions, Rejection, count_records, read_path
from indexer.records import Document


def _write_jsonl(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_beir_corpus_lines_become_documents(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "corpus.jsonl",
        [
            json.dumps(
                {"_id": "d1", "title": "Owls", "text": "Owls hunt at night.", "metadata": {"y": 1}}
            ).encode(),
            json.dumps({"id": 7, "text": "Seven", "lang": "en"}).encode(),
        ],
    )
    items = list(read_path(str(path)))
    assert items == [
        Document("d1", "Owls hunt at night.", "Owls", {"y": 1}),
        Document("7", "Seven", "", {"lang": "en"}),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"_id": "a"}', "missing field 'text'"),
        (b'{"_id": "a", "text": "   "}', "field 'text' is empty"),
        (b'{"_id": "a", "text": 5}', "field 'text' must be a string"),
        (b'{"text": "no id"}', "missing field '_id'"),
        (b"not json at all", "not JSON"),
        (b'["a", "list"]', "expected a JSON object"),
        (b'{"_id": "a", "text": "ok \xff\xfe"}', "not valid UTF-8"),
        (b'{"_id": "a", "text": "nul \\u0000 here"}', "NUL"),
        (b'{"_id": "a", "text": "t", "metadata": [1, 2]}', "field 'metadata' must be an object"),
        (
            b'{"_id": "a", "text": "t", "metadata": ' + b'{"a":' * 20 + b"1" + b"}" * 20 + b"}",
            "nested deeper",
        ),
    ],
)
def test_bad_records_are_rejected_with_file_and_line(tmp_path: Path, line: bytes, expected: str) -> None:
    good = b'{"_id": "ok", "text": "fine"}'
    path = _write_jsonl(tmp_path / "in.jsonl", [good, line, good.replace(b"ok", b"ok2")])
    items = list(read_path(str(path)))
    assert [item.external_id for item in items if isinstance(item, Document)] == ["ok", "ok2"]
    rejections = [item for item in items if isinstance(item, Rejection)]
    assert len(rejections) == 1
    assert rejections[0].record == f"{path}:2"
    assert expected in rejections[0].message
    assert str(path) in rejections[0].message


def test_csv_columns_beyond_the_known_ones_become_metadata(tmp_path: Path) -> None:
    path = tmp_path / "docs.csv"
    path.write_text('_id,title,text,year\nd1,T,"Hello, world",1999\nd2,,,2000\n', encoding="utf-8")
    items = list(read_path(str(path)))
    assert items[0] == Document("d1", "Hello, world", "T", {"year": 1999})
    assert isinstance(items[1], Rejection)
    assert items[1].record == f"{path}:3"


def test_csv_metadata_cells_are_typed_and_ids_texts_and_codes_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "typed.csv"
    path.write_text(
        "_id,title,text,year,score,draft,zip,note,empty\n"
        "2009,1999,2010,2009,-0.5,TRUE,02139,1e999,\n",
        encoding="utf-8",
    )
    (doc,) = read_path(str(path))
    assert doc == Document(
        "2009",
        "2010",
        "1999",
        {"year": 2009, "score": -0.5, "draft": True, "zip": "02139", "note": "1e999", "empty": ""},
    )


def test_csv_types_pin_columns_and_a_cell_that_does_not_parse_is_rejected_by_line(tmp_path: Path) -> None:
    path = tmp_path / "pinned.csv"
    path.write_text(
        "_id,text,year,code,flag\na,A,2009,7,false\nb,B,soon,8,true\nc,C,,9,\n", encoding="utf-8"
    )
    options = ReadOptions(csv_types=parse_csv_types("year=int,code=str,flag=bool"))
    items = list(read_path(str(path), options=options))
    assert items[0] == Document("a", "A", "", {"year": 2009, "code": "7", "flag": False})
    assert isinstance(items[1], Rejection)
    assert items[1].record == f"{path}:3" and items[1].field == "year"
    assert "declared int" in items[1].message and "'soon'" in items[1].message
    assert items[2] == Document("c", "C", "", {"year": None, "code": "9", "flag": None})


def test_csv_types_naming_a_missing_or_known_column_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pinned.csv"
    path.write_text("_id,text,year\na,A,2009\n", encoding="utf-8")
    with pytest.raises(InvalidArgument, match="yaer"):
        list(read_path(str(path), options=ReadOptions(csv_types=parse_csv_types("yaer=int"))))
    with pytest.raises(InvalidArgument, match="metadata columns"):
        list(read_path(str(path), options=ReadOptions(csv_types=parse_csv_types("_id=int"))))
    with pytest.raises(InvalidArgument, match="unknown type"):
        parse_csv_types("year=integer")
    with pytest.raises(InvalidArgument, match="COLUMN=TYPE"):
        parse_csv_types("year")


def test_parquet_rows_are_read_in_batches(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    table = pa.table({"_id": [f"d{i}" for i in range(10)], "text": [f"text {i}" for i in range(10)]})
    pq.write_table(table, path)
    items = list(read_path(str(path)))
    assert [item.external_id for item in items if isinstance(item, Document)] == [f"d{i}" for i in range(10)]
    assert count_records(str(path)) == 10


def test_stdin_is_read_as_jsonl() -> None:
    stream = io.BytesIO(b'{"_id": "s", "text": "from stdin"}\n')
    assert list(read_path("-", stdin=stream)) == [Document("s", "from stdin")]


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path: Path) -> None:
    odd = tmp_path / "x.txt"
    odd.write_text("hello")
    with pytest.raises(InvalidArgument, match="cannot tell the format"):
        list(read_path(str(odd)))
    with pytest.raises(InvalidArgument, match="does not exist"):
        list(read_path(str(tmp_path / "missing.jsonl")))


def test_count_records_counts_jsonl_lines(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "c.jsonl", [b'{"_id": "a", "text": "t"}'] * 5)
    assert count_records(str(path)) == 5
    assert count_records("-") is None
