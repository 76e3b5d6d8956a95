"""Fixtures for fault-injection tests: tiny trials, a private Ray temp dir, throwaway databases.

Every test here gets its own ``RAY_TMPDIR``, so the Ray instances it starts (in-process, in a CLI
subprocess or as a multi-node test cluster) never join, nor are joined by, another session's Ray
cluster on the same machine; after the test, any process still running from that directory is
killed by its pid (never by name).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from nas.settings import HowToSearch, ScoringSettings, WhatToSearch, WhereToRun

TINY_SPACE = """\
name: tinygan
description: Tiny DCGANs for fault tests (about a second per 50 steps on a CPU).
family: dcgan
generator:
  latent_dim: 16
  depth: 2
  base_width: 8
  kernel_size: 4
  norm: {type: categorical, choices: [batch, none]}
  activation: {type: categorical, choices: [relu, leaky_relu]}
  upsample: deconv
discriminator:
  depth: 2
  width: 8
  spectral_norm: false
  activation: leaky_relu
training:
  loss: {type: categorical, choices: [bce, hinge]}
  lr_g: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  lr_d: {type: float, low: 1.0e-4, high: 1.0e-3, log: true}
  d_steps: 1
  batch_size: 16
"""

_SKIP_PG = (
    "PostgreSQL test server not reachable on 127.0.0.1:5432 (or $GANNAS_TEST_POSTGRES_URL); "
    "start it with: pg_ctlcluster --skip-systemctl-redirect <version> main start"
)


@pytest.fixture(scope="session")
def tiny_extractor(tmp_path_factory: pytest.TempPathFactory) -> str:
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    path = tmp_path_factory.mktemp("extractor") / "tiny.pt"
    write_tiny_torchscript_extractor(path, dim=16, seed=0)
    return str(path)


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("space") / "tinygan.yaml"
    path.write_text(TINY_SPACE)
    return str(path)


def processes_mentioning(text: str) -> list[int]:
    """Pids of this user's processes whose command line contains ``text`` (not this one)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture(autouse=True)
def _isolated_env(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A private reference-statistics cache and Ray temp dir; Ray leftovers killed afterwards."""
    monkeypatch.setenv("GANNAS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    for name in ("GANNAS_STORAGE", "GANNAS_ARTIFACTS", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    # Short: Ray puts unix sockets under it, and socket paths are limited to 107 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="gf", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    yield ray_tmp
    import ray

    if ray.is_initialized():
        ray.shutdown()
    deadline = time.monotonic() + 5
    while (left := processes_mentioning(ray_tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    kill_pids(left)
    shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture
def ray_tmp(_isolated_env: str) -> str:
    """This test's private Ray temp dir (``$RAY_TMPDIR``)."""
    return _isolated_env


@pytest.fixture(scope="session")
def kill_processes_mentioning() -> Callable[[str], list[int]]:
    """``kill(text)``: SIGKILL, by pid, this user's processes whose command line contains text."""

    def kill(text: str) -> list[int]:
        pids = processes_mentioning(text)
        kill_pids(pids)
        return pids

    return kill


@pytest.fixture
def kill_ray_processes(ray_tmp: str) -> Callable[[], list[int]]:
    """Kills (SIGKILL, by pid) every process started from this test's Ray temp dir."""

    def kill() -> list[int]:
        pids = processes_mentioning(ray_tmp)
        kill_pids(pids)
        return pids

    return kill


@pytest.fixture
def storage_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


SearchFactory = Callable[..., tuple[WhatToSearch, HowToSearch, WhereToRun]]


@pytest.fixture
def fault_search(tiny_extractor: str, tiny_space: str, storage_url: str) -> SearchFactory:
    """Settings for a search of tiny DCGANs on digits at 16x16 (about a second per trial)."""

    def make(
        trials: int = 3,
        *,
        storage: str | None = None,
        executor: str = "inline",
        workers: int = 1,
        study: str = "faults",
        budget: int = 12,
        max_retries: int = 2,
        **where_kw: object,
    ) -> tuple[WhatToSearch, HowToSearch, WhereToRun]:
        what = WhatToSearch(
            space=tiny_space,
            dataset="digits",
            resolution=16,
            budget=budget,
            eval_points=2,
            scoring=ScoringSettings(
                fid_samples=48, real_samples=200, feature_extractor=tiny_extractor, batch_size=48
            ),
        )
        how = HowToSearch(
            trials=trials, study=study, sampler="random", pruner="none", max_retries=max_retries
        )
        where = WhereToRun(
            storage=storage or storage_url,
            artifacts=None,
            executor=executor,
            workers=workers,
            **where_kw,  # type: ignore[arg-type]
        )
        return what, how, where

    return make


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The test PostgreSQL server; skipped when absent, except under ``CI`` where that fails."""
    from storage.testing import postgres_url_for_tests

    url = postgres_url_for_tests()
    if url is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {_SKIP_PG}")
        pytest.skip(_SKIP_PG)
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database, dropped after the test."""
    from storage.testing import temporary_postgres_database

    with temporary_postgres_database(postgres_admin_url) as url:
        yield url


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath) and {"postgres_url", "postgres_admin_url"} & set(
            getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.postgres)
