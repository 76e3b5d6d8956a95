"""Fixtures for the final-stage tests: a tiny TorchScript feature extractor (fast FID), a database
and artifact directory per test, a DCGAN space shrunk to what trains in about a second, and
settings for searches of a few trials."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.settings import HowToSearch, ScoringSettings, WhatToSearch, WhereToRun

# The DCGAN family with every width, depth and batch at its smallest useful value: each trial of
# ten steps trains in well under a second, so a test runs a handful of real trials.
TINY_SPACE = """\
name: tiny-dcgan
description: DCGAN family shrunk for fast tests
family: dcgan
generator:
  latent_dim: 16
  depth: 2
  base_width: {type: int, low: 4, high: 12, step: 4}
  kernel_size: {type: categorical, choices: [3, 4]}
  norm: {type: categorical, choices: [batch, none]}
  activation: {type: categorical, choices: [relu, leaky_relu]}
  upsample: {type: categorical, choices: [deconv, nearest]}
discriminator:
  depth: 2
  width: {type: int, low: 4, high: 8, step: 4}
  spectral_norm: false
training:
  loss: {type: categorical, choices: [bce, hinge]}
  lr_g: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  lr_d: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  d_steps: 1
  batch_size: 16
"""


@pytest.fixture(scope="session")
def tiny_extractor(tmp_path_factory: pytest.TempPathFactory) -> str:
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    path = tmp_path_factory.mktemp("extractor") / "tiny.pt"
    write_tiny_torchscript_extractor(path, dim=16, seed=0)
    return str(path)


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("space") / "tiny-dcgan.yaml"
    path.write_text(TINY_SPACE)
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reference statistics are cached on disk; keep each test session's cache private.
    monkeypatch.setenv("GANNAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("GANNAS_STORAGE", raising=False)
    monkeypatch.delenv("GANNAS_ARTIFACTS", raising=False)


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def artifacts_dir(tmp_path: Path) -> str:
    return str(tmp_path / "artifacts")


@pytest.fixture
def tiny_search(tiny_extractor: str, tiny_space: str, storage_url: str, artifacts_dir: str):
    """Settings for an inline search of tiny DCGANs on digits at 8x8 (budget 10 steps)."""

    def make(
        trials: int = 3,
        *,
        study: str = "tiny",
        budget: int = 10,
        sampler: str | None = "random",
        pruner: str | None = "none",
        objectives: tuple[str, ...] = ("fid",),
        seed: int = 0,
        artifacts: bool = True,
    ) -> tuple[WhatToSearch, HowToSearch, WhereToRun]:
        what = WhatToSearch(
            space=tiny_space,
            dataset="digits",
            resolution=8,
            budget=budget,
            eval_points=2,
            scoring=ScoringSettings(
                fid_samples=32, real_samples=128, feature_extractor=tiny_extractor, batch_size=32
            ),
            seed=seed,
        )
        how = HowToSearch(
            trials=trials, study=study, sampler=sampler, pruner=pruner, objectives=objectives
        )
        where = WhereToRun(
            storage=storage_url,
            artifacts=artifacts_dir if artifacts else None,
            executor="inline",
            workers=1,
        )
        return what, how, where

    return make
