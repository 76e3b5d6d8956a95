"""The message a controller sends to a worker: everything one trial needs, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nas.settings import ScoringSettings


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    resolution: int
    channels: int | None
    """``None`` keeps the dataset's own channel count."""
    data_root: str | None = None


@dataclass(frozen=True)
class ScoringSpec:
    """How to build the feature extractor and score a generator (same for every trial)."""

    data: DataSpec
    scoring: ScoringSettings
    real_samples: int


@dataclass(frozen=True)
class TrialJob:
    storage_url: str
    study_name: str
    trial_id: int
    trial_number: int
    arch: dict[str, Any]
    budget: int
    eval_at: tuple[int, ...]
    score: ScoringSpec
    objectives: tuple[str, ...]
    pruner: str
    seed: int
    device: str | None = None
    artifacts: str | None = None
    keep_checkpoints: int = 5
    heartbeat_interval: int = 5
    gpu_fraction: float | None = None
    cpu_threads: int = 1
    tensorboard: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
