"""An upsert that changes only a document's metadata: the row takes the new metadata, the encoder,
the classifier and the whitening fit are not run, the vectors and chunk ids stay. A change of the
text, the title or a given vector still re-embeds. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from indexer.catalog import CollectionEncoder
from indexer.classifier import Classifier, Label
from indexer.config import AppConfig, IngestConfig
from indexer.records import (
    NO_MODEL,
    CollectionInfo,
    CollectionSpec,
    Condition,
    Document,
    DocumentStatus,
    EncodedDocument,
    MetadataFilter,
)
from indexer.store import Store
from indexer.workspace import Workspace
from tests.conftest_db import store_config
from tests.fixtures.tiny_models import build_tiny_classifier

SPEC = CollectionSpec(model="", max_length=64, window=16, overlap=4)
DOCUMENTS = [
    Document(
        f"d{i}",
        f"the owl number {i} hunts at night over the wet fields and the old barn",
        title=f"owl {i}",
        metadata={"room": "hall", "n": i},
    )
    for i in range(4)
]


class CountingEncoder:
    """A collection's real encoder, remembering every text it was asked to embed."""

    def __init__(self, real: CollectionEncoder) -> None:
        self.real = real
        self.embedded: list[str] = []
        self.calls = 0

    def chunk_and_encode(
        self, texts: Sequence[str], titles: Sequence[str], window: int, overlap: int
    ) -> list[tuple[list[Any], np.ndarray]]:
        self.calls += 1
        self.embedded.extend(texts)
        return self.real.chunk_and_encode(texts, titles, window, overlap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class CountingClassifier:
    """A real classifier, remembering every text it labelled."""

    def __init__(self, real: Classifier) -> None:
        self.real = real
        self.labelled: list[str] = []

    def classify(self, texts: Sequence[str]) -> list[Label]:
        self.labelled.extend(texts)
        return self.real.classify(texts)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def workspace(request: pytest.FixtureRequest, tmp_path: Path, tiny_albert_dir: Path) -> Iterator[Workspace]:
    config = AppConfig(
        store=store_config(request, tmp_path, request.param),
        ingest=IngestConfig(docs_per_transaction=3, progress=False),
        default_model=tiny_albert_dir,
    )
    opened = Workspace.open(config)
    yield opened
    opened.close()


def counting_encoder(workspace: Workspace, monkeypatch: pytest.MonkeyPatch, name: str) -> CountingEncoder:
    counting = CountingEncoder(workspace.catalog.encoder_for(workspace.catalog.get(name)))
    monkeypatch.setattr(workspace.catalog, "encoder_for", lambda info: counting)
    return counting


def stored_vectors(store: Store, info: CollectionInfo) -> tuple[list[int], bytes]:
    ids, vectors = next(store.iter_vectors(info.id))
    return ids.tolist(), vectors.tobytes()


def test_a_metadata_only_change_is_stored_without_running_the_encoder(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = workspace.catalog.create("c", SPEC)
    counting = counting_encoder(workspace, monkeypatch, "c")
    workspace.ingestor.ingest("c", DOCUMENTS)
    assert len(counting.embedded) == len(DOCUMENTS)
    before, head = stored_vectors(workspace.store, info), workspace.store.last_sequence(info.id)

    moved = [replace(d, metadata={"room": "attic", "n": d.metadata["n"]}) for d in DOCUMENTS[:3]]
    summary = workspace.ingestor.ingest("c", [*moved, DOCUMENTS[3]])

    assert (counting.calls, len(counting.embedded)) == (2, len(DOCUMENTS))  # the encoder was not called
    assert (summary.metadata_updated, summary.unchanged, summary.written) == (3, 1, 0)
    assert "0 written, 1 unchanged, 3 metadata updated, 0 rejected" in summary.outcomes()
    assert stored_vectors(workspace.store, info) == before  # same chunk ids, same bytes
    assert workspace.store.last_sequence(info.id) == head
    attic = MetadataFilter((Condition(field="room", equals="attic"),))
    chunks = workspace.store.chunks_by_id(workspace.store.chunk_ids_matching(info.id, attic))
    assert {c.external_id for c in chunks.values()} == {"d0", "d1", "d2"}
    (outcome,) = workspace.ingestor.upsert("c", [replace(DOCUMENTS[3], metadata={})])
    assert outcome.status is DocumentStatus.METADATA_UPDATED and outcome.sequence == head
    assert (
        workspace.ingestor.upsert("c", [replace(DOCUMENTS[3], metadata={})])[0].status
        is DocumentStatus.UNCHANGED
    )


@pytest.mark.parametrize(
    "edit", [{"text": "a heron waits by the river instead"}, {"title": "a heron"}], ids=["text", "title"]
)
def test_a_text_or_title_change_re_embeds(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, edit: dict[str, str]
) -> None:
    """The title is embedded before every window and indexed with every chunk's words: a change
    of it is a change of the vectors, never a metadata update."""
    info = workspace.catalog.create("c", SPEC)
    counting = counting_encoder(workspace, monkeypatch, "c")
    workspace.ingestor.upsert("c", DOCUMENTS[:1])
    before, _ = stored_vectors(workspace.store, info)

    changed = replace(DOCUMENTS[0], metadata={"room": "attic"}, **edit)
    (outcome,) = workspace.ingestor.upsert("c", [changed])

    assert outcome.status is DocumentStatus.WRITTEN
    assert counting.embedded == [DOCUMENTS[0].text, changed.text]
    after, _ = stored_vectors(workspace.store, info)
    assert min(after) > max(before)  # new chunks, new FAISS ids
    (stored,) = workspace.store.get_documents(info.id, ["d0"])
    assert (stored.title, stored.text, dict(stored.metadata)) == (
        changed.title,
        changed.text,
        {"room": "attic"},
    )


def test_a_collection_without_a_model_keeps_its_vectors_until_the_vector_changes(
    workspace: Workspace,
) -> None:
    info = workspace.catalog.create("own", CollectionSpec(model=NO_MODEL), 2)
    workspace.ingestor.upsert("own", [Document("a", "x", metadata={"k": 1}, vector=(3.0, 4.0))])
    before = stored_vectors(workspace.store, info)

    (same,) = workspace.ingestor.upsert("own", [Document("a", "x", metadata={"k": 2}, vector=(3.0, 4.0))])
    assert same.status is DocumentStatus.METADATA_UPDATED and stored_vectors(workspace.store, info) == before

    (moved,) = workspace.ingestor.upsert("own", [Document("a", "x", metadata={"k": 2}, vector=(0.0, 1.0))])
    assert moved.status is DocumentStatus.WRITTEN
    _, vectors = next(workspace.store.iter_vectors(info.id))
    np.testing.assert_allclose(vectors, [[0.0, 1.0]])


def test_a_metadata_update_keeps_the_label_and_does_not_run_the_classifier(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = build_tiny_classifier("albert-base-v2", tmp_path / "albert-cls")
    info = workspace.catalog.create("reviews", replace(SPEC, classifier=str(folder)))
    counting = CountingClassifier(workspace.catalog.classifier_for(info))  # type: ignore[arg-type]
    monkeypatch.setattr(workspace.catalog, "classifier_for", lambda info: counting)
    workspace.ingestor.upsert("reviews", DOCUMENTS[:2])
    labels = {
        s.external_id: (s.metadata["label"], s.metadata["label_score"])
        for s in workspace.store.get_documents(info.id, ["d0", "d1"])
    }
    assert len(counting.labelled) == 2

    # The caller's metadata never carries the label: it stays what the text was given.
    outcomes = workspace.ingestor.upsert(
        "reviews", [replace(d, metadata={"room": "attic"}) for d in DOCUMENTS[:2]]
    )

    assert [o.status for o in outcomes] == [DocumentStatus.METADATA_UPDATED] * 2
    assert len(counting.labelled) == 2
    for stored in workspace.store.get_documents(info.id, ["d0", "d1"]):
        assert dict(stored.metadata) == {
            "room": "attic",
            "label": labels[stored.external_id][0],
            "label_score": labels[stored.external_id][1],
        }
    (rewritten,) = workspace.ingestor.upsert("reviews", [replace(DOCUMENTS[0], text="a new review text")])
    assert rewritten.status is DocumentStatus.WRITTEN and counting.labelled[-1].endswith("a new review text")


def test_a_metadata_update_does_not_refit_the_whitening(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace.catalog.create("white", replace(SPEC, whitening=True))
    refits: list[str] = []
    refit = workspace.catalog.refit_whitening

    def counting_refit(info: CollectionInfo, *args: Any, **kwargs: Any) -> int | None:
        refits.append(info.name)
        return refit(info, *args, **kwargs)

    monkeypatch.setattr(workspace.catalog, "refit_whitening", counting_refit)
    workspace.ingestor.upsert("white", DOCUMENTS)
    assert refits == ["white"]

    workspace.ingestor.upsert("white", [replace(d, metadata={"room": "attic"}) for d in DOCUMENTS])

    assert refits == ["white"]


def test_a_metadata_update_racing_a_text_change_is_embedded_after_all(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer changes the text between the upsert's look at the store and its commit:
    the stored vectors no longer fit this version, so it is embedded and written whole."""
    info = workspace.catalog.create("c", SPEC)
    counting = counting_encoder(workspace, monkeypatch, "c")
    workspace.ingestor.upsert("c", DOCUMENTS[:1])
    other = replace(DOCUMENTS[0], text="another writer's text")
    write = workspace.store.write_documents
    raced: list[bool] = []

    def racing(collection_id: int, docs: Sequence[Any], updates: Sequence[Any] = ()) -> Any:
        if updates and not raced:
            raced.append(True)
            ((chunks, vectors),) = counting.real.chunk_and_encode([other.text], [other.title], 16, 4)
            write(collection_id, [EncodedDocument(other, other.content_hash(), tuple(chunks), vectors)])
        return write(collection_id, docs, updates)

    monkeypatch.setattr(workspace.store, "write_documents", racing)
    mine = replace(DOCUMENTS[0], metadata={"room": "attic"})
    (outcome,) = workspace.ingestor.upsert("c", [mine])

    assert raced and outcome.status is DocumentStatus.WRITTEN
    assert counting.embedded == [DOCUMENTS[0].text, mine.text]
    (stored,) = workspace.store.get_documents(info.id, ["d0"])
    assert (stored.text, dict(stored.metadata), stored.content_hash) == (
        mine.text,
        {"room": "attic"},
        mine.content_hash(),
    )
