"""A Tantivy index of chunk texts: BM25 over words, the lexical twin of ``indexer.index``.

The only module that imports ``tantivy``. Each chunk is one Tantivy document: its id (the SQL
chunk id, an indexed fast field) and ``body`` = the document's title and the chunk's text, analysed
by the collection's ``LexicalAnalyzer``. Tantivy scores with BM25 (k1=1.2, b=0.75, per segment
statistics summed over the index) and keeps its segments on disk; a ``commit`` is atomic (its
``meta.json`` is replaced in one step), so a crash leaves the last committed state.

Why Tantivy rather than SQLite FTS5 or bm25s: FTS5 exists only when SQLite holds the store (a
PostgreSQL store would rank with ``ts_rank``, not BM25), and bm25s has no incremental add or
delete (a change means re-indexing the whole collection). Measured on msmarco-5k in
docs/OPERATIONS.md ("Lexical and hybrid search").
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tantivy

from indexer.errors import LexicalIndexBusy
from indexer.records import LexicalAnalyzer

ID_FIELD = "id"
BODY_FIELD = "body"
# Tantivy needs at least 15 MB of indexing arena per writer thread; one thread per collection
# keeps the server's cores for the encoder. A larger arena only means fewer, larger segments.
WRITER_HEAP_BYTES = 32_000_000
# Terms longer than this are noise (base64, URLs glued together) and bloat the term dictionary.
MAX_TERM_CHARS = 40


def _analyzer(kind: LexicalAnalyzer) -> tantivy.TextAnalyzer:
    if kind is LexicalAnalyzer.CJK:
        # No spaces between words: overlapping character unigrams and bigrams, the usual choice.
        return (
            tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.ngram(1, 2, False))
            .filter(tantivy.Filter.lowercase())
            .build()
        )
    builder = (
        tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
        .filter(tantivy.Filter.remove_long(MAX_TERM_CHARS))
        .filter(tantivy.Filter.lowercase())
    )
    if kind is LexicalAnalyzer.ENGLISH:
        # Stop words off: +0.008 nDCG@10 on msmarco-5k over stemming alone (docs/OPERATIONS.md).
        builder = builder.filter(tantivy.Filter.stopword("english")).filter(tantivy.Filter.stemmer("english"))
    return builder.build()


def _schema(kind: LexicalAnalyzer) -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field(ID_FIELD, stored=False, indexed=True, fast=True)
    builder.add_text_field(
        BODY_FIELD, stored=False, tokenizer_name=_tokenizer_name(kind), index_option="freq"
    )
    return builder.build()


def _tokenizer_name(kind: LexicalAnalyzer) -> str:
    return f"albatross_{kind.value}"


def body_of(title: str, text: str) -> str:
    """What the index holds of one chunk: its document's title, then the chunk's text."""
    return f"{title}\n{text}" if title else text


class LexicalIndex:
    """One collection's (or shard's) chunk texts, searchable by BM25. Not thread-safe for writes:
    ``indexer.lexical_sync`` holds one writer per index; searches read the last commit."""

    def __init__(self, index: tantivy.Index, analyzer: LexicalAnalyzer, folder: Path | None) -> None:
        self._index = index
        self._kind = analyzer
        self._analyzer = _analyzer(analyzer)
        index.register_tokenizer(_tokenizer_name(analyzer), self._analyzer)
        self._schema = index.schema
        self._folder = folder
        try:
            self._writer = index.writer(WRITER_HEAP_BYTES, 1)
        except ValueError as exc:
            if "LockBusy" in str(exc):
                raise LexicalIndexBusy(f"lexical index {folder} is being written by another process") from exc
            raise
        index.reload()
        self._searcher = index.searcher()

    @classmethod
    def in_memory(cls, analyzer: LexicalAnalyzer) -> LexicalIndex:
        return cls(tantivy.Index(_schema(analyzer)), analyzer, None)

    @classmethod
    def create(cls, folder: Path, analyzer: LexicalAnalyzer) -> LexicalIndex:
        """An empty index in ``folder``, replacing whatever was there."""
        folder = Path(folder)
        if folder.exists():
            # Renamed aside first: the rename is atomic, so a crash mid-removal never leaves a
            # half-deleted folder under the index's name, and a file appearing in the old folder
            # while it is removed cannot fail the rebuild.
            stale = folder.with_name(f"{folder.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
            folder.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        folder.mkdir(parents=True)
        return cls(tantivy.Index(_schema(analyzer), path=str(folder), reuse=False), analyzer, folder)

    @classmethod
    def open(cls, folder: Path, analyzer: LexicalAnalyzer) -> LexicalIndex:
        """The committed index in ``folder``. OSError or ValueError when it is missing or torn;
        ``LexicalIndexBusy`` when another writer holds it."""
        if not tantivy.Index.exists(str(folder)):
            raise OSError(f"no lexical index in {folder}")
        index = tantivy.Index.open(str(folder))
        if str(index.schema) != str(_schema(analyzer)):
            raise ValueError(f"lexical index in {folder} was built with another schema or analyser")
        opened = cls(index, analyzer, Path(folder))
        opened.ids()  # reads every segment's id column: a missing or truncated segment fails here
        return opened

    # -- facts ----------------------------------------------------------------------------------

    @property
    def analyzer(self) -> LexicalAnalyzer:
        return self._kind

    @property
    def ntotal(self) -> int:
        """Live chunks as of the last commit."""
        return int(self._searcher.num_docs)

    def ids(self) -> np.ndarray:
        """Live chunk ids as of the last commit, int64 (ntotal,) ascending."""
        total = self.ntotal
        if total == 0:
            return np.zeros(0, dtype=np.int64)
        hits = self._searcher.search(tantivy.Query.all_query(), total, count=False).hits
        ids = self._searcher.fast_field_values(ID_FIELD, [address for _, address in hits])
        return np.sort(np.asarray(ids, dtype=np.int64))

    def terms(self, text: str) -> list[str]:
        """The distinct terms the analyser makes of ``text``, in order of first appearance."""
        return list(dict.fromkeys(self._analyzer.analyze(text)))

    # -- writing (visible after ``commit``) -------------------------------------------------------

    def add(self, ids: np.ndarray, bodies: Sequence[str]) -> None:
        """Index ``bodies`` under ``ids`` (int64 (n,), distinct), replacing any chunk the last
        commit holds under one of them.

        Only ids already there are deleted first: a deleted document still counts in BM25's
        statistics until Tantivy merges its segment away, so deleting blindly before every add
        would make scores depend on how often a replay happened to overlap what was indexed.
        """
        ids = np.asarray(ids, dtype=np.int64)
        self.remove(self._present(ids))
        for chunk_id, body in zip(ids.tolist(), bodies, strict=True):
            self._writer.add_document(tantivy.Document(**{ID_FIELD: chunk_id, BODY_FIELD: body}))

    def _present(self, ids: np.ndarray) -> np.ndarray:
        """The ones of ``ids`` the last commit holds."""
        if len(ids) == 0 or self.ntotal == 0:
            return ids[:0]
        query = tantivy.Query.term_set_query(self._schema, ID_FIELD, ids.tolist())
        hits = self._searcher.search(query, len(ids), count=False).hits
        return np.asarray(self._searcher.fast_field_values(ID_FIELD, [a for _, a in hits]), dtype=np.int64)

    def remove(self, ids: np.ndarray) -> None:
        """Drop the chunks under ``ids`` (int64 (n,)); absent ids are ignored."""
        for chunk_id in np.asarray(ids, dtype=np.int64).tolist():
            self._writer.delete_documents_by_term(ID_FIELD, chunk_id)

    def clear(self) -> None:
        """Drop every chunk (visible after ``commit``): before a refill from SQL."""
        self._writer.delete_all_documents()

    def commit(self) -> None:
        """Publish every add and remove since the last commit (durably, when on disk)."""
        self._writer.commit()
        self._index.reload()
        self._searcher = self._index.searcher()

    def close(self) -> None:
        """Release the writer (and its folder lock); uncommitted changes are dropped."""
        self._writer.rollback()
        self._writer.wait_merging_threads()

    # -- reading --------------------------------------------------------------------------------

    def search(
        self, queries: Sequence[str], k: int, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top ``k`` chunks per query: scores float32 (nq, k), ids int64 (nq, k), best first,
        ``-1``/0 padded as FAISS pads. ``allowed_ids``: only these chunks may be returned."""
        scores = np.zeros((len(queries), k), dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        if k <= 0 or (allowed_ids is not None and len(allowed_ids) == 0):
            return scores, ids
        searcher = self._searcher  # one commit for the whole batch
        allowed = self._allowed(allowed_ids)
        for row, text in enumerate(queries):
            query = self._query(text, allowed)
            if query is None:
                continue
            hits = searcher.search(query, k, count=False).hits
            found = searcher.fast_field_values(ID_FIELD, [address for _, address in hits])
            # Equal scores in chunk-id order: the order of tied hits must not depend on how
            # commits happened to split the index into segments.
            ranked = sorted(zip((float(s) for s, _ in hits), found, strict=True), key=lambda p: (-p[0], p[1]))
            scores[row, : len(ranked)] = [score for score, _ in ranked]
            ids[row, : len(ranked)] = [chunk_id for _, chunk_id in ranked]
        return scores, ids

    def _allowed(self, allowed_ids: np.ndarray | None) -> tantivy.Query | None:
        if allowed_ids is None:
            return None
        members = tantivy.Query.term_set_query(
            self._schema, ID_FIELD, np.asarray(allowed_ids, dtype=np.int64).tolist()
        )
        return tantivy.Query.const_score_query(members, 0.0)  # a filter: adds nothing to BM25

    def _query(self, text: str, allowed: tantivy.Query | None) -> tantivy.Query | None:
        """Any of the query's terms (OR, as BM25 baselines do), within ``allowed``; None when the
        analyser leaves no term (a query of stop words)."""
        terms = self.terms(text)
        if not terms:
            return None
        words = tantivy.Query.boolean_query(
            [
                (tantivy.Occur.Should, tantivy.Query.term_query(self._schema, BODY_FIELD, term))
                for term in terms
            ]
        )
        if allowed is None:
            return words
        return tantivy.Query.boolean_query([(tantivy.Occur.Must, words), (tantivy.Occur.Must, allowed)])
