"""Our FID/KID/IS against torch-fidelity on the same images and the same (random) weights file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch_fidelity
from torch.utils.data import Dataset

from trainers.metrics import (
    InceptionFeatureExtractor,
    WeightsInfo,
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
)
from trainers.metrics._resize import resize_tf1_bilinear


class _TensorImages(Dataset):  # type: ignore[type-arg]
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


def test_pool_features_neither_vanish_nor_explode(inception_features: tuple[dict, dict]) -> None:
    pool, logits = inception_features[0]["pool"], inception_features[0]["logits"]
    assert pool.shape == (24, 2048) and logits.shape == (24, 1008)
    assert torch.isfinite(pool).all() and torch.isfinite(logits).all()
    assert 0.05 < pool.std().item() < 20.0
    # Different images give different features (the network is not degenerate).
    assert (pool[0] - pool[1]).abs().max().item() > 1e-3


def test_fid_kid_is_match_torch_fidelity(
    inception_features: tuple[dict, dict],
    random_weights_path: Path,
    image_sets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    a, b = image_sets
    reference = torch_fidelity.calculate_metrics(
        input1=_TensorImages(a),
        input2=_TensorImages(b),
        fid=True,
        kid=True,
        isc=True,
        kid_subset_size=a.shape[0],
        feature_extractor_weights_path=str(random_weights_path),
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
        batch_size=24,
    )
    fa, fb = inception_features
    fid = frechet_distance_from_features(fa["pool"], fb["pool"])
    # The general (square-root) path agrees with the thin-factor path.
    fid_general = frechet_distance(*gaussian_statistics(fa["pool"]), *gaussian_statistics(fb["pool"]))
    kid_mean, _ = kernel_inception_distance(fa["pool"], fb["pool"])
    is_mean, _ = inception_score(fa["logits"])

    expected_fid = reference["frechet_inception_distance"]
    assert expected_fid > 1.0  # the two sets really differ
    assert fid == pytest.approx(expected_fid, rel=1e-3)
    assert fid_general == pytest.approx(expected_fid, rel=1e-3)
    assert kid_mean == pytest.approx(reference["kernel_inception_distance_mean"], rel=1e-3)
    assert is_mean == pytest.approx(reference["inception_score_mean"], rel=1e-4)
    assert is_mean > 1.01  # logits are informative enough for IS to move


def test_fast_path_matches_torch_fidelity_forward(
    random_weights: WeightsInfo,
    inception: InceptionFeatureExtractor,
    image_sets: tuple[torch.Tensor, torch.Tensor],
) -> None:
    slow = InceptionFeatureExtractor(random_weights, device="cpu", fast=False)
    images = image_sets[1][:3]
    ref, got = slow.features(images), inception.features(images)
    scale = ref["pool"].abs().max()
    assert (got["pool"] - ref["pool"]).abs().max() <= 1e-4 * scale
    assert (got["logits"] - ref["logits"]).abs().max() <= 1e-4 * ref["logits"].abs().max()


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 3, 28, 28), (1, 3, 64, 48), (1, 3, 300, 310)])
def test_resize_is_bit_identical_to_torch_fidelity(shape: tuple[int, int, int, int]) -> None:
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    x = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0)).float()
    expected = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
    assert torch.equal(resize_tf1_bilinear(x, 299), expected)
