"""Tiny stand-in models and evaluator for the trainers tests (the real builders and FID live
elsewhere)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from trainers.datasets import ImageData
from trainers.images import images_to_float


class TinyGenerator(nn.Module):
    """MLP generator: (N, latent_dim) -> (N, C, R, R) in [-1, 1]."""

    def __init__(
        self, *, latent_dim: int = 8, channels: int = 1, resolution: int = 8, hidden: int = 32
    ) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.shape = (channels, resolution, resolution)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels * resolution * resolution),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class TinyDiscriminator(nn.Module):
    """MLP discriminator returning (N,) raw scores; counts its forward calls."""

    def __init__(self, *, channels: int = 1, resolution: int = 8, hidden: int = 32) -> None:
        super().__init__()
        self.calls = 0
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * resolution * resolution, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x).squeeze(1)


def mean_image_distance(data: ImageData, *, n: int = 256) -> Callable[..., dict[str, float]]:
    """Stand-in for FID: squared distance between the mean generated and mean real image."""
    real_mean = images_to_float(data.images).mean(dim=0)

    @torch.no_grad()
    def evaluate(generator: nn.Module, *, seed: int) -> dict[str, float]:
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(n, generator.latent_dim, generator=rng)
        fake_mean = generator(z).mean(dim=0)
        return {"fid": float(((fake_mean - real_mean) ** 2).mean())}

    return evaluate


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy shared box thread contention makes
    them an order of magnitude slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_data() -> ImageData:
    """64 random 1-channel 8x8 images."""
    rng = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 1, 8, 8), generator=rng, dtype=torch.uint8)
    return ImageData(images=images, name="tiny")


@pytest.fixture
def make_models() -> Callable[..., tuple[TinyGenerator, TinyDiscriminator]]:
    def make(seed: int = 0, **kwargs: int) -> tuple[TinyGenerator, TinyDiscriminator]:
        torch.manual_seed(seed)
        g = TinyGenerator(**kwargs)
        d_kwargs = {k: v for k, v in kwargs.items() if k in ("channels", "resolution")}
        return g, TinyDiscriminator(**d_kwargs)

    return make


@pytest.fixture
def stand_in_evaluator() -> Callable[..., Callable[..., dict[str, float]]]:
    """Factory: ``stand_in_evaluator(data)`` gives a deterministic FID stand-in for ``data``."""
    return mean_image_distance
