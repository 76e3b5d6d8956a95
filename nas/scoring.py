"""Turns a :class:`ScoringSpec` into a feature extractor, reference statistics and an evaluator.

Extractors and datasets are cached per process: a Ray worker process runs many trials, and loading
Inception-v3 or a dataset for each would dominate short trials. The caches hold only immutable,
reloadable things (never trial state).
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from nas.trial_job import DataSpec, ScoringSpec


@lru_cache(maxsize=4)
def load_data(spec: DataSpec) -> Any:
    from trainers import load_dataset

    return load_dataset(
        spec.dataset, resolution=spec.resolution, channels=spec.channels, root=spec.data_root
    )


@lru_cache(maxsize=2)
def _extractor(
    feature_extractor: str | None,
    inception_weights: str | None,
    allow_unverified: bool,
    device: str,
    file_stamp: tuple[int, int] | None,
) -> Any:
    from trainers import metrics

    if feature_extractor is not None:
        return metrics.TorchScriptFeatureExtractor(feature_extractor, device=device)
    weights = metrics.resolve_inception_weights(
        inception_weights, allow_unverified=allow_unverified
    )
    return metrics.InceptionFeatureExtractor(weights, device=device)


def _file_stamp(path: str | None) -> tuple[int, int] | None:
    """(modification time, size) of ``path``: part of the cache key, so that a network file
    replaced at the same path is loaded again instead of served from the cache."""
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None  # missing: the extractor's own loading reports it
    return stat.st_mtime_ns, stat.st_size


def build_extractor(spec: ScoringSpec, device: str) -> Any:
    s = spec.scoring
    stamp = _file_stamp(s.feature_extractor or s.inception_weights)
    return _extractor(
        s.feature_extractor, s.inception_weights, s.allow_unverified_weights, device, stamp
    )


def compute_reference(spec: ScoringSpec, device: str) -> Any:
    """Reference statistics of the real data (from the on-disk cache when already computed)."""
    from trainers import metrics

    extractor = build_extractor(spec, device)
    return metrics.reference_statistics(
        load_data(spec.data), extractor=extractor, num_samples=spec.real_samples
    )


def build_evaluator(spec: ScoringSpec, reference: Any, device: str) -> Any:
    from trainers import metrics

    return metrics.FIDEvaluator(
        build_extractor(spec, device),
        reference,
        num_samples=spec.scoring.fid_samples,
        batch_size=spec.scoring.batch_size,
        device=device,
        metrics=spec.scoring.resolved_metrics(),
    )


def protocol_of(evaluator: Any) -> dict[str, Any]:
    """The JSON-able FID protocol stored with every trial."""
    return dict(evaluator.protocol.to_dict())


def pick_device(requested: str | None) -> str:
    if requested and requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
