"""Fréchet distance between Gaussians (float64), KID and Inception Score.

Relation to other implementations
---------------------------------
* **torch-fidelity / original TF (TTUR) code:** same feature network, same TF1-compatible bilinear
  resize to 299x299, same statistics. Our FID agrees with ``torch_fidelity.calculate_metrics(fid=True)``
  given the same weights file to better than 1e-3 relative (tested); the residual comes from float32
  rounding (we fold BatchNorm into the convolutions) and from computing ``tr sqrt(S1 S2)`` with a
  symmetric eigen-decomposition instead of a general one.
* **pytorch-fid:** uses the same weights but resizes with ``torch.nn.functional.interpolate``
  (bilinear, PyTorch semantics) instead of the TF1 resize, so its values differ slightly (typically
  in the first or second decimal for CIFAR-10-sized FIDs); ours are the TF/torch-fidelity numbers.

The matrix square root: for any factor ``S1 = F.T @ F``, ``tr sqrt(S1 S2) = tr sqrt(F S2 F.T)`` and
``F S2 F.T`` is symmetric PSD, so its eigenvalues come from ``eigvalsh`` (stable, real; tiny negative
round-off is clipped to zero) instead of torch-fidelity's general ``eigvals(S1 @ S2)``. F is either
``S1^(1/2)`` or, with fewer samples than dimensions, the centred features themselves (then no
decomposition of S1 is needed at all). The reference factor depends on the real data only, so
:class:`ReferenceStats` computes it once and each evaluation pays for one symmetric eigen-solve (or
one thin SVD when it has fewer fake samples than feature dimensions).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "covariance_factor",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_statistics",
    "inception_score",
    "kernel_inception_distance",
    "sqrtm_psd",
    "thin_factor",
    "trace_sqrt_product",
]


def _as_float64(features: torch.Tensor | np.ndarray) -> np.ndarray:
    x = np.asarray(features.numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features for a covariance, got shape {x.shape}")
    return x


def gaussian_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (N - 1) of (N, D) features, in float64."""
    x = _as_float64(features)
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, centred.T @ centred / (x.shape[0] - 1)


def sqrtm_psd(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues clipped)."""
    sym = np.asarray(sigma, dtype=np.float64)
    eigenvalues, vectors = np.linalg.eigh((sym + sym.T) / 2)
    return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def covariance_factor(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu, sigma, F)`` with ``sigma = F.T @ F`` and F as thin as possible.

    With fewer samples than dimensions F is the centred features / sqrt(N - 1) (N x D, no
    decomposition needed); otherwise F is the symmetric square root of sigma (D x D).
    """
    x = _as_float64(features)
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    if x.shape[0] <= x.shape[1]:
        return mu, sigma, centred / np.sqrt(x.shape[0] - 1)
    return mu, sigma, sqrtm_psd(sigma)


