"""A small seeded corpus of multi-chunk documents from the test fixtures' sample text."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.records import CollectionSpec, Document
from tests.fixtures.tiny_models import sample_lines

# Small windows: every document spans several chunks, so a document's chunks land on several shards.
MULTI_CHUNK_SPEC = CollectionSpec(model="", max_length=64, window=16, overlap=4)


def documents(count: int = 90, lines_per_document: int = 3) -> list[Document]:
    """``count`` documents of consecutive sample lines, with distinct texts and a metadata field."""
    lines = sample_lines()
    out = []
    for i in range(count):
        start = (i * lines_per_document) % (len(lines) - lines_per_document)
        text = " ".join(lines[start : start + lines_per_document]) + f" (note {i})"
        out.append(Document(f"doc-{i:03d}", text, title=f"note {i}", metadata={"parity": i % 2}))
    return out


def queries(docs: list[Document], count: int = 40) -> list[str]:
    """Queries that resemble documents to different degrees: openings, endings, mixtures."""
    out = []
    for i in range(count):
        words = docs[(7 * i) % len(docs)].text.split()
        other = docs[(13 * i + 5) % len(docs)].text.split()
        out.append(" ".join(words[i % 5 : i % 5 + 6] + other[-4:]))
    return out


def write_jsonl(path: Path, docs: list[Document]) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for doc in docs:
            row = {
                "_id": doc.external_id,
                "title": doc.title,
                "text": doc.text,
                "metadata": dict(doc.metadata),
            }
            out.write(json.dumps(row) + "\n")
    return path
