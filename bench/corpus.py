"""The benchmark corpus: MS MARCO 5k when ``shared/data`` has it, else a seeded generated one.

The generated passages are WordNet glosses (shipped in ``indexer/samples``) strung together to
MS MARCO's length profile (about 60 words, 15..160), so token counts per document are alike.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.samples import SAMPLE_CORPUS

MSMARCO = Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco-5k" / "corpus.jsonl"


@dataclass(frozen=True)
class Passage:
    id: str
    title: str
    text: str

    def to_json(self) -> str:
        return json.dumps({"_id": self.id, "title": self.title, "text": self.text, "metadata": {}})


def _glosses() -> list[dict[str, str]]:
    with SAMPLE_CORPUS.open(encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def generated(count: int, seed: int = 0) -> list[Passage]:
    """``count`` passages of WordNet glosses, about 60 words each (seeded)."""
    rng = np.random.default_rng(seed)
    glosses = _glosses()
    passages = []
    for number in range(count):
        target = int(np.clip(rng.normal(60, 25), 15, 160))
        sentences: list[str] = []
        words = 0
        while words < target:
            gloss = glosses[int(rng.integers(len(glosses)))]
            sentence = f"{gloss['title'].capitalize()}: {gloss['text']}"
            sentences.append(sentence)
            words += len(sentence.split())
        passages.append(Passage(f"gen-{number}", "", " ".join(sentences)))
    return passages


def load(count: int, corpus: Path | None = None, seed: int = 0) -> tuple[list[Passage], str]:
    """``count`` passages and where they came from: the first ones of ``corpus`` (MS MARCO 5k by
    default, when present; never copied into the repository), topped up with generated ones."""
    path = corpus if corpus is not None else MSMARCO
    passages: list[Passage] = []
    if path.exists():
        passages = list(_read(path, count))
    source = f"{path} (first {len(passages)})" if passages else ""
    if len(passages) < count:
        extra = generated(count - len(passages), seed)
        source = (source + " + " if source else "") + f"{len(extra)} generated WordNet-gloss passages"
    else:
        extra = []
    return passages + extra, source


def _read(path: Path, count: int) -> Iterator[Passage]:
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            if count <= 0:
                return
            if not line.strip():
                continue
            row = json.loads(line)
            yield Passage(str(row["_id"]), row.get("title") or "", row["text"])
            count -= 1


def queries(count: int, seed: int = 1) -> list[str]:
    """Short questions about WordNet nouns (seeded), as search traffic."""
    rng = np.random.default_rng(seed)
    glosses = _glosses()
    forms = ("what is a {}", "{} definition", "how does a {} work", "examples of {}", "{} meaning")
    return [
        forms[int(rng.integers(len(forms)))].format(glosses[int(rng.integers(len(glosses)))]["title"])
        for _ in range(count)
    ]


def write_jsonl(passages: list[Passage], path: Path) -> Path:
    path.write_text("".join(p.to_json() + "\n" for p in passages), encoding="utf-8")
    return path
