"""``albatross eval`` on a small BEIR folder: a table and a JSON file with every system's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from albatross.cli import main
from albatross.evaluation.runner import EVAL_FUSIONS

TOPICS = {
    "owl": "Owls are nocturnal birds of prey that hunt mice in the dark.",
    "tea": "Green tea leaves are steeped in hot water for two minutes.",
    "bus": "The night bus leaves the central station every forty minutes.",
    "fern": "Ferns are plants that reproduce by spores instead of seeds.",
    "sail": "A sailboat uses the wind in its sails to move across the water.",
}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny-beir"
    (folder / "qrels").mkdir(parents=True)
    corpus = [{"_id": doc_id, "title": "", "text": text} for doc_id, text in TOPICS.items()]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(row) for row in corpus) + "\n")
    queries = [{"_id": f"q-{doc_id}", "text": text} for doc_id, text in TOPICS.items()]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(row) for row in queries) + "\n")
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"q-{doc_id}\t{doc_id}\t2\n" for doc_id in TOPICS)
    (folder / "qrels" / "test.tsv").write_text(qrels)
    return folder


def test_eval_reports_bm25_and_each_model_as_table_and_json(
    dataset: Path, tiny_albert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval.json"
    code = main(
        [
            "eval",
            "--dataset",
            str(dataset),
            "--no-default",
            "--model",
            str(tiny_albert_dir),
            "--whitening",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "BM25" in table and str(tiny_albert_dir)[:20] in table and "nDCG@10" in table
    results = {row["system"]: row for row in json.loads(out.read_text())["results"]}
    hybrid = [name for name in results if " + hybrid (" in name]
    # BM25, lexical, and per model its dense row and one row per fusion measured.
    assert len(results) == 2 + 2 * (1 + len(EVAL_FUSIONS)) and len(hybrid) == 2 * len(EVAL_FUSIONS)
    assert sum(name.endswith(" default)") for name in hybrid) == 2
    lexical = results["lexical (Tantivy BM25, english)"]
    assert lexical["ndcg_at_10"] == pytest.approx(1.0)  # the engine that serves --mode lexical
    assert all(0.0 <= results[name]["ndcg_at_10"] <= 1.0 for name in hybrid)
    assert "paired nDCG@10 differences" in table
    bm25 = results["BM25 (k1=0.9, b=0.4)"]
    assert bm25["queries"] == 5
    assert bm25["ndcg_at_10"] == pytest.approx(1.0)  # each query is its document's exact text
    model = results[str(tiny_albert_dir)]
    # Exact text of a document embeds to that document's vector: a real encoder ranks it first.
    assert model["mrr_at_10"] == pytest.approx(1.0)
    assert model["docs_per_second"] > 0
    assert 0.0 <= results[f"{tiny_albert_dir} + whitening"]["ndcg_at_10"] <= 1.0
