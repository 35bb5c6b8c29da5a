"""``albatross`` shows transformers' load reports: a weight missing from an operator's model
folder is a real problem (its vectors come from random numbers), so it reaches stderr. The reports
we expect are avoided where they arise, so the shipped model and the demo path (the topic
classifier assembled, then loaded for ingest) print none."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from tests.cli.running import run_albatross

REPORT = "LOAD REPORT"
DOCS = [
    {"_id": "owl", "text": "Owls hunt small rodents silently at night."},
    {"_id": "tea", "text": "Green tea is steeped in water that is not quite boiling."},
]


def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(doc) + "\n" for doc in DOCS), encoding="utf-8")
    return path


def test_a_weight_missing_from_the_model_folder_is_reported_on_stderr(tmp_path: Path, tiny_albert_dir: Path) -> None:
    folder = shutil.copytree(tiny_albert_dir, tmp_path / "broken")
    weights = load_file(folder / "model.safetensors")
    missing = next(name for name in weights if name.startswith("encoder."))
    save_file({k: v for k, v in weights.items() if k != missing}, folder / "model.safetensors")
    result = run_albatross(
        ["ingest", str(corpus(tmp_path)), "--collection", "c", "--no-progress", "--data-dir", str(tmp_path / "data")],
        folder,
    )  # fmt: skip
    assert REPORT in result.stderr and missing in result.stderr, result.stderr
    assert "pooler" not in result.stderr  # the pooler the weights lack is still not built


def test_the_shipped_model_and_the_topic_classifier_load_without_a_report(tmp_path: Path) -> None:
    classifier = tmp_path / "wordnet-topic"
    built = run_albatross(["classifier", "build-topic", "--out", str(classifier)], None)
    assert built.returncode == 0, built.stderr
    assert REPORT not in built.stderr and "MISSING" not in built.stderr, built.stderr
    ingested = run_albatross(
        ["ingest", str(corpus(tmp_path)), "--collection", "c", "--no-progress", "--data-dir", str(tmp_path / "data"),
         "--classifier", str(classifier), "--label-field", "topic"],
        None,
    )  # fmt: skip
    assert ingested.returncode == 0, ingested.stderr
    assert "2 written" in ingested.stderr
    assert REPORT not in ingested.stderr and "MISSING" not in ingested.stderr, ingested.stderr
