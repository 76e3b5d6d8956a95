"""Datasets, losses and the short-budget GAN training loop; FID lives in ``trainers.metrics``.

Names are imported lazily, so ``import trainers`` does not import torch (the CLI imports packages
just to print ``--help``). This package never imports optuna or ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.datasets import ImageData, builtin_dataset_names, load_dataset
    from trainers.images import images_to_float, images_to_uint8, save_image_grid
    from trainers.loop import TrainResult, train_gan
    from trainers.losses import LOSSES, GANLoss, gradient_penalty
    from trainers.reporting import NullReporter, RecordingReporter, Reporter

__all__ = [
    "LOSSES",
    "GANLoss",
    "ImageData",
    "NullReporter",
    "RecordingReporter",
    "Reporter",
    "TrainResult",
    "builtin_dataset_names",
    "gradient_penalty",
    "images_to_float",
    "images_to_uint8",
    "load_dataset",
    "save_image_grid",
    "train_gan",
]

_MODULE_OF: dict[str, str] = {
    "ImageData": "trainers.datasets",
    "builtin_dataset_names": "trainers.datasets",
    "load_dataset": "trainers.datasets",
    "images_to_float": "trainers.images",
    "images_to_uint8": "trainers.images",
    "save_image_grid": "trainers.images",
    "LOSSES": "trainers.losses",
    "GANLoss": "trainers.losses",
    "gradient_penalty": "trainers.losses",
    "TrainResult": "trainers.loop",
    "train_gan": "trainers.loop",
    "NullReporter": "trainers.reporting",
    "RecordingReporter": "trainers.reporting",
    "Reporter": "trainers.reporting",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
