"""Input files -> documents, one record at a time (memory does not grow with the file).

Formats: JSONL (BEIR ``corpus.jsonl``: ``_id``, ``title``, ``text``, ``metadata``), CSV and
Parquet, plus ``-`` for JSONL on standard input. The id column may be ``_id`` or ``id``. Fields
other than these four and ``vector`` go into the metadata, so nothing in a record is silently
dropped. CSV cells of those metadata columns are typed by ``indexer.csv_cells`` (``2009`` is a
number, not a string). ``vector`` (a JSON array, a Parquet list column; CSV cannot carry one) is
a document's own vector, for a collection without a model.

A bad record is yielded as a ``Rejection`` naming file, line and field; reading goes on.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from indexer.csv_cells import CellType, check_pinned_columns, convert_cell, infer_cell
from indexer.errors import InvalidArgument, InvalidDocument
from indexer.records import Document
from indexer.validation import DocumentLimits, check_vector, validate_document, vector_for_collection

ID_FIELDS = ("_id", "id")
KNOWN_FIELDS = frozenset({*ID_FIELDS, "title", "text", "metadata", "vector"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})


@dataclass(frozen=True)
class Rejection:
    """A record that could not be accepted. ``record`` is ``file:line`` (or ``file:row``)."""

    record: str
    message: str
    field: str | None = None


ReadItem = Document | Rejection

CSV_HAS_NO_VECTORS = (
    "{file}: CSV cannot carry vectors (a cell is one string): give documents with a 'vector' "
    "as JSONL (an array) or Parquet (a list column)"
)


@dataclass(frozen=True)
class ReadOptions:
    """How records are read. ``csv_types`` pins CSV metadata columns to a type (the rest are
    inferred, see ``indexer.csv_cells``). ``vector_dimension`` N: every record must carry a
    ``vector`` of N values (a collection without a model); ``refuse_vectors``: no record may carry
    one (a collection with a model embeds its own). Neither: a vector is only checked to be one.
    """

    limits: DocumentLimits = field(default_factory=DocumentLimits)
    csv_types: Mapping[str, CellType] = field(default_factory=dict)
    vector_dimension: int | None = None
    refuse_vectors: bool = False


def read_path(
    path: str, *, stdin: IO[bytes] | None = None, options: ReadOptions | None = None
) -> Iterator[ReadItem]:
    """Yield every record of ``path`` (``-`` = JSONL on stdin) in file order."""
    options = options or ReadOptions()
    limits = options.limits
    if path == "-":
        yield from read_jsonl(stdin if stdin is not None else sys.stdin.buffer, "<stdin>", limits)
        return
    file = Path(path)
    if not file.is_file():
        raise InvalidArgument(f"input file {path!r} does not exist or is not a file", field="path")
    suffix = file.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        with file.open("rb") as stream:
            yield from read_jsonl(stream, path, limits, options=options)
    elif suffix == ".csv":
        if options.vector_dimension is not None:
            raise InvalidArgument(CSV_HAS_NO_VECTORS.format(file=path), field="vector")
        yield from read_csv(file, limits, options.csv_types)
    elif suffix == ".parquet":
        yield from read_parquet(file, limits, options=options)
    else:
        raise InvalidArgument(
            f"cannot tell the format of {path!r}: use .jsonl, .csv or .parquet", field="path"
        )


def document_from_mapping(
    row: Mapping[str, Any], record: str, limits: DocumentLimits, options: ReadOptions | None = None
) -> Document:
    """Map one record's fields onto a ``Document`` (extra fields join the metadata)."""
    options = options or ReadOptions(limits=limits)
    external_id = next((row[name] for name in ID_FIELDS if row.get(name) not in (None, "")), None)
    if external_id is None:
        raise InvalidDocument("missing field '_id' (or 'id')", record=record, field="_id")
    metadata = row.get("metadata")
    extras = {key: value for key, value in row.items() if key not in KNOWN_FIELDS}
    if extras:
        if metadata is not None and not isinstance(metadata, Mapping):
            raise InvalidDocument("field 'metadata' must be an object", record=record, field="metadata")
        metadata = {**extras, **(metadata or {})}
    if "text" not in row:
        raise InvalidDocument("missing field 'text'", record=record, field="text")
    vector = _record_vector(row.get("vector"), record, options)
    return validate_document(
        external_id, row.get("text"), row.get("title"), metadata, record=record, limits=limits, vector=vector
    )


def _record_vector(value: Any, record: str, options: ReadOptions) -> tuple[float, ...] | None:
    if options.refuse_vectors or options.vector_dimension is not None:
        return vector_for_collection(value, record=record, dimension=options.vector_dimension)
    return check_vector(value, record=record)


def _reject(record: str, exc: InvalidDocument) -> Rejection:
    return Rejection(record=record, message=str(exc), field=exc.field)


