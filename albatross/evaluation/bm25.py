"""A BM25 baseline for evaluation (Okapi BM25, k1=0.9, b=0.4 as in Anserini's defaults).

Terms: lowercased alphanumeric runs, English stop words removed, Harman's S-stemmer (plural
folding). No Porter stemming, so this is a slightly weaker BM25 than Anserini's; it is the
lexical baseline ``albatross eval`` measures beside the encoder in the same run.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

TOKEN = re.compile(r"[a-z0-9]+")
# A word list reads better as prose than as a column of quoted strings.
STOP_WORDS = frozenset(
    (  # noqa: SIM905
        "a an and are as at be but by for if in into is it no not of on or such that the their then "
        "there these they this to was will with what which who whom how when where why do does did "
        "i you he she we me my your our its from has have had were been being can could would should"
    ).split()
)


def s_stem(term: str) -> str:
    """Harman's S-stemmer: fold the common English plural endings."""
    if term.endswith("ies") and not term.endswith(("eies", "aies")):
        return term[:-3] + "y"
    if term.endswith("es") and not term.endswith(("aes", "ees", "oes")):
        return term[:-1]
    if term.endswith("s") and not term.endswith(("us", "ss")):
        return term[:-1]
    return term


def terms(text: str) -> list[str]:
    return [s_stem(token) for token in TOKEN.findall(text.lower()) if token not in STOP_WORDS]


class BM25:
    """An in-memory inverted index over a corpus; ``search`` returns the top-k document ids."""

    def __init__(self, documents: Iterable[tuple[str, str]], k1: float = 0.9, b: float = 0.4) -> None:
        self.k1, self.b = k1, b
        self.ids: list[str] = []
        self.postings: dict[str, list[tuple[int, int]]] = {}
        lengths = []
        for position, (doc_id, text) in enumerate(documents):
            counts = Counter(terms(text))
            self.ids.append(doc_id)
            lengths.append(sum(counts.values()))
            for term, count in counts.items():
                self.postings.setdefault(term, []).append((position, count))
        self.lengths = np.asarray(lengths, dtype=np.float32)
        self.average_length = float(self.lengths.mean()) if lengths else 0.0

    def idf(self, term: str) -> float:
        frequency = len(self.postings.get(term, ()))
        return math.log(1 + (len(self.ids) - frequency + 0.5) / (frequency + 0.5))

    def scores(self, query: str) -> np.ndarray:
        """float32 (n_docs,) BM25 score of every document for ``query``."""
        scores = np.zeros(len(self.ids), dtype=np.float32)
        norm = self.k1 * (1 - self.b + self.b * self.lengths / max(self.average_length, 1e-9))
        for term in set(terms(query)):
            postings = self.postings.get(term)
            if not postings:
                continue
            positions = np.fromiter((p for p, _ in postings), dtype=np.int64, count=len(postings))
            counts = np.fromiter((c for _, c in postings), dtype=np.float32, count=len(postings))
            scores[positions] += self.idf(term) * counts * (self.k1 + 1) / (counts + norm[positions])
        return scores

    def search(self, query: str, k: int) -> Sequence[str]:
        scores = self.scores(query)
        k = min(k, len(self.ids))
        top = np.argpartition(-scores, k - 1)[:k] if k else np.empty(0, dtype=np.int64)
        ranked = top[np.argsort(-scores[top], kind="stable")]
        return [self.ids[i] for i in ranked if scores[i] > 0]
