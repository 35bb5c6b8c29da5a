"""``albatross demo`` as a user runs it, on a slice of the shipped sample: the real encoder, the
topic classifier assembled offline, a real server; its filtered search shows only that label."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from albatross.serving_commands import TOPIC_FILTER, TOPIC_QUERY
from indexer.samples import SAMPLE_CORPUS

PER_CATEGORY = 6


def test_the_demo_labels_the_sample_and_its_topic_filter_shows_only_that_label(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in SAMPLE_CORPUS.read_text(encoding="utf-8").splitlines()]
    chosen = [
        row
        for category in ("food", "plant", "animal")
        for row in [r for r in rows if r["metadata"]["category"] == category][:PER_CATEGORY]
    ]
    sample = tmp_path / "sample.jsonl"
    sample.write_text("".join(json.dumps(row) + "\n" for row in chosen), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("ALBATROSS_MODEL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "albatross",
            "demo",
            "--sample",
            str(sample),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "LOAD REPORT" not in result.stderr, result.stderr  # no weight of ours is missing
    assert (tmp_path / "data" / "models" / "wordnet-topic" / "model.safetensors").is_file()
    ((field, wanted),) = TOPIC_FILTER.items()
    sections = result.stdout.split("\n> ")
    unfiltered = next(s for s in sections if s.startswith(f"{TOPIC_QUERY}   (no filter"))
    filtered = next(s for s in sections if s.startswith(f"{TOPIC_QUERY}   (--filter"))
    hits = filtered.strip().splitlines()[1:]
    assert len(hits) == 3, result.stdout
    assert all(f" {field}={wanted} " in hit for hit in hits), filtered
    assert len(unfiltered.strip().splitlines()[1:]) == 3
