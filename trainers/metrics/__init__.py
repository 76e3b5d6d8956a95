"""FID, KID and Inception Score for GAN evaluation, reference-exact with torch-fidelity.

* :func:`resolve_inception_weights` finds/downloads and sha256-verifies the Inception weights.
* :class:`InceptionFeatureExtractor` runs torch-fidelity's Inception-v3 (loaded with
  ``weights_only=True``, BN folded, channels-last); :class:`TorchScriptFeatureExtractor` runs any
  user network saved with ``torch.jit.save``.
* :func:`reference_statistics` computes real-data statistics once and caches them on disk;
  :class:`FIDEvaluator` scores a generator against them in a trial.
* :class:`FIDProtocol` records how a number was measured.

Our FID equals torch-fidelity's (and the original TF code's) on the same images and weights; it
differs slightly from pytorch-fid, which resizes with PyTorch's bilinear interpolation instead of the
TF1-compatible resize (see :mod:`trainers.metrics._frechet`).
"""

from __future__ import annotations

from trainers.metrics._evaluator import FIDEvaluator, generator_features, generator_output_to_uint8
from trainers.metrics._extractors import (
    FeatureExtractor,
    InceptionFeatureExtractor,
    TorchScriptFeatureExtractor,
    resolve_device,
)
from trainers.metrics._frechet import (
    frechet_distance,
    frechet_distance_from_features,
    gaussian_statistics,
    inception_score,
    kernel_inception_distance,
)
from trainers.metrics._stats import (
    ReferenceStats,
    default_cache_dir,
    extract_features,
    reference_statistics,
    select_samples,
    to_rgb_uint8,
)
from trainers.metrics._hashing import file_sha256
from trainers.metrics._weights import WeightsInfo, resolve_inception_weights
from trainers.metrics.protocol import FIDProtocol

__all__ = [
    "FIDEvaluator",
    "FIDProtocol",
    "FeatureExtractor",
    "InceptionFeatureExtractor",
    "ReferenceStats",
    "TorchScriptFeatureExtractor",
    "WeightsInfo",
    "default_cache_dir",
    "extract_features",
    "file_sha256",
    "frechet_distance",
    "frechet_distance_from_features",
    "gaussian_statistics",
    "generator_features",
    "generator_output_to_uint8",
    "inception_score",
    "kernel_inception_distance",
    "reference_statistics",
    "resolve_device",
    "resolve_inception_weights",
    "select_samples",
    "to_rgb_uint8",
]
