"""Whitening: decorrelates a seeded sample, reduces dimension, survives a bytes round trip."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.errors import InvalidArgument
from indexer.whitening import Whitening, fit_whitening, shrunk_covariance


@pytest.fixture(scope="module")
def correlated() -> np.ndarray:
    """float32 (500, 8): a seeded sample with a non-zero mean and strongly correlated axes."""
    rng = np.random.default_rng(7)
    mixing = rng.normal(size=(8, 8)) * np.linspace(0.1, 5.0, 8)
    return (rng.normal(size=(500, 8)) @ mixing + 3.0).astype(np.float32)


def test_whitened_sample_is_centred_and_decorrelated_with_unit_variance_on_top(correlated):
    """Shrinkage (see shrunk_covariance) stops the weakest directions short of unit variance
    instead of amplifying their noise; the strong ones are whitened to ~1."""
    whitened = fit_whitening(correlated).apply(correlated)
    assert whitened.dtype == np.float32 and whitened.shape == (500, 8)
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-4)
    covariance = np.cov(whitened.astype(np.float64), rowvar=False, bias=True)
    np.testing.assert_allclose(covariance - np.diag(np.diag(covariance)), 0.0, atol=1e-3)
    variances = np.diag(covariance)  # in order of decreasing raw variance
    assert (variances <= 1.05).all() and (variances[:4] >= 0.95).all()


def test_reduced_dimension_keeps_the_directions_of_largest_variance(correlated):
    full = fit_whitening(correlated)
    reduced = fit_whitening(correlated, dim=3)
    assert (reduced.input_dimension, reduced.output_dimension) == (8, 3)
    np.testing.assert_allclose(reduced.apply(correlated), full.apply(correlated)[:, :3], atol=1e-4)


def test_apply_does_not_modify_its_input(correlated):
    before = correlated.copy()
    fit_whitening(correlated).apply(correlated)
    assert np.array_equal(correlated, before)


def test_a_sample_smaller_than_the_dimension_stays_finite():
    sample = np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)
    assert np.isfinite(fit_whitening(sample).apply(sample)).all()


def test_bytes_round_trip_is_exact(correlated):
    whitening = fit_whitening(correlated, dim=5)
    restored = Whitening.from_bytes(whitening.to_bytes())
    assert np.array_equal(restored.mean, whitening.mean)
    assert np.array_equal(restored.matrix, whitening.matrix)
    assert np.array_equal(restored.apply(correlated), whitening.apply(correlated))


@pytest.mark.parametrize(
    "blob",
    [b"", b"nope" + bytes(20), fit_whitening(np.eye(4, dtype=np.float32)).to_bytes()[:-4]],
    ids=["empty", "foreign", "truncated"],
)
def test_blobs_it_did_not_write_are_rejected(blob):
    with pytest.raises(InvalidArgument):
        Whitening.from_bytes(blob)


@pytest.mark.parametrize(
    ("vectors", "dim"),
    [
        (np.zeros(8, dtype=np.float32), None),
        (np.zeros((1, 8), dtype=np.float32), None),
        (np.ones((4, 8), dtype=np.int64), None),
        (np.full((4, 8), np.nan, dtype=np.float32), None),
        (np.ones((4, 8), dtype=np.float32), 0),
        (np.ones((4, 8), dtype=np.float32), 9),
    ],
    ids=["1-d", "one-row", "integers", "nan", "dim-0", "dim-too-large"],
)
def test_fit_rejects_bad_input(vectors, dim):
    with pytest.raises(InvalidArgument):
        fit_whitening(vectors, dim)


def test_apply_rejects_vectors_of_another_dimension(correlated):
    with pytest.raises(InvalidArgument, match="dimension 4"):
        fit_whitening(correlated).apply(np.zeros((2, 4), dtype=np.float32))


def test_a_small_sample_is_shrunk_towards_a_well_conditioned_covariance():
    """Fitted on fewer vectors than dimensions (a collection's first batch), the sample
    covariance is singular: the shrunk estimate stays well conditioned and closer to the truth."""
    rng = np.random.default_rng(3)
    d = 32
    mixing = rng.normal(size=(d, d)) * np.linspace(3.0, 0.1, d)
    truth = mixing @ mixing.T
    centred = rng.normal(size=(20, d)) @ mixing.T
    centred -= centred.mean(axis=0)
    plain = centred.T @ centred / len(centred)
    shrunk = shrunk_covariance(centred)
    assert np.linalg.cond(plain) > 1e12 and np.linalg.cond(shrunk) < 1e3
    assert np.linalg.norm(shrunk - truth) < np.linalg.norm(plain - truth)


def test_a_large_sample_is_barely_shrunk(correlated):
    centred = correlated.astype(np.float64) - correlated.mean(axis=0)
    plain = centred.T @ centred / len(centred)
    np.testing.assert_allclose(shrunk_covariance(centred), plain, rtol=0.05, atol=0.05 * np.abs(plain).max())