def read_jsonl(
    stream: IO[bytes] | Iterable[bytes],
    name: str,
    limits: DocumentLimits,
    first_line: int = 1,
    *,
    options: ReadOptions | None = None,
) -> Iterator[ReadItem]:
    """Records of JSONL lines; ``first_line`` numbers the first one (a part of a split file)."""
    for line_number, raw in enumerate(stream, start=first_line):
        record = f"{name}:{line_number}"
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Rejection(record, f"{record}: not valid UTF-8 (byte {exc.start})")
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Rejection(record, f"{record}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        except RecursionError:
            yield Rejection(record, f"{record}: JSON nested too deeply")
            continue
        if not isinstance(row, dict):
            yield Rejection(record, f"{record}: expected a JSON object, got {type(row).__name__}")
            continue
        try:
            yield document_from_mapping(row, record, limits, options)
        except InvalidDocument as exc:
            yield _reject(record, exc)


def _allow_fields_up_to(limits: DocumentLimits) -> None:
    """csv refuses fields over 131072 characters by default, far below ``max_text_chars``: raise
    the (process-wide) limit so a long text gets validation's message naming the field."""
    longest = max(limits.max_text_chars, limits.max_title_chars, limits.max_metadata_bytes) + 1
    if csv.field_size_limit() < longest:
        csv.field_size_limit(longest)


def read_csv(
    file: Path, limits: DocumentLimits, csv_types: Mapping[str, CellType] | None = None
) -> Iterator[ReadItem]:
    _allow_fields_up_to(limits)
    csv_types = csv_types or {}
    _check_pins_are_metadata(csv_types)
    with file.open("rb") as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="strict", newline="")
        reader = csv.DictReader(text)
        with contextlib.suppress(UnicodeDecodeError, csv.Error):  # reported by the loop below
            header = list(reader.fieldnames or [])
            if "vector" in header:
                raise InvalidArgument(CSV_HAS_NO_VECTORS.format(file=file), field="vector")
            if csv_types:
                check_pinned_columns(csv_types, header, str(file))
        line_number = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:
                # The decoder cannot resynchronise inside a CSV stream: report and stop this file.
                yield Rejection(f"{file}:{line_number + 1}", f"{file}: not valid UTF-8 ({exc.reason})")
                return
            except csv.Error as exc:
                # One malformed row (a field over the limit, say): the reader goes on at the next line.
                line_number = reader.line_num
                yield Rejection(f"{file}:{line_number}", f"{file}:{line_number}: not valid CSV ({exc})")
                continue
            line_number = reader.line_num
            record = f"{file}:{line_number}"
            if None in row:
                yield Rejection(record, f"{record}: more values than header columns")
                continue
            try:
                yield document_from_mapping(_csv_row(row, csv_types, record), record, limits)
            except InvalidDocument as exc:
                yield _reject(record, exc)


def _check_pins_are_metadata(csv_types: Mapping[str, CellType]) -> None:
    pinned = sorted(set(csv_types) & KNOWN_FIELDS)
    if pinned:
        raise InvalidArgument(
            f"--csv-types applies to metadata columns; {', '.join(pinned)} always keep their own type",
            field="csv_types",
        )


def _typed_cell(column: str, raw: str, csv_types: Mapping[str, CellType], record: str) -> Any:
    cell_type = csv_types.get(column)
    if cell_type is None:
        return infer_cell(raw)
    try:
        return convert_cell(raw, cell_type)
    except ValueError as exc:
        raise InvalidDocument(
            f"column {column!r} is declared {cell_type.value} but {exc}", record=record, field=column
        ) from exc


def _csv_row(row: Mapping[str, str], csv_types: Mapping[str, CellType], record: str) -> dict[str, Any]:
    """CSV cells are strings: metadata columns are typed; a ``metadata`` column may hold a JSON
    object; id, title and text stay as written."""
    out: dict[str, Any] = {
        column: raw if column in KNOWN_FIELDS else _typed_cell(column, raw, csv_types, record)
        for column, raw in row.items()
    }
    raw = out.get("metadata")
    if isinstance(raw, str) and raw.strip():
        # Not JSON: left as a string, and validation names the field.
        with contextlib.suppress(json.JSONDecodeError, RecursionError):
            out["metadata"] = json.loads(raw)
    elif raw is not None:
        out["metadata"] = None
    return out


def read_parquet(
    file: Path, limits: DocumentLimits, batch_rows: int = 4096, *, options: ReadOptions | None = None
) -> Iterator[ReadItem]:
    import pyarrow as pa  # imported here: only Parquet inputs pay for pyarrow
    import pyarrow.parquet as pq

    row_number = 0
    try:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=batch_rows):
            for row in batch.to_pylist():
                row_number += 1
                record = f"{file}:row {row_number}"
                try:
                    yield document_from_mapping(row, record, limits, options)
                except InvalidDocument as exc:
                    yield _reject(record, exc)
    except (pa.ArrowException, OSError) as exc:
        # A damaged file or not Parquet at all: the rows already read stand, the rest is reported.
        record = f"{file}:row {row_number + 1}"
        yield Rejection(record, f"{record}: cannot read the rest of this Parquet file ({exc})")


def count_records(path: str) -> int | None:
    """How many records ``path`` holds, cheaply, for a progress bar; None when unknown (stdin)."""
    file = Path(path)
    if path == "-" or not file.is_file():
        return None
    suffix = file.suffix.lower()
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(file).metadata.num_rows
        except (pa.ArrowException, OSError):
            return None  # reading it reports what is wrong
    if suffix in JSONL_SUFFIXES:
        with file.open("rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    return None
