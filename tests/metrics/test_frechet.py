"""Fréchet distance, KID and IS against closed forms and independent implementations."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from trainers.metrics import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
)


def _random_psd(rng: np.random.Generator, dim: int, rank: int | None = None) -> np.ndarray:
    basis = rng.standard_normal((dim, rank or dim))
    return basis @ basis.T / dim


def test_identical_statistics_give_zero() -> None:
    rng = np.random.default_rng(0)
    mu, sigma = rng.standard_normal(12), _random_psd(rng, 12)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)


def test_diagonal_covariances_closed_form() -> None:
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.standard_normal(20), rng.standard_normal(20)
    v1, v2 = rng.uniform(0.1, 3.0, 20), rng.uniform(0.1, 3.0, 20)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_translated_gaussians_differ_by_squared_shift() -> None:
    rng = np.random.default_rng(2)
    mu, sigma, shift = rng.standard_normal(16), _random_psd(rng, 16), rng.standard_normal(16)
    assert frechet_distance(mu, sigma, mu + shift, sigma) == pytest.approx(float(shift @ shift), rel=1e-8)


@pytest.mark.parametrize("rank", [None, 5])
def test_matches_scipy_sqrtm(rank: int | None) -> None:
    rng = np.random.default_rng(3)
    for _ in range(3):
        mu1, mu2 = rng.standard_normal(30), rng.standard_normal(30)
        s1, s2 = _random_psd(rng, 30), _random_psd(rng, 30, rank)
        covmean = scipy.linalg.sqrtm(s1 @ s2).real
        expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
        assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("n1", "n2"), [(6, 9), (50, 7), (9, 50), (60, 45)])
def test_from_features_equals_statistics_path(n1: int, n2: int) -> None:
    """Thin factors (N < D) and the square-root path are the same number."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n1, 24))
    y = 1.5 * rng.standard_normal((n2, 24)) + 0.3
    expected = frechet_distance(*gaussian_statistics(x), *gaussian_statistics(y))
    # sqrt of a rank-deficient sigma amplifies round-off (~sqrt(eps)); the thin path avoids it.
    assert frechet_distance_from_features(x, y) == pytest.approx(expected, rel=1e-6)


def test_statistics_are_float64_and_unbiased() -> None:
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    mu, sigma = gaussian_statistics(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(x.numpy().astype(np.float64), rowvar=False), rtol=1e-12)


def test_kid_matches_torch_fidelity_and_detects_shift() -> None:
    from torch_fidelity.metric_kid import kid_features_to_metric

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(60, 32, generator=gen)
    fake = torch.randn(50, 32, generator=gen) + 0.5
    expected = kid_features_to_metric(real, fake, kid_subset_size=40, kid_subsets=20, verbose=False, rng_seed=2020)
    mean, std = kernel_inception_distance(real, fake, subset_size=40, subsets=20)
    assert mean == pytest.approx(expected["kernel_inception_distance_mean"], rel=1e-5)
    assert std == pytest.approx(expected["kernel_inception_distance_std"], rel=1e-4)
    same, _ = kernel_inception_distance(real[:30], real[30:], subsets=20)
    assert abs(same) < mean / 5


def test_kid_default_subset_size_is_min_of_counts() -> None:
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(12, 8, generator=gen), torch.randn(9, 8, generator=gen)
    # Subset size min(1000, 12, 9) = 9: fake subsets are then all of fake, in shuffled order.
    assert kernel_inception_distance(real, fake, subsets=3) == kernel_inception_distance(
        real, fake, subset_size=9, subsets=3
    )
    with pytest.raises(ValueError, match="subset size"):
        kernel_inception_distance(real, fake, subset_size=10)


def test_inception_score_matches_torch_fidelity_and_bounds() -> None:
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = 3 * torch.randn(40, 10, generator=torch.Generator().manual_seed(0))
    expected = isc_features_to_metric(logits)
    mean, std = inception_score(logits)
    assert mean == pytest.approx(expected["inception_score_mean"], rel=1e-12)
    assert std == pytest.approx(expected["inception_score_std"], rel=1e-10)
    # Identical predictions for every sample -> IS = 1; confident and uniform over classes -> ~K.
    assert inception_score(torch.zeros(20, 10))[0] == pytest.approx(1.0)
    confident = 100 * torch.eye(10).repeat(4, 1)
    assert inception_score(confident, shuffle=False, splits=4)[0] == pytest.approx(10.0, rel=1e-6)



def test_kid_of_read_only_arrays_gives_the_same_value_without_a_warning() -> None:
    # Cached reference features are loaded read-only; torch warned on every trial's first KID.
    # In a subprocess: torch warns about an array only once per process.
    code = """
import warnings
import numpy as np
from trainers.metrics import kernel_inception_distance
rng = np.random.default_rng(3)
real, fake = rng.normal(size=(60, 8)), rng.normal(0.3, 1.0, size=(60, 8))
expected = kernel_inception_distance(real.copy(), fake, subsets=5)
real.setflags(write=False)
with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert kernel_inception_distance(real, fake, subsets=5) == expected
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
