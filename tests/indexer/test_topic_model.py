"""The shipped WordNet topic classifier: assembled offline from the default encoder and its head,
it is accepted by ``--classifier`` ingestion, labels plain glosses sensibly and computes exactly
what the head was trained and measured on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from albatross.training.topic import LEXFILES, cls_vectors, head_logits
from indexer.checkpoints import model_revision
from indexer.classifier import Classifier
from indexer.config import EncoderConfig
from indexer.errors import InvalidArgument, ModelNotFound
from indexer.topic_model import HEAD_FILE, TOPIC_HEAD_DIR, build_topic_classifier, head_labels

# Written for this test, not taken from WordNet: title, newline, gloss, as ingest classifies them.
FOOD = [
    "pancake\nA flat cake made from batter and fried on a griddle, eaten with maple syrup.",
    "lentil soup\nA thick soup of lentils, onions and carrots simmered in stock.",
    "cheddar\nA hard yellow cheese made from cow's milk and aged for months.",
]
ANIMAL = [
    "wolf\nA wild carnivorous mammal of the dog family that hunts in packs.",
    "sparrow\nA small brown songbird that lives near houses and eats seeds.",
    "tiger\nA large wild cat of Asian forests with an orange coat and black stripes.",
]


@pytest.fixture(scope="module")
def topic_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_topic_classifier(tmp_path_factory.mktemp("models") / "wordnet-topic")


def test_the_shipped_head_is_small_and_names_its_labels() -> None:
    assert (TOPIC_HEAD_DIR / HEAD_FILE).stat().st_size < 400_000
    labels, encoder_revision = head_labels()
    assert labels == list(LEXFILES.values()) and {"food", "animal", "plant"} <= set(labels)
    assert len(encoder_revision) == 16


def test_ingestion_accepts_the_built_folder_and_it_labels_food_and_animals(topic_folder: Path) -> None:
    classifier = Classifier.load(str(topic_folder), EncoderConfig())
    assert classifier.labels == list(LEXFILES.values())
    labels = classifier.classify(FOOD + ANIMAL)
    assert [label.name for label in labels] == ["food"] * len(FOOD) + ["animal"] * len(ANIMAL)


def test_the_assembled_model_computes_what_the_head_was_trained_on(topic_folder: Path) -> None:
    texts = FOOD + ANIMAL + ["fern\nA flowerless plant that reproduces by spores.", "a day in June"]
    logits = head_logits(load_file(str(TOPIC_HEAD_DIR / HEAD_FILE)), cls_vectors(texts))
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = Classifier.load(str(topic_folder), EncoderConfig()).classify(texts)
    names = list(LEXFILES.values())
    assert [label.name for label in labels] == [names[i] for i in probabilities.argmax(axis=1)]
    assert [label.score for label in labels] == pytest.approx(probabilities.max(axis=1).tolist(), abs=1e-5)


def test_a_rebuild_has_the_same_revision_so_collections_keep_their_classifier(
    topic_folder: Path, tmp_path: Path
) -> None:
    assert model_revision(build_topic_classifier(tmp_path / "again")) == model_revision(topic_folder)


def test_a_non_empty_out_or_another_encoder_is_refused(tmp_path: Path, tiny_albert_dir: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(InvalidArgument, match="not an empty folder"):
        build_topic_classifier(tmp_path / "taken")
    with pytest.raises(ModelNotFound, match="trained on encoder revision"):
        build_topic_classifier(tmp_path / "other", encoder_dir=tiny_albert_dir)
    assert not (tmp_path / "other").exists()
