"""Read an evaluation set in the BEIR layout: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/test.tsv``."""

from __future__ import annotations

import json
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


def read_queries(path: Path) -> list[Query]:
    queries = []
    for number, line in enumerate(_require(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            queries.append(Query(str(row["_id"]), str(row["text"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InvalidArgument(
                f"{path}:{number}: a query needs '_id' and 'text' ({exc})", field="queries"
            ) from exc
    return queries


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
