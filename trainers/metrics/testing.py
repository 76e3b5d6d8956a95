"""Offline stand-ins for the real feature networks, for tests and benchmarks.

The real Inception weights cannot be downloaded in CI, so reference comparisons use a weights file
with the *real* structure (every key and shape of torch-fidelity's ``FeatureExtractorInceptionV3``)
filled with seeded random values. Given the same file, our extractor and torch-fidelity must agree;
the values themselves mean nothing.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from trainers.metrics._hashing import file_sha256

__all__ = ["write_random_inception_weights", "write_tiny_torchscript_extractor", "file_sha256"]


def random_inception_state_dict(*, seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the real Inception-v3 (FID) structure and variance-preserving random values.

    Conv weights are He-normal (``std = sqrt(2 / fan_in)``), so activations keep their scale through the
    ReLU stack; BatchNorm layers are close to the identity (small seeded jitter, so BN folding is
    actually exercised); the final ``fc`` is scaled so logits have a std of a few units and the Inception Score
    is neither 1 nor saturated.
    """
    from trainers.metrics._inception import build_unloaded_inception

    # Only the *shapes* are taken from torch-fidelity's module; no weights are loaded (meta device).
    with torch.device("meta"):
        skeleton = build_unloaded_inception(("2048",))
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, ref in skeleton.state_dict().items():
        shape = tuple(ref.shape)
        if key.endswith("conv.weight"):
            fan_in = math.prod(shape[1:])
            value = torch.randn(shape, generator=gen) * math.sqrt(2.0 / fan_in)
        elif key.endswith("bn.weight"):
            value = 1.0 + 0.1 * (torch.rand(shape, generator=gen) - 0.5)
        elif key.endswith("bn.bias"):
            value = 0.05 * torch.randn(shape, generator=gen)
        elif key.endswith("bn.running_mean"):
            value = 0.05 * torch.randn(shape, generator=gen)
        elif key.endswith("bn.running_var"):
            value = 1.0 + 0.2 * (torch.rand(shape, generator=gen) - 0.5)
        elif key.endswith("num_batches_tracked"):
            value = torch.zeros(shape, dtype=torch.long)
        elif key == "fc.weight":
            value = torch.randn(shape, generator=gen) * math.sqrt(32.0 / shape[1])
        elif key == "fc.bias":
            value = 0.1 * torch.randn(shape, generator=gen)
        else:  # pragma: no cover - torch-fidelity changed its structure
            raise RuntimeError(f"unexpected Inception parameter {key!r} with shape {shape}")
        out[key] = value.to(ref.dtype).contiguous()
    return out


def write_random_inception_weights(path: str | os.PathLike[str], *, seed: int = 0) -> str:
    """Write a random Inception-v3 (FID) state dict to ``path`` (plain ``torch.save``) and return its sha256."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_inception_state_dict(seed=seed), target)
    return file_sha256(target)


class _TinyExtractor(nn.Module):
    """uint8 or float images (N, 3, H, W) -> (N, dim) features: two strided convs and a global pool."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, dim, kernel_size=3, stride=2, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.to(torch.float32) / 127.5 - 1.0
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return x.mean(dim=(2, 3))


def write_tiny_torchscript_extractor(path: str | os.PathLike[str], *, dim: int = 16, seed: int = 0) -> str:
    """Save a tiny scripted CNN feature extractor (for fast tests) to ``path``; return its sha256."""
    torch.manual_seed(seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*torch.jit")
        module = torch.jit.script(_TinyExtractor(dim).eval())
        torch.jit.save(module, str(target))
    return file_sha256(target)
