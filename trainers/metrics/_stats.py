"""Batched feature extraction and the on-disk cache of reference (real-data) statistics.

The reference side of FID (mean, covariance, its square root, and the raw features KID needs) depends
only on the data and the feature network, so it is computed once per

    (dataset, split, resolution, channels, number of samples, data fingerprint, extractor identity,
     protocol version)

and stored under ``$GANNAS_CACHE_DIR/fid_stats`` (default ``~/.cache/gannas/fid_stats``). Writes go to
a temp file in the same directory and are published with ``os.replace``, so concurrent trials writing
the same entry are safe and a reader never sees a partial file. Files are ``.npz`` read with
``allow_pickle=False`` and carry a content checksum: an unreadable, truncated or tampered file is
recomputed, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from gannas._files import mkstemp
from trainers.metrics._extractors import FeatureExtractor
from trainers.metrics._frechet import covariance_factor
from trainers.metrics.protocol import PROTOCOL_VERSION

__all__ = [
    "ReferenceStats",
    "default_cache_dir",
    "extract_features",
    "reference_statistics",
    "select_samples",
    "to_rgb_uint8",
]

_log = logging.getLogger(__name__)
ENV_CACHE_DIR = "GANNAS_CACHE_DIR"
_ARRAYS = ("mu", "sigma", "sigma_factor", "features")


class _ImagesLike(Protocol):
    """The part of ``trainers.datasets.ImageData`` used here."""

    images: torch.Tensor
    name: str


def default_cache_dir() -> Path:
    """``$GANNAS_CACHE_DIR/fid_stats`` if the variable is set, else ``~/.cache/gannas/fid_stats``."""
    root = os.environ.get(ENV_CACHE_DIR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gannas"
    return base / "fid_stats"


def to_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 1 or 3, H, W) -> uint8 (N, 3, H, W); grey is repeated like PIL's ``convert("RGB")``."""
    if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}")
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


def extract_features(
    extractor: FeatureExtractor, images: torch.Tensor, *, batch_size: int = 64
) -> dict[str, torch.Tensor]:
    """Run ``extractor`` over uint8 images (N, 1|3, H, W) in batches; concatenated CPU float32 features."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, images.shape[0], batch_size):
        batch = to_rgb_uint8(images[start : start + batch_size])
        for key, value in extractor.features(batch.contiguous()).items():
            parts.setdefault(key, []).append(value)
    return {key: torch.cat(values) for key, values in parts.items()}


def select_samples(images: torch.Tensor, num_samples: int | None) -> torch.Tensor:
    """All images, or a fixed seeded random subset of ``num_samples`` (datasets are often class-sorted)."""
    total = images.shape[0]
    if num_samples is None or num_samples >= total:
        return images
    if num_samples < 2:
        raise ValueError(f"FID needs at least 2 reference samples, got num_samples={num_samples}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:num_samples]
    return images[order]


@dataclass(frozen=True, eq=False)
class ReferenceStats:
    """Real-data statistics for FID (float64) plus the float32 pool features for KID.

    ``sigma_factor`` is F with ``sigma = F.T @ F`` (see :func:`~trainers.metrics._frechet.covariance_factor`),
    precomputed so each evaluation skips the reference's matrix square root.
    """

    mu: np.ndarray
    sigma: np.ndarray
    sigma_factor: np.ndarray
    features: np.ndarray
    key: str
    dataset: str
    split: str
    resolution: int
    channels: int
    num_samples: int
    extractor_identity: str

    @classmethod
    def from_features(cls, features: torch.Tensor | np.ndarray, **meta: Any) -> ReferenceStats:
        array = np.ascontiguousarray(
            features.numpy() if isinstance(features, torch.Tensor) else features, dtype=np.float32
        )
        mu, sigma, factor = covariance_factor(array)
        return cls(mu=mu, sigma=sigma, sigma_factor=factor, features=array, **meta)


def _cache_meta(data: _ImagesLike, images: torch.Tensor, extractor: FeatureExtractor, split: str) -> dict[str, Any]:
    fingerprint = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    return {
        "version": PROTOCOL_VERSION,
        "resize": extractor.resize,
        "dataset": data.name,
        "split": split,
        "resolution": int(images.shape[-1]),
        "channels": int(images.shape[1]),
        "num_samples": int(images.shape[0]),
        "data_sha256": fingerprint,
        "extractor_identity": extractor.identity,
    }


def _key(meta: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in _ARRAYS:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def _cache_path(cache_dir: Path, meta: dict[str, Any], key: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(meta["dataset"]))[:40] or "data"
    return cache_dir / f"{slug}-{meta['split']}-r{meta['resolution']}-n{meta['num_samples']}-{key[:24]}.npz"


def _read_cache(path: Path, key: str, meta: dict[str, Any]) -> ReferenceStats | None:
    """The cached stats, or None when missing or not trustworthy (then the caller recomputes)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = json.loads(str(archive["meta"]))
            arrays = {name: archive[name] for name in _ARRAYS}
        if stored.get("key") != key or stored.get("checksum") != _checksum(arrays):
            raise ValueError("key or checksum mismatch")
        dim = arrays["mu"].shape[0]
        if (
            arrays["sigma"].shape != (dim, dim)
            or arrays["features"].shape != (meta["num_samples"], dim)
            or arrays["sigma_factor"].shape[1:] != (dim,)
        ):
            raise ValueError("inconsistent shapes")
    except Exception as exc:  # any failure means "not a valid cache entry"
        _log.warning("ignoring unusable FID statistics cache file %s (%s); recomputing", path, exc)
        return None
    return ReferenceStats(
        mu=arrays["mu"],
        sigma=arrays["sigma"],
        sigma_factor=arrays["sigma_factor"],
        features=arrays["features"],
        key=key,
        **_stats_meta(meta),
    )


def _write_cache(path: Path, stats: ReferenceStats, meta: dict[str, Any]) -> None:
    arrays = {name: getattr(stats, name) for name in _ARRAYS}
    record = dict(meta, key=stats.key, checksum=_checksum(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, meta=np.array(json.dumps(record, sort_keys=True)), **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        # Atomic publish: readers see the old entry or the complete new one, never a partial file.
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def _stats_meta(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": meta["dataset"],
        "split": meta["split"],
        "resolution": meta["resolution"],
        "channels": meta["channels"],
        "num_samples": meta["num_samples"],
        "extractor_identity": meta["extractor_identity"],
    }


def reference_statistics(
    data: _ImagesLike,
    *,
    extractor: FeatureExtractor,
    num_samples: int | None,
    split: str = "train",
    cache_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    use_cache: bool = True,
) -> ReferenceStats:
    """Statistics of ``data`` (``ImageData``: uint8 images (N, C, R, R) and a name), cached on disk.

    ``num_samples=None`` uses every image; otherwise a fixed seeded subset. The cache key covers the
    data bytes themselves, so two different folders that happen to share a name never collide.
    """
    images = select_samples(data.images, num_samples)
    meta = _cache_meta(data, images, extractor, split)
    key = _key(meta)
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = _cache_path(directory, meta, key)
    if use_cache:
        cached = _read_cache(path, key, meta)
        if cached is not None:
            return cached
    features = extract_features(extractor, images, batch_size=batch_size)["pool"]
    stats = ReferenceStats.from_features(features, key=key, **_stats_meta(meta))
    if use_cache:
        try:
            _write_cache(path, stats, meta)
        except OSError as exc:  # a read-only cache must not fail the run; it only costs time
            _log.warning("could not write FID statistics cache %s: %s", path, exc)
    return stats
