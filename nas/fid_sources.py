"""Resolve a ``gannas fid`` source to features, and compute FID (plus KID/IS) between two sources.

A source is, in this order of precedence:

* a built-in dataset name (``digits``, ``cifar10``, ...; see ``trainers.datasets``), scored through the
  on-disk reference-statistics cache, so repeated comparisons against it are cheap;
* an exported generator directory (contains ``arch.json``; loaded with
  ``storage.checkpoints.load_generator``), sampled in memory with ``seed``;
* a folder of images, or an ``.npz`` array file (loaded with ``trainers.datasets.load_dataset``, at
  their native resolution unless ``resolution`` is given).

Images are fed to the feature network as uint8, exactly as torch-fidelity reads PNG files, so
``fid_between(folder_a, folder_b)`` equals ``torch_fidelity.calculate_metrics(input1=folder_a,
input2=folder_b, fid=True)`` for the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from gannas.errors import DatasetError, GannasError

__all__ = ["MetricsResult", "SourceFeatures", "compute_source_features", "fid_between", "source_kind"]

SourceKind = Literal["dataset", "generator", "folder", "npz"]


@dataclass(frozen=True, eq=False)
class SourceFeatures:
    """Features of one source: ``features["pool"]`` (N, D) and, for Inception, ``features["logits"]``."""

    source: str
    kind: SourceKind
    name: str
    features: dict[str, torch.Tensor]
    num_samples: int
    resolution: int


@dataclass(frozen=True)
class MetricsResult:
    """FID between two sources, plus KID and per-source Inception Scores where they make sense."""

    fid: float
    kid: float | None
    kid_std: float | None
    inception_score_a: float | None
    inception_score_b: float | None
    source_a: str
    source_b: str
    num_a: int
    num_b: int
    protocol: dict[str, Any] = field(default_factory=dict)

    def details(self) -> dict[str, Any]:
        """Human-readable lines for the CLI (it prints the FID itself last)."""
        out: dict[str, Any] = {
            "source_a": f"{self.source_a} ({self.num_a} images)",
            "source_b": f"{self.source_b} ({self.num_b} images)",
            "feature_extractor": self.protocol.get("feature_extractor"),
            "weights_sha256": self.protocol.get("weights_sha256"),
            "weights_verified": self.protocol.get("weights_verified"),
        }
        if self.kid is not None:
            out["kid"] = f"{_six_places(self.kid)} ± {_six_places(self.kid_std)}"
        if self.inception_score_a is not None:
            out["inception_score_a"] = f"{self.inception_score_a:.4f}"
        if self.inception_score_b is not None:
            out["inception_score_b"] = f"{self.inception_score_b:.4f}"
        out["fid"] = _six_places(self.fid)
        return out


def _six_places(value: float) -> str:
    # KID's unbiased estimate (and a FID through rounding) can be a hair below zero; printed as
    # "-0.000000" it reads as an error.
    text = f"{value:.6f}"
    return "0.000000" if text == "-0.000000" else text


def source_kind(source: str) -> SourceKind:
    """Classify ``source`` (see the module docstring); raises DatasetError when it is none of them."""
    from trainers.datasets import builtin_dataset_names

    if source.strip().lower() in builtin_dataset_names():
        return "dataset"
    path = Path(source).expanduser()
    if path.is_dir():
        return "generator" if (path / "arch.json").is_file() else "folder"
    if path.is_file() and path.suffix.lower() == ".npz":
        return "npz"
    raise DatasetError(
        f"FID source {source!r} is not a built-in dataset ({', '.join(builtin_dataset_names())}), "
        "an exported generator directory (with arch.json), a folder of images or an .npz file"
    )


def compute_source_features(
    source: str,
    *,
    extractor: Any,
    num_samples: int | None,
    resolution: int | None,
    batch_size: int,
    device: str | torch.device,
    seed: int,
    download: bool = True,
) -> SourceFeatures:
    """Features of ``source`` (see module docstring).

    ``num_samples``: generators draw that many (required); data sources use a fixed seeded subset of
    that size (all images when None). ``resolution``: data sources are resized to it (folders/npz keep
    their native size when None; built-in datasets need it).
    """
    from trainers import metrics

    kind = source_kind(source)
    if kind == "generator":
        if num_samples is None:
            raise GannasError(f"generator source {source!r} needs a number of samples (--num-samples)")
        from storage.checkpoints import load_generator

        generator = load_generator(source, device=device)
        feats = metrics.generator_features(
            generator, extractor, num_samples=num_samples, seed=seed, batch_size=batch_size, device=device
        )
        if feats is None:
            raise GannasError(f"generator {source!r} produced non-finite images; FID is undefined")
        with torch.no_grad():
            probe = generator(torch.zeros(1, int(generator.latent_dim), device=device))
        return SourceFeatures(source, kind, f"generator:{source}", feats, num_samples, int(probe.shape[-1]))

    from trainers.datasets import load_dataset, native_resolution

    if kind == "dataset":
        if resolution is None:
            raise GannasError(
                f"dataset source {source!r} needs a resolution (--resolution, or compare it with a "
                "folder, .npz or generator whose resolution is used)"
            )
        data = load_dataset(source, resolution=resolution, download=download)
        # Built-in datasets go through the reference-statistics cache: the second comparison
        # against the same dataset skips feature extraction entirely.
        stats = metrics.reference_statistics(
            data, extractor=extractor, num_samples=num_samples, batch_size=batch_size
        )
        pool = torch.from_numpy(stats.features)
        return SourceFeatures(source, kind, data.name, {"pool": pool}, stats.num_samples, resolution)

    side = resolution if resolution is not None else native_resolution(source)
    data = load_dataset(source, resolution=side, download=download)
    images = metrics.select_samples(data.images, num_samples)
    if images.shape[0] < 2:
        raise DatasetError(
            f"FID source {source!r} holds {images.shape[0]} image; FID needs at least 2 per source"
        )
    feats = metrics.extract_features(extractor, images, batch_size=batch_size)
    return SourceFeatures(source, kind, data.name, feats, int(images.shape[0]), side)


def _build_extractor(
    *, weights_path: str | None, allow_unverified: bool, extractor_path: str | None, device: torch.device, download: bool
) -> Any:
    from trainers import metrics

    if extractor_path is not None:
        return metrics.TorchScriptFeatureExtractor(extractor_path, device=device)
    weights = metrics.resolve_inception_weights(weights_path, download=download, allow_unverified=allow_unverified)
    return metrics.InceptionFeatureExtractor(weights, device=device)


def fid_between(
    a: str,
    b: str,
    *,
    weights_path: str | None = None,
    allow_unverified: bool = False,
    num_samples: int | None = None,
    resolution: int | None = None,
    device: str = "auto",
    batch_size: int = 64,
    extractor_path: str | None = None,
    seed: int = 0,
    download: bool = True,
    extractor: Any = None,
) -> MetricsResult:
    """FID (and KID, IS where defined) between sources ``a`` and ``b``.

    Sources with a native resolution (folders, npz, generators) are resolved first; a built-in dataset
    without an explicit ``resolution`` takes the other source's. A generator without ``num_samples``
    draws as many samples as the other (data) source has. ``extractor`` overrides
    ``weights_path``/``extractor_path`` with an already built feature extractor.
    """
    from nas.settings import MAX_RESOLUTION, check_device
    from trainers import metrics

    # Named by the `gannas fid` options, as the device check below is.
    if batch_size < 1:
        raise GannasError(f"--batch-size must be at least 1, got {batch_size}")
    if num_samples is not None and num_samples < 2:
        raise GannasError(f"--num-samples: FID needs at least 2 samples per source, got {num_samples}")
    if resolution is not None and not 1 <= resolution <= MAX_RESOLUTION:
        # Any size is a valid FID input (the features are taken at 299x299), but a huge one
        # only runs out of memory while the images are resized.
        raise GannasError(f"--resolution must be from 1 to {MAX_RESOLUTION}, got {resolution}")
    check_device(device, local=True)  # a clear refusal, not torch's error or a misleading one later
    run_on = metrics.resolve_device(device)
    if extractor is None:
        extractor = _build_extractor(
            weights_path=weights_path,
            allow_unverified=allow_unverified,
            extractor_path=extractor_path,
            device=run_on,
            download=download,
        )
    kinds = {a: source_kind(a), b: source_kind(b)}
    # Data before generators (they may borrow its count), native-resolution sources before datasets.
    order = sorted((a, b), key=lambda s: {"folder": 0, "npz": 0, "dataset": 1, "generator": 2}[kinds[s]])
    resolved: dict[str, SourceFeatures] = {}
    for source in order:
        other = next(iter(resolved.values()), None)
        count = num_samples
        if count is None and kinds[source] == "generator" and other is not None:
            count = other.num_samples
        side = resolution
        if side is None and kinds[source] == "dataset":
            partner = b if source == a else a
            if other is not None:
                side = other.resolution
            elif kinds[partner] == "generator":
                # Resolved after the dataset (it may borrow the dataset's count), but its
                # resolution is in its arch.json.
                from storage.checkpoints import read_arch

                side = read_arch(partner).resolution
        resolved[source] = compute_source_features(
            source,
            extractor=extractor,
            num_samples=count,
            resolution=side,
            batch_size=batch_size,
            device=run_on,
            seed=seed,
            download=download,
        )
    fa, fb = resolved[a], resolved[b]
    if fa.resolution != fb.resolution and extractor.resize == "none":
        # Inception resizes both to 299x299; a TorchScript network sees each at its own size,
        # and features of different sizes are not comparable.
        raise GannasError(
            f"{a!r} is {fa.resolution}x{fa.resolution} but {b!r} is {fb.resolution}x"
            f"{fb.resolution}; a --feature-extractor network takes the images as they are, so "
            "compare sources of one resolution (--resolution sets a dataset's)"
        )
    fid = metrics.frechet_distance_from_features(fa.features["pool"], fb.features["pool"])
    kid_mean = kid_std = None
    subset = min(1000, fa.num_samples, fb.num_samples)
    if subset >= 2:
        kid_mean, kid_std = metrics.kernel_inception_distance(fa.features["pool"], fb.features["pool"])
    is_a, is_b = (_maybe_is(f) for f in (fa, fb))
    used = ["fid"] + (["kid"] if kid_mean is not None else []) + (["is"] if is_a is not None or is_b is not None else [])
    protocol = metrics.FIDProtocol(
        feature_extractor=extractor.name,
        weights_sha256=extractor.sha256,
        weights_verified=extractor.verified,
        num_real=fa.num_samples,
        num_fake=fb.num_samples,
        resolution=fa.resolution,
        dataset=fa.name,
        split="train",
        metrics=tuple(used),
        kid_subset_size=subset if kid_mean is not None else None,
        kid_subsets=100 if kid_mean is not None else None,
        resize=extractor.resize,
    )
    return MetricsResult(
        fid=fid,
        kid=kid_mean,
        kid_std=kid_std,
        inception_score_a=is_a,
        inception_score_b=is_b,
        source_a=a,
        source_b=b,
        num_a=fa.num_samples,
        num_b=fb.num_samples,
        protocol=protocol.to_dict(),
    )


def _maybe_is(source: SourceFeatures) -> float | None:
    from trainers import metrics

    logits = source.features.get("logits")
    if logits is None or logits.shape[0] < 10:
        return None
    value = metrics.inception_score(logits)[0]
    return value if math.isfinite(value) else None
