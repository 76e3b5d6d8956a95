"""Shared, session-scoped fixtures: one random-weights file, one built Inception, one tiny extractor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.metrics import InceptionFeatureExtractor, TorchScriptFeatureExtractor, WeightsInfo
from trainers.metrics import resolve_inception_weights
from trainers.metrics.testing import write_random_inception_weights, write_tiny_torchscript_extractor


@pytest.fixture(scope="session")
def random_weights_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    write_random_inception_weights(path, seed=0)
    return path


@pytest.fixture(scope="session")
def random_weights(random_weights_path: Path) -> WeightsInfo:
    return resolve_inception_weights(random_weights_path, download=False, allow_unverified=True)


@pytest.fixture(scope="session")
def inception(random_weights: WeightsInfo) -> InceptionFeatureExtractor:
    return InceptionFeatureExtractor(random_weights, device="cpu")


@pytest.fixture(scope="session")
def tiny_extractor_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    write_tiny_torchscript_extractor(path, dim=16, seed=0)
    return path


@pytest.fixture(scope="session")
def tiny_extractor(tiny_extractor_path: Path) -> TorchScriptFeatureExtractor:
    return TorchScriptFeatureExtractor(tiny_extractor_path, device="cpu")


def digits_rgb(count: int, *, offset: int = 0, size: int = 32) -> torch.Tensor:
    """sklearn's 8x8 digits, upscaled (nearest) to ``size`` and repeated to RGB: uint8 (N, 3, S, S)."""
    from sklearn.datasets import load_digits

    raw = load_digits().images[offset : offset + count]  # values 0..16
    scaled = np.round(raw * (255.0 / 16.0)).astype(np.uint8)
    factor = size // 8
    big = scaled.repeat(factor, axis=1).repeat(factor, axis=2)
    return torch.from_numpy(big).unsqueeze(1).repeat(1, 3, 1, 1).contiguous()


def noise_rgb(count: int, *, seed: int, size: int = 32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, size, size), generator=gen, dtype=torch.uint8)


@pytest.fixture(scope="session")
def image_sets() -> tuple[torch.Tensor, torch.Tensor]:
    """Two different 24-image sets: digits, and other digits with a coloured noise overlay."""
    a = digits_rgb(24, offset=0)
    b = digits_rgb(24, offset=24)
    noise = noise_rgb(24, seed=1)
    b = ((b.int() + noise.int()) // 2).to(torch.uint8)
    return a, b


@pytest.fixture(scope="session")
def inception_features(
    inception: InceptionFeatureExtractor, image_sets: tuple[torch.Tensor, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Our Inception features of both image sets, computed once."""
    from trainers.metrics import extract_features

    a, b = image_sets
    return extract_features(inception, a, batch_size=24), extract_features(inception, b, batch_size=24)
