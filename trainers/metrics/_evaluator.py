"""Per-trial FID/KID/IS of a generator against cached reference statistics, with no images on disk."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from gannas.errors import GannasError
from trainers.metrics._extractors import FeatureExtractor, resolve_device
from trainers.metrics._frechet import (
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
    thin_factor,
)
from trainers.metrics._stats import ReferenceStats, to_rgb_uint8
from trainers.metrics.protocol import FIDProtocol

__all__ = ["FIDEvaluator", "generator_output_to_uint8", "generator_features"]

KNOWN_METRICS = ("fid", "kid", "is")


def generator_output_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 exactly as a saved PNG would hold them: ``round((x + 1) * 127.5)``, clamped."""
    return ((images.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _generator_device(generator: nn.Module) -> torch.device:
    for tensor in generator.parameters():
        return tensor.device
    for tensor in generator.buffers():
        return tensor.device
    return torch.device("cpu")


def iter_generator_images(
    generator: nn.Module, *, num_samples: int, seed: int, batch_size: int, device: torch.device
) -> Iterator[torch.Tensor]:
    """Yield raw generator outputs for ``num_samples`` latents drawn from ``seed``.

    The latents are drawn on the CPU in one go, so the samples depend only on ``seed``, not on the
    batch size or the device.
    """
    latent_dim = int(generator.latent_dim)  # type: ignore[arg-type]
    z = torch.randn((num_samples, latent_dim), generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    try:
        with torch.no_grad():
            for start in range(0, num_samples, batch_size):
                yield generator(z[start : start + batch_size].to(device))
    finally:
        generator.train(was_training)


def generator_features(
    generator: nn.Module,
    extractor: FeatureExtractor,
    *,
    num_samples: int,
    seed: int,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, torch.Tensor] | None:
    """Features of ``num_samples`` generated images, or None if the generator produced non-finite values."""
    run_on = _generator_device(generator) if device is None else resolve_device(device)
    parts: dict[str, list[torch.Tensor]] = {}
    for output in iter_generator_images(
        generator, num_samples=num_samples, seed=seed, batch_size=batch_size, device=run_on
    ):
        if not torch.isfinite(output).all():
            return None
        batch = to_rgb_uint8(generator_output_to_uint8(output))
        for key, value in extractor.features(batch).items():
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in parts.items()}


class FIDEvaluator:
    """``evaluator(generator, *, seed) -> {"fid": ..., "kid": ..., "is": ...}`` against fixed reference stats.

    Fake images are generated and featurised batch by batch on the trial's device (``device=None``:
    wherever the generator's parameters are); KID and IS reuse the same forward pass as FID. A
    generator that outputs NaN/inf scores ``fid = kid = inf`` and ``is = nan`` instead of crashing.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        reference: ReferenceStats,
        *,
        num_samples: int,
        batch_size: int = 64,
        device: str | torch.device | None = None,
        metrics: Sequence[str] = ("fid", "kid", "is"),
        kid_subsets: int = 100,
    ) -> None:
        unknown = [m for m in metrics if m not in KNOWN_METRICS]
        if unknown:
            raise GannasError(f"unknown metrics {unknown}; expected a subset of {list(KNOWN_METRICS)}")
        if num_samples < 2:
            raise GannasError(f"FID needs at least 2 generated samples, got num_samples={num_samples}")
        if reference.extractor_identity != extractor.identity:
            raise GannasError(
                "reference statistics were computed with feature extractor "
                f"{reference.extractor_identity!r}, but the evaluator uses {extractor.identity!r}; "
                "recompute them with the same extractor"
            )
        if "is" in metrics and not extractor.provides_logits:
            raise GannasError(
                f"the Inception Score needs class logits, which feature extractor {extractor.name!r} "
                "does not provide; drop 'is' from metrics"
            )
        if "is" in metrics and num_samples < 10:
            raise GannasError(f"the Inception Score uses 10 splits and needs num_samples >= 10, got {num_samples}")
        # "fid" always comes first and always runs; duplicates are dropped.
        self._metrics = ("fid", *[m for m in KNOWN_METRICS[1:] if m in metrics])
        self._extractor = extractor
        self._reference = reference
        self._num_samples = num_samples
        self._batch_size = batch_size
        self._device = device
        self._kid_subsets = kid_subsets
        self._kid_subset_size = min(1000, num_samples, reference.num_samples)

    @property
    def metrics(self) -> tuple[str, ...]:
        return self._metrics

    @property
    def protocol(self) -> FIDProtocol:
        ref = self._reference
        return FIDProtocol(
            feature_extractor=self._extractor.name,
            weights_sha256=self._extractor.sha256,
            weights_verified=self._extractor.verified,
            num_real=ref.num_samples,
            num_fake=self._num_samples,
            resolution=ref.resolution,
            dataset=ref.dataset,
            split=ref.split,
            metrics=self._metrics,
            kid_subset_size=self._kid_subset_size if "kid" in self._metrics else None,
            kid_subsets=self._kid_subsets if "kid" in self._metrics else None,
            resize=self._extractor.resize,
        )

    def __call__(self, generator: nn.Module, *, seed: int) -> dict[str, float]:
        features = generator_features(
            generator,
            self._extractor,
            num_samples=self._num_samples,
            seed=seed,
            batch_size=self._batch_size,
            device=self._device,
        )
        if features is None:
            diverged = {"fid": math.inf, "kid": math.inf, "is": math.nan}
            return {name: diverged[name] for name in self._metrics}
        ref = self._reference
        mu, sigma = gaussian_statistics(features["pool"])
        fid = frechet_distance(
            ref.mu, ref.sigma, mu, sigma, factor1=ref.sigma_factor, factor2=thin_factor(features["pool"])
        )
        out = {"fid": fid}
        if "kid" in self._metrics:
            out["kid"] = kernel_inception_distance(
                ref.features, features["pool"], subset_size=self._kid_subset_size, subsets=self._kid_subsets
            )[0]
        if "is" in self._metrics:
            out["is"] = inception_score(features["logits"])[0]
        return out
