"""The comparison that decides between two builds of the default model (its paired bootstrap is
in tests/albatross/test_evaluation_pieces.py)."""

import numpy as np
import pytest

from albatross.training.compare import mean_cosine
from albatross.training.quick_eval import BeirSet, per_query_metrics


def test_per_query_metrics_ranks_by_cosine():
    data = BeirSet(doc_ids=["d0", "d1", "d2"], doc_texts=["", "", ""], query_ids=["q0", "q1"],
                   query_texts=["", ""], qrels={"q0": {"d1": 2}, "q1": {"d2": 1, "d0": 1}})
    docs = np.eye(3, dtype=np.float32)
    queries = np.array([[0, 1, 0], [0.6, 0, 0.8]], dtype=np.float32)
    metrics = per_query_metrics(data, docs, queries)
    assert metrics[0] == pytest.approx([1.0, 1.0])       # the judged passage is first
    assert metrics[1] == pytest.approx([1.0, 1.0])       # both judged passages are the top two
    worse = per_query_metrics(data, docs, np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32))
    assert worse[0, 0] < 1.0 and worse[1, 0] < 1.0


def test_mean_cosine_of_unit_vectors():
    x = np.eye(2, dtype=np.float32)
    assert mean_cosine(x, x) == pytest.approx(1.0)
    assert mean_cosine(x, x[::-1]) == pytest.approx(0.0)
