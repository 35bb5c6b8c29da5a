"""Read an evaluation set in the BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from indexer.errors import InvalidArgument

Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Query:
    query_id: str
    text: str


def _require(path: Path) -> Path:
    if not path.is_file():
        raise InvalidArgument(
            f"{path} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/", field="dataset"
        )
    return path


@dataclass(frozen=True)
class QueryFile:
    """The good lines of a JSONL file of queries, and one ``file:line: why`` for each bad one."""

    queries: list[Query]
    rejected: list[str]


def read_query_file(path: Path) -> QueryFile:
    """Every query of ``path`` (``{"_id": ..., "text": ...}`` per line); a bad line is named and
    skipped, as ingestion does with a bad record."""
    if not path.is_file():
        raise InvalidArgument(f"queries file {path} does not exist", field="queries")
    queries, rejected = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            queries.append(_query(json.loads(line)))
        except json.JSONDecodeError as exc:
            rejected.append(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})")
        except ValueError as exc:
            rejected.append(f"{path}:{number}: {exc}")
    return QueryFile(queries, rejected)


def _query(row: object) -> Query:
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object with '_id' and 'text', got {type(row).__name__}")
    missing = [name for name in ("_id", "text") if name not in row]
    if missing:
        raise ValueError(f"missing field {missing[0]!r} (a query needs '_id' and 'text')")
    if not isinstance(row["text"], str) or not row["text"].strip():
        raise ValueError("field 'text' must be non-empty text")
    return Query(str(row["_id"]), row["text"])


def read_queries(path: Path) -> list[Query]:
    """The queries of a BEIR folder: all of them, or an error naming the first bad line (a metric
    over part of the judged queries would not be comparable)."""
    found = read_query_file(_require(path))
    if found.rejected:
        raise InvalidArgument(found.rejected[0], field="queries")
    return found.queries


def read_qrels(path: Path) -> Qrels:
    """``query-id <TAB> corpus-id <TAB> score``, with or without a header line."""
    qrels: Qrels = {}
    for number, line in enumerate(_require(path).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.strip().split("\t")
        if len(fields) < 3:
            if line.strip():
                raise InvalidArgument(f"{path}:{number}: expected three tab-separated fields", field="qrels")
            continue
        try:
            grade = int(float(fields[-1]))
        except ValueError as exc:
            if number == 1:
                continue  # the header line: query-id corpus-id score
            raise InvalidArgument(
                f"{path}:{number}: score {fields[-1]!r} is not a number", field="qrels"
            ) from exc
        qrels.setdefault(fields[0], {})[fields[1]] = grade
    return qrels


@dataclass(frozen=True)
class BeirDataset:
    corpus: Path
    queries: list[Query]
    qrels: Qrels

    @classmethod
    def load(cls, folder: Path, split: str = "test") -> BeirDataset:
        return cls(
            corpus=_require(folder / "corpus.jsonl"),
            queries=read_queries(folder / "queries.jsonl"),
            qrels=read_qrels(folder / "qrels" / f"{split}.tsv"),
        )

    def judged_queries(self) -> list[Query]:
        """Queries with at least one judgment: the ones every metric averages over."""
        return [query for query in self.queries if query.query_id in self.qrels]


def corpus_rows(corpus: Path) -> Iterator[dict]:
    """The passages of ``corpus.jsonl`` as parsed rows (``_id``, ``title``, ``text``), in file order."""
    with corpus.open(encoding="utf-8") as stream:
        for line in stream:
            if line.strip():
                yield json.loads(line)


def passage_text(row: Mapping[str, object]) -> str:
    """What a passage reads as to a retriever: its title, then its text."""
    return f"{row.get('title') or ''} {row['text']}".strip()
