"""Teacher vectors line up with the texts a (possibly shortened) distillation run trains on."""

from pathlib import Path

import numpy as np
import pytest

from albatross.training.distill import teacher_rows


def test_a_prefix_of_the_texts_takes_the_prefix_of_a_fully_labelled_cache():
    vectors = np.arange(10, dtype=np.float32).reshape(5, 2)
    rows = teacher_rows(vectors, 3, Path("teacher.npy"))
    np.testing.assert_array_equal(rows, vectors[:3])
    assert rows[-1].tolist() == [4.0, 5.0]  # the held-out tail is the prefix's, not the file's


def test_fewer_vectors_than_texts_is_an_error_naming_the_file():
    with pytest.raises(ValueError, match="teacher.npy holds 2 teacher vectors for 3 texts"):
        teacher_rows(np.zeros((2, 4), np.float32), 3, Path("teacher.npy"))
