"""FIDEvaluator: generator -> uint8 -> features in batches, against cached reference statistics."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gannas.errors import GannasError, WeightsError
from trainers.metrics import (
    FIDEvaluator,
    FIDProtocol,
    InceptionFeatureExtractor,
    ReferenceStats,
    TorchScriptFeatureExtractor,
    extract_features,
    frechet_distance_from_features,
    generator_output_to_uint8,
    kernel_inception_distance,
    reference_statistics,
)


@dataclass
class _Data:
    images: torch.Tensor
    name: str


class _TinyGenerator(nn.Module):
    def __init__(self, channels: int = 3, resolution: int = 16, latent_dim: int = 8) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.shape = (channels, resolution, resolution)
        self.net = nn.Sequential(nn.Linear(latent_dim, channels * resolution * resolution), nn.BatchNorm1d(channels * resolution * resolution))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(z)).view(-1, *self.shape)


class _NaNGenerator(_TinyGenerator):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z) * float("nan")


@pytest.fixture()
def data16() -> _Data:
    gen = torch.Generator().manual_seed(0)
    return _Data(torch.randint(0, 256, (48, 3, 16, 16), generator=gen, dtype=torch.uint8), "noise16")


def test_uint8_conversion_equals_png_roundtrip() -> None:
    x = torch.linspace(-1.2, 1.2, 3 * 8 * 8).view(1, 3, 8, 8)
    converted = generator_output_to_uint8(x)
    expected = np.clip(np.round((x.numpy() + 1) * 127.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(converted.numpy(), expected)
    buffer = io.BytesIO()
    Image.fromarray(converted[0].permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    reloaded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(reloaded, converted[0].numpy())
    assert converted.dtype == torch.uint8 and converted.min() == 0 and converted.max() == 255


def test_evaluator_equals_manual_computation(
    tiny_extractor: TorchScriptFeatureExtractor, data16: _Data, tmp_path: Path
) -> None:
    ref = reference_statistics(data16, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    gen = _TinyGenerator()
    gen.train()
    evaluator = FIDEvaluator(tiny_extractor, ref, num_samples=20, batch_size=6, metrics=("fid", "kid"))
    scores = evaluator(gen, seed=7)
    assert gen.training  # mode restored after evaluation

    gen.eval()
    with torch.no_grad():
        z = torch.randn((20, gen.latent_dim), generator=torch.Generator().manual_seed(7))
        fake = generator_output_to_uint8(gen(z))
    fake_feats = extract_features(tiny_extractor, fake)["pool"]
    assert scores["fid"] == pytest.approx(frechet_distance_from_features(ref.features, fake_feats), rel=1e-6)
    assert scores["kid"] == pytest.approx(kernel_inception_distance(ref.features, fake_feats)[0], rel=1e-6)
    assert set(scores) == {"fid", "kid"}
    # Same seed -> same numbers regardless of batch size; another seed -> other samples.
    other_batching = FIDEvaluator(tiny_extractor, ref, num_samples=20, batch_size=20, metrics=("fid", "kid"))
    assert other_batching(gen, seed=7)["fid"] == pytest.approx(scores["fid"], rel=1e-6)
    assert evaluator(gen, seed=8)["fid"] != pytest.approx(scores["fid"], rel=1e-6)


def test_grey_generator_is_repeated_to_rgb(tiny_extractor: TorchScriptFeatureExtractor, tmp_path: Path) -> None:
    grey = _Data(torch.randint(0, 256, (24, 1, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8), "grey")
    ref = reference_statistics(grey, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    gen = _TinyGenerator(channels=1)
    scores = FIDEvaluator(tiny_extractor, ref, num_samples=12, metrics=("fid",))(gen, seed=0)
    gen.eval()
    with torch.no_grad():
        z = torch.randn((12, gen.latent_dim), generator=torch.Generator().manual_seed(0))
        fake = generator_output_to_uint8(gen(z)).repeat(1, 3, 1, 1)
    expected = frechet_distance_from_features(ref.features, extract_features(tiny_extractor, fake)["pool"])
    assert scores == {"fid": pytest.approx(expected, rel=1e-6)}
    assert ref.features.shape[0] == 24 and ref.channels == 1


def test_diverged_generator_scores_inf(tiny_extractor: TorchScriptFeatureExtractor, data16: _Data, tmp_path: Path) -> None:
    ref = reference_statistics(data16, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    scores = FIDEvaluator(tiny_extractor, ref, num_samples=10, metrics=("fid", "kid"))(_NaNGenerator(), seed=0)
    assert scores == {"fid": math.inf, "kid": math.inf}


def test_protocol_is_recorded(tiny_extractor: TorchScriptFeatureExtractor, data16: _Data, tmp_path: Path) -> None:
    ref = reference_statistics(data16, extractor=tiny_extractor, num_samples=40, split="train", cache_dir=tmp_path)
    evaluator = FIDEvaluator(tiny_extractor, ref, num_samples=30, metrics=("kid", "fid"))
    protocol = evaluator.protocol
    assert protocol.to_dict() == {
        "feature_extractor": tiny_extractor.name,
        "weights_sha256": tiny_extractor.sha256,
        "weights_verified": False,
        "num_real": 40,
        "num_fake": 30,
        "resolution": 16,
        "dataset": "noise16",
        "split": "train",
        "metrics": ["fid", "kid"],
        "kid_subset_size": 30,
        "kid_subsets": 100,
        # A TorchScript network takes the images as they are (it was recorded as Inception's
        # resize to 299, which it never had).
        "resize": "none",
        "version": 1,
    }
    assert FIDProtocol.from_dict(protocol.to_dict()) == protocol


def test_invalid_configurations(tiny_extractor: TorchScriptFeatureExtractor, data16: _Data, tmp_path: Path) -> None:
    ref = reference_statistics(data16, extractor=tiny_extractor, num_samples=None, cache_dir=tmp_path)
    with pytest.raises(GannasError, match="logits"):
        FIDEvaluator(tiny_extractor, ref, num_samples=20, metrics=("fid", "is"))
    with pytest.raises(GannasError, match="unknown metrics"):
        FIDEvaluator(tiny_extractor, ref, num_samples=20, metrics=("fid", "lpips"))
    other = tmp_path / "other.pt"
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    write_tiny_torchscript_extractor(other, seed=3)
    with pytest.raises(GannasError, match="same extractor"):
        FIDEvaluator(TorchScriptFeatureExtractor(other), ref, num_samples=20, metrics=("fid",))


def test_torchscript_extractor_rejects_non_torchscript(tmp_path: Path) -> None:
    bad = tmp_path / "state.pt"
    torch.save({"w": torch.zeros(2)}, bad)
    with pytest.raises(WeightsError, match="not a TorchScript archive"):
        TorchScriptFeatureExtractor(bad)
    with pytest.raises(WeightsError, match="does not exist"):
        TorchScriptFeatureExtractor(tmp_path / "missing.pt")


def test_inception_evaluator_fid_kid_is_one_pass(
    inception: InceptionFeatureExtractor, inception_features: tuple[dict, dict]
) -> None:
    """With Inception: all three metrics, from one forward pass per batch."""
    calls = {"n": 0}
    original = inception.features

    class _Spy:
        name, identity, sha256 = inception.name, inception.identity, inception.sha256
        verified, provides_logits, resize = inception.verified, True, inception.resize

        def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            calls["n"] += 1
            return original(images)

    ref = ReferenceStats.from_features(
        inception_features[0]["pool"], key="k", dataset="digits24", split="train", resolution=32,
        channels=3, num_samples=24, extractor_identity=inception.identity,
    )  # fmt: skip
    gen = _TinyGenerator(channels=3, resolution=32)
    scores = FIDEvaluator(_Spy(), ref, num_samples=10, batch_size=10)(gen, seed=0)
    assert calls["n"] == 1
    assert set(scores) == {"fid", "kid", "is"}
    assert scores["fid"] > 0 and math.isfinite(scores["kid"]) and scores["is"] >= 1.0
    # Inception's images are resized to 299 as TF1 did; the protocol says so.
    protocol = FIDEvaluator(_Spy(), ref, num_samples=10, batch_size=10).protocol
    assert protocol.resize == "tf1-bilinear-299"
