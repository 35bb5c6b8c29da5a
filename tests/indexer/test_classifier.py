"""Classification at ingest: tiny random classifiers in the seed shapes label every document."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from indexer.classifier import Classifier
from indexer.config import AppConfig, EncoderConfig, IngestConfig, StoreConfig
from indexer.errors import InvalidCollectionSpec
from indexer.records import NO_MODEL, CollectionSpec, Condition, Document, MetadataFilter
from indexer.workspace import Workspace
from tests.fixtures.tiny_models import build_tiny_classifier

TEXTS = [
    "The kettle clicked off just as the rain started.",
    "She left her umbrella on the bus again.",
    "Our neighbour grows tomatoes and beans every summer. " * 60,  # several windows
]


@pytest.fixture(scope="module")
def imdb_shaped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_classifier("albert-base-v2", tmp_path_factory.mktemp("models") / "albert-cls")


@pytest.fixture(scope="module")
def bert_topics(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "bert-cls"
    return build_tiny_classifier("bert-base-cased", folder, ("noun.animal", "noun.food", "noun.artifact"))


@pytest.mark.parametrize("which", ["imdb_shaped", "bert_topics"])
def test_every_text_gets_one_of_the_checkpoints_labels_with_its_probability(
    which: str, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(which)
    classifier = Classifier.load(str(folder), EncoderConfig())
    labels = classifier.classify(TEXTS)
    assert len(labels) == len(TEXTS)
    assert all(label.name in classifier.labels for label in labels)
    assert all(1 / len(classifier.labels) <= label.score <= 1.0 for label in labels)
    (alone,) = classifier.classify(TEXTS[:1])  # a text's label does not depend on its batch-mates
    assert alone.name == labels[0].name and alone.score == pytest.approx(labels[0].score, abs=1e-5)


def test_a_long_text_is_classified_from_all_of_its_windows(imdb_shaped: Path) -> None:
    classifier = Classifier.load(str(imdb_shaped), EncoderConfig())
    start, end = "tomatoes and beans grow. " * 200, "the bus left in the rain. " * 200
    whole = classifier.classify([start + end])[0]
    halves = classifier.classify([start, end])
    # Equal halves weigh equally: the whole's probability of a label lies between the halves'.
    low, high = sorted(
        (h.score if h.name == whole.name else 1 - h.score) for h in halves
    )
    assert low - 0.02 <= whole.score <= high + 0.02


def test_a_base_model_without_a_classification_head_is_refused(tiny_albert_dir: Path) -> None:
    with pytest.raises(InvalidCollectionSpec, match="ForSequenceClassification"):
        Classifier.load(str(tiny_albert_dir), EncoderConfig())


@pytest.fixture
def workspace(tiny_albert_dir: Path, tmp_path: Path) -> Iterator[Workspace]:
    config = AppConfig(
        store=StoreConfig(data_dir=tmp_path),
        ingest=IngestConfig(docs_per_transaction=2, progress=False),
        default_model=tiny_albert_dir,
    )
    opened = Workspace.open(config)
    yield opened
    opened.close()


def test_ingest_writes_label_and_score_filterable_like_any_field(workspace: Workspace, imdb_shaped: Path) -> None:
    spec = CollectionSpec(model="", max_length=64, window=32, overlap=8, classifier=str(imdb_shaped))
    info = workspace.catalog.create("reviews", spec)
    assert workspace.catalog.get("reviews").spec.classifier == str(imdb_shaped) and info.classifier_revision
    documents = [Document(f"d{i}", text, metadata={"n": i}) for i, text in enumerate(TEXTS)]
    summary = workspace.ingestor.ingest("reviews", documents)
    assert summary.written == 3
    stored = workspace.store.get_documents(info.id, [d.external_id for d in documents])
    expected = Classifier.load(str(imdb_shaped), EncoderConfig()).classify(TEXTS)
    assert [(s.metadata["label"], s.metadata["n"]) for s in stored] == [(e.name, i) for i, e in enumerate(expected)]
    assert all(s.metadata["label_score"] == pytest.approx(e.score) for s, e in zip(stored, expected, strict=True))
    for label in {e.name for e in expected}:
        only = MetadataFilter((Condition(field="label", equals=label),))
        matching = workspace.store.chunk_ids_matching(info.id, only)
        chunks = workspace.store.chunks_by_id(matching)
        assert {c.external_id for c in chunks.values()} == {
            f"d{i}" for i, e in enumerate(expected) if e.name == label
        }
    assert workspace.ingestor.ingest("reviews", documents).unchanged == 3  # labels are not a change


def test_label_fields_are_configurable_and_vectors_only_collections_are_labelled_too(
    workspace: Workspace, bert_topics: Path
) -> None:
    spec = CollectionSpec(model=NO_MODEL, classifier=str(bert_topics), label_field="topic", score_field="p")
    info = workspace.catalog.create("topics", spec, 2)
    workspace.ingestor.upsert("topics", [Document("a", TEXTS[0], vector=(1.0, 0.0))])
    (stored,) = workspace.store.get_documents(info.id, ["a"])
    assert stored.metadata["topic"] in {"noun.animal", "noun.food", "noun.artifact"}
    assert 0 < stored.metadata["p"] <= 1
    with pytest.raises(InvalidCollectionSpec, match="two fields"):
        workspace.catalog.create("bad", CollectionSpec(model="", classifier=str(bert_topics), score_field="label"))
