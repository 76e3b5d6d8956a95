"""Fixtures for controller and CLI tests: a tiny TorchScript feature extractor (fast FID), a
database and artifact directory per test, and settings for searches that finish in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.settings import HowToSearch, ScoringSettings, WhatToSearch, WhereToRun


@pytest.fixture(scope="session")
def tiny_extractor(tmp_path_factory: pytest.TempPathFactory) -> str:
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    path = tmp_path_factory.mktemp("extractor") / "tiny.pt"
    write_tiny_torchscript_extractor(path, dim=16, seed=0)
    return str(path)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reference statistics are cached on disk; keep each test session's cache private.
    monkeypatch.setenv("GANNAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("GANNAS_STORAGE", raising=False)
    monkeypatch.delenv("GANNAS_ARTIFACTS", raising=False)


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def quick_search(tiny_extractor: str, storage_url: str, tmp_path: Path):
    """Settings for a search of tiny DCGANs on digits at 16x16 that takes seconds per trial."""

    def make(
        trials: int = 3,
        *,
        executor: str = "inline",
        workers: int = 1,
        study: str = "quick",
        budget: int = 12,
        sampler: str | None = "random",
        pruner: str | None = "none",
        objectives: tuple[str, ...] = ("fid",),
        space: str = "dcgan",
        artifacts: bool = True,
        seed: int = 0,
        **where_kw,
    ) -> tuple[WhatToSearch, HowToSearch, WhereToRun]:
        what = WhatToSearch(
            space=space,
            dataset="digits",
            resolution=16,
            budget=budget,
            eval_points=2,
            scoring=ScoringSettings(
                fid_samples=48, real_samples=200, feature_extractor=tiny_extractor, batch_size=48
            ),
            seed=seed,
        )
        how = HowToSearch(
            trials=trials, study=study, sampler=sampler, pruner=pruner, objectives=objectives
        )
        where = WhereToRun(
            storage=storage_url,
            artifacts=str(tmp_path / "artifacts") if artifacts else None,
            executor=executor,
            workers=workers,
            **where_kw,
        )
        return what, how, where

    return make
