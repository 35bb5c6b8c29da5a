"""Metrics against hand computations; the BEIR loader on both qrels layouts; BM25 ranks by terms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from albatross.evaluation.beir import BeirDataset, read_qrels
from albatross.evaluation.bm25 import BM25, s_stem, terms
from albatross.evaluation.metrics import mean_metrics, mrr_at, ndcg_at, paired_bootstrap, recall_at
from indexer.errors import InvalidArgument


def test_ndcg_matches_a_hand_computation() -> None:
    judged = {"a": 3, "b": 1, "c": 2}
    ranking = ["b", "x", "a"]
    dcg = 1 / math.log2(2) + 0 + 3 / math.log2(4)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranking, judged, 10) == pytest.approx(dcg / ideal)
    assert ndcg_at(["a", "c", "b"], judged, 10) == pytest.approx(1.0)
    assert ndcg_at(["a"], {"a": 0}, 10) == 0.0


def test_recall_and_mrr() -> None:
    judged = {"a": 1, "b": 2, "z": 0}
    assert recall_at(["b", "q", "z"], judged, 100) == pytest.approx(0.5)
    assert recall_at(["b", "a"], judged, 1) == pytest.approx(0.5)
    assert mrr_at(["z", "q", "a"], judged, 10) == pytest.approx(1 / 3)
    assert mrr_at(["q"], judged, 10) == 0.0


def test_mean_metrics_averages_over_judged_queries_and_scores_missing_runs_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}
    result = mean_metrics({"q1": ["a"]}, qrels)
    assert result["queries"] == 2
    assert result["ndcg@10"] == pytest.approx(0.5)


def _dataset(folder: Path, qrels_text: str) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "text": "t"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "query"}\n{"_id": "q2", "text": "other"}\n')
    (folder / "qrels" / "test.tsv").write_text(qrels_text)
    return folder


@pytest.mark.parametrize("header", ["", "query-id\tcorpus-id\tscore\n"])
def test_qrels_with_or_without_header(tmp_path: Path, header: str) -> None:
    folder = _dataset(tmp_path, header + "q1\td1\t2\n")
    dataset = BeirDataset.load(folder)
    assert dataset.qrels == {"q1": {"d1": 2}}
    assert [q.query_id for q in dataset.judged_queries()] == ["q1"]


def test_malformed_qrels_and_missing_files_name_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("q1\td1\t1\nq2\td2\thigh\n")
    with pytest.raises(InvalidArgument, match="bad.tsv:2"):
        read_qrels(path)
    with pytest.raises(InvalidArgument, match="corpus.jsonl is missing"):
        BeirDataset.load(tmp_path / "nowhere")


def test_bm25_prefers_documents_sharing_rare_query_terms() -> None:
    index = BM25(
        [
            ("cats", "Cats purr and chase mice around the house."),
            ("dogs", "Dogs bark at the mail carrier."),
            ("both", "Cats and dogs can live in the same house."),
        ]
    )
    assert index.search("why do cats purr", 3)[0] == "cats"
    assert index.search("dog barking", 3)[0] == "dogs"
    assert index.search("zebra", 3) == []


def test_terms_fold_plurals_and_drop_stop_words() -> None:
    assert s_stem("cities") == "city" and s_stem("glass") == "glass"
    assert terms("The Cats of the cities") == ["cat", "city"]


def test_paired_bootstrap_of_a_uniform_gain_is_that_gain_with_no_spread() -> None:
    a = np.array([0.2, 0.5, 0.9, 0.4])
    paired = paired_bootstrap(a, a + 0.1)
    assert paired.difference == pytest.approx(0.1)
    assert paired.low == pytest.approx(0.1) and paired.high == pytest.approx(0.1)
    assert (paired.b_better, paired.a_better) == (4, 0)


def test_paired_bootstrap_interval_spans_zero_for_mixed_results() -> None:
    a = np.array([0.0, 1.0] * 10)
    b = np.array([1.0, 0.0] * 10)
    paired = paired_bootstrap(a, b)
    assert paired.difference == pytest.approx(0.0)
    assert paired.low < 0 < paired.high
    assert (paired.b_better, paired.a_better) == (10, 10)


def test_paired_bootstrap_rejects_unpaired_scores() -> None:
    with pytest.raises(ValueError, match="equal"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