def trace_sqrt_product(factor1: np.ndarray, sigma2: np.ndarray, *, factor2: np.ndarray | None = None) -> float:
    """``tr sqrt(S1 S2)`` for ``S1 = F1.T @ F1``: the nonzero eigenvalues of S1 S2 are those of the
    symmetric PSD ``F1 S2 F1.T``; when ``S2 = F2.T @ F2`` is thinner, they are the squared singular
    values of ``F1 @ F2.T``. Both are exact identities, computed with symmetric/SVD solvers.
    """
    if factor2 is not None and factor2.shape[0] < factor1.shape[0]:
        return float(np.linalg.svd(factor1 @ factor2.T, compute_uv=False).sum())
    middle = factor1 @ sigma2 @ factor1.T
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def _check_shapes(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> None:
    if mu1.ndim != 1 or mu1.shape != mu2.shape or s1.shape != (mu1.size, mu1.size) or s2.shape != s1.shape:
        raise ValueError(
            f"inconsistent statistics: mu1 {mu1.shape}, sigma1 {s1.shape}, mu2 {mu2.shape}, sigma2 {s2.shape}"
        )


def frechet_distance(
    mu1: np.ndarray,
    sigma1: np.ndarray,
    mu2: np.ndarray,
    sigma2: np.ndarray,
    *,
    factor1: np.ndarray | None = None,
    factor2: np.ndarray | None = None,
) -> float:
    """``||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)`` in float64.

    ``factor1``/``factor2`` (any F with ``S = F.T @ F``, e.g. from :func:`covariance_factor`) may be
    passed to skip the square root of ``sigma1`` or to use a thin factor of ``sigma2``.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    s1, s2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    _check_shapes(mu1, s1, mu2, s2)
    root = sqrtm_psd(s1) if factor1 is None else np.asarray(factor1, dtype=np.float64)
    tr_covmean = trace_sqrt_product(root, s2, factor2=factor2)
    diff = mu1 - mu2
    value = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    # Round-off can push identical distributions a hair below zero.
    return max(value, 0.0)


def thin_factor(features: torch.Tensor | np.ndarray) -> np.ndarray | None:
    """Centred features / sqrt(N - 1) (so that sigma = F.T @ F) when N <= D, else None."""
    x = _as_float64(features)
    if x.shape[0] > x.shape[1]:
        return None
    return (x - x.mean(axis=0)) / np.sqrt(x.shape[0] - 1)


def frechet_distance_from_features(
    features1: torch.Tensor | np.ndarray, features2: torch.Tensor | np.ndarray
) -> float:
    """FID between two (N, D) feature sets; uses thin factors (no D x D square root) when N < D."""
    mu1, s1 = gaussian_statistics(features1)
    mu2, s2 = gaussian_statistics(features2)
    f1, f2 = thin_factor(features1), thin_factor(features2)
    if f1 is None and f2 is not None:
        # FID is symmetric: put the thin side first so no square root is needed.
        mu1, s1, f1, mu2, s2, f2 = mu2, s2, f2, mu1, s1, f1
    return frechet_distance(mu1, s1, mu2, s2, factor1=f1, factor2=f2)


def _polynomial_mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    # KID kernel k(a, b) = (a.b / D + 1)^3 (Binkowski et al.; torch-fidelity's defaults). The dot
    # products are float32 like torch-fidelity's (they dominate the cost); the kernel values and the
    # sums, where the unbiased estimator cancels large terms, are float64.
    dim = x.shape[1]
    k_xx = (torch.mm(x, x.T).double() / dim + 1.0) ** 3
    k_yy = (torch.mm(y, y.T).double() / dim + 1.0) ** 3
    k_xy = (torch.mm(x, y.T).double() / dim + 1.0) ** 3
    m = x.shape[0]
    sum_xx = k_xx.sum() - k_xx.diagonal().sum()
    sum_yy = k_yy.sum() - k_yy.diagonal().sum()
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def _float32_tensor(values: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.to(torch.float32)
    # A copy: cached reference features are loaded read-only, and torch.as_tensor on a read-only
    # array warns (once per process, so once per trial on every worker).
    return torch.from_numpy(np.array(values, dtype=np.float32))


def kernel_inception_distance(
    real: torch.Tensor | np.ndarray,
    fake: torch.Tensor | np.ndarray,
    *,
    subset_size: int | None = None,
    subsets: int = 100,
    seed: int = 2020,
) -> tuple[float, float]:
    """Unbiased polynomial-kernel MMD^2 averaged over random subsets: ``(mean, std)``.

    Subsets are drawn exactly like torch-fidelity (``RandomState(seed)``, without replacement, real
    then fake), with ``subset_size = min(1000, n_real, n_fake)`` unless given.
    """
    x_all = _float32_tensor(real)
    y_all = _float32_tensor(fake)
    size = min(1000, len(x_all), len(y_all)) if subset_size is None else subset_size
    if size < 2 or size > min(len(x_all), len(y_all)):
        raise ValueError(
            f"KID subset size must be in [2, min(n_real, n_fake)] = [2, {min(len(x_all), len(y_all))}], got {size}"
        )
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = x_all[torch.from_numpy(rng.choice(len(x_all), size, replace=False))]
        y = y_all[torch.from_numpy(rng.choice(len(y_all), size, replace=False))]
        values[i] = _polynomial_mmd2_unbiased(x, y)
    return float(values.mean()), float(values.std())


def inception_score(
    logits: torch.Tensor | np.ndarray, *, splits: int = 10, shuffle: bool = True, seed: int = 2020
) -> tuple[float, float]:
    """Inception Score ``exp(E KL(p(y|x) || p(y)))`` over ``splits`` chunks: ``(mean, std)``.

    Same shuffling and chunking as torch-fidelity (which uses the unbiased logits, no fc bias).
    """
    x = torch.as_tensor(np.asarray(logits) if not isinstance(logits, torch.Tensor) else logits).double()
    n = x.shape[0]
    if x.dim() != 2 or n < splits:
        raise ValueError(f"need (N >= splits={splits}, K) logits for the Inception Score, got {tuple(x.shape)}")
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    p = x.softmax(dim=1)
    log_p = x.log_softmax(dim=1)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        p_chunk, log_p_chunk = p[lo:hi], log_p[lo:hi]
        q = p_chunk.mean(dim=0, keepdim=True)
        scores.append((p_chunk * (log_p_chunk - q.log())).sum(dim=1).mean().exp().item())
    return float(np.mean(scores)), float(np.std(scores))
