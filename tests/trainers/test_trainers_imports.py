from __future__ import annotations

import subprocess
import sys
import textwrap

import trainers

_PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import trainers
    lazy = "torch" not in sys.modules
    for name in trainers.__all__:
        getattr(trainers, name)
    for info in pkgutil.walk_packages(trainers.__path__, prefix="trainers."):
        importlib.import_module(info.name)
    banned = sorted(m for m in sys.modules if m.split(".")[0] in ("optuna", "ray"))
    print(lazy, banned)
    """
)


def test_trainers_never_imports_optuna_or_ray_and_torch_lazily() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True []"


def test_public_api() -> None:
    expected = {
        "ImageData",
        "load_dataset",
        "builtin_dataset_names",
        "LOSSES",
        "gradient_penalty",
        "Reporter",
        "NullReporter",
        "RecordingReporter",
        "train_gan",
        "TrainResult",
        "save_image_grid",
        "images_to_uint8",
    }
    assert expected <= set(trainers.__all__)
    for name in trainers.__all__:
        assert getattr(trainers, name) is not None
    assert "train_gan" in dir(trainers)
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        trainers.nope  # noqa: B018
