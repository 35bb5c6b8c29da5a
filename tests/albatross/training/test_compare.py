"""The paired comparison that decides between two builds of the default model."""

import numpy as np
import pytest

from albatross.training.compare import mean_cosine, paired_bootstrap
from albatross.training.quick_eval import BeirSet, per_query_metrics


def test_paired_bootstrap_of_a_uniform_gain_is_that_gain_with_no_spread():
    a = np.array([0.2, 0.5, 0.9, 0.4])
    paired = paired_bootstrap(a, a + 0.1)
    assert paired.difference == pytest.approx(0.1)
    assert paired.low == pytest.approx(0.1) and paired.high == pytest.approx(0.1)
    assert (paired.b_better, paired.a_better) == (4, 0)


def test_paired_bootstrap_interval_spans_zero_for_mixed_results():
    a = np.array([0.0, 1.0] * 10)
    b = np.array([1.0, 0.0] * 10)
    paired = paired_bootstrap(a, b)
    assert paired.difference == pytest.approx(0.0)
    assert paired.low < 0 < paired.high
    assert (paired.b_better, paired.a_better) == (10, 10)


def test_paired_bootstrap_rejects_unpaired_scores():
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap(np.zeros(3), np.zeros(4))


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
