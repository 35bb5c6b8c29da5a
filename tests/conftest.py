"""Session-wide fixtures: a tiny random ALBERT built once, and a builder for seed families."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures import tiny_models

# PostgreSQL and store fixtures live beside this file, one concern per module.
pytest_plugins = ["tests.conftest_db"]


@pytest.fixture(scope="session")
def tiny_albert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ALBERT in Hugging Face layout (config.json, model.safetensors, spiece.model,
    tokenizer_config.json): SentencePiece trained on tests/fixtures/sample_text.txt, seeded weights.
    """
    return tiny_models.build_tiny_albert(tmp_path_factory.mktemp("models") / "tiny-albert")


@pytest.fixture(scope="session")
def build_tiny_checkpoint() -> Callable[[str, Path], Path]:
    """``build_tiny_checkpoint(family, folder) -> folder``: a seed family's shape, shrunk for speed
    (see ``tiny_models.shrunk_fields``)."""
    return tiny_models.build_tiny_checkpoint
