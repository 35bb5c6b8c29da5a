"""Data the package ships: the sample corpus of the README's main job (see WORDNET-LICENSE.md)."""

from pathlib import Path

SAMPLE_CORPUS = Path(__file__).resolve().parent / "wordnet-sample.jsonl"
