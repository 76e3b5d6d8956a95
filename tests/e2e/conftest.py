"""Fixtures for end-to-end tests: what a user sees and takes away after a search.

* ``tiny_extractor`` / ``tiny_space``: a TorchScript feature extractor and a DCGAN space small
  enough that a two-trial search on 16x16 digits takes seconds on a CPU.
* ``searched_study``: one such search through the real ``gannas search`` (inline executor), with an
  artifact store and TensorBoard scalars, run once per session and read by every test here.
* ``gannas`` / :func:`run_gannas`: the real ``gannas`` entry point in a subprocess with a private
  environment.
* ``browser_page``: headless chromium through Playwright. This is the logic of
  ``tests/nas/conftest.py`` (Debian's ``chromium``, never ``playwright install``; skipped without a
  browser unless ``$CI`` is set, then a failure), except that requests to origins the test allows
  with :meth:`BrowserPage.allow` (the local dashboard) go through; everything else is blocked and
  recorded.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_DIR = REPO_ROOT / "test-artifacts"
CHROMIUM_ENV_VAR = "GANNAS_CHROMIUM"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
INSTALL_HINT = "install it with: bash scripts/install_browser.sh"

TINY_SPACE_YAML = """\
name: tiny-dcgan
description: A DCGAN small enough to train a few steps in about a second on a CPU (tests only).
family: dcgan
generator:
  latent_dim: 16
  depth: 2
  base_width: {type: categorical, choices: [8, 16]}
  kernel_size: 4
  norm: {type: categorical, choices: [batch, none]}
  activation: relu
  upsample: deconv
discriminator:
  depth: 2
  width: {type: categorical, choices: [8, 16]}
  spectral_norm: false
  activation: leaky_relu
training:
  loss: {type: categorical, choices: [bce, hinge]}
  lr_g: 2.0e-4
  lr_d: 2.0e-4
  beta1: 0.5
  beta2: 0.999
  d_steps: 1
  batch_size: 32
"""

SEARCH_STUDY = "e2e-digits"
SEARCH_TRIALS = 2
SEARCH_BUDGET = 12
"""Generator steps per trial in ``searched_study``: losses are logged at steps 10 and 12."""


def ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


# --------------------------------------------------------------------------- search fixtures


@pytest.fixture(scope="session")
def tiny_extractor(tmp_path_factory: pytest.TempPathFactory) -> str:
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    path = tmp_path_factory.mktemp("extractor") / "tiny.pt"
    write_tiny_torchscript_extractor(path, dim=16, seed=0)
    return str(path)


@pytest.fixture(scope="session")
def tiny_space(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(TINY_SPACE_YAML)
    return str(path)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_env(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Reference statistics are cached on disk; keep them private to this session.
    monkeypatch.setenv("GANNAS_CACHE_DIR", str(cache_dir))
    monkeypatch.delenv("GANNAS_STORAGE", raising=False)
    monkeypatch.delenv("GANNAS_ARTIFACTS", raising=False)


@dataclass(frozen=True)
class SearchedStudy:
    storage_url: str
    study_name: str
    artifacts: Path
    tensorboard: Path
    db_path: Path
    search_args: list[str]
    """The ``gannas search`` options used, without ``--space`` and ``--study``."""
    stdout: str


@pytest.fixture(scope="session")
def searched_study(
    tmp_path_factory: pytest.TempPathFactory, tiny_extractor: str, tiny_space: str, cache_dir: Path
) -> SearchedStudy:
    """One finished two-trial ``gannas search`` (real entry point, inline executor) with sample
    grids, checkpoints and TensorBoard scalars; every e2e test reads it, none changes it."""
    root = tmp_path_factory.mktemp("searched")
    db = root / "study.db"
    url = f"sqlite:///{db}"
    args = [
        "--dataset", "digits",
        "--resolution", "16",
        "--budget", str(SEARCH_BUDGET),
        "--eval-points", "2",
        "--fid-samples", "48",
        "--real-samples", "200",
        "--feature-extractor", tiny_extractor,
        "--executor", "inline",
        "--trials", str(SEARCH_TRIALS),
        "--sampler", "random",
        "--pruner", "none",
        "--storage", url,
        "--artifacts", str(root / "artifacts"),
    ]  # fmt: skip
    # Without the optional package the other tests still run; the TensorBoard test then skips
    # (fails under CI), see tensorboard_available().
    extra = ["--tensorboard", str(root / "tensorboard")] if tensorboard_available() else []
    proc = run_gannas(
        "search", "--space", tiny_space, "--study", SEARCH_STUDY, *args, *extra,
        cwd=root, cache_dir=cache_dir,
    )  # fmt: skip
    if proc.returncode != 0:
        pytest.fail(f"gannas search failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return SearchedStudy(
        storage_url=url,
        study_name=SEARCH_STUDY,
        artifacts=root / "artifacts",
        tensorboard=root / "tensorboard",
        db_path=db,
        search_args=args,
        stdout=proc.stdout,
    )


# --------------------------------------------------------------------------- the real CLI


def gannas_command() -> list[str]:
    """The installed ``gannas`` console script next to this interpreter, else the same entry
    point through ``-c`` (``python -m nas.cli`` would run before the stage commands register)."""
    script = Path(sys.executable).with_name("gannas")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "import sys; from nas.cli import main; sys.exit(main())"]


def cli_env(cache_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GANNAS_STORAGE", "GANNAS_ARTIFACTS", "GANNAS_DEBUG")
    }
    env["GANNAS_CACHE_DIR"] = str(cache_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # two cores shared with the rest of the suite
    return env


def run_gannas(
    *args: str, cwd: Path, cache_dir: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run the real entry point in ``cwd`` (so no default ``gannas.db`` or ``gannas_artifacts``
    lands in the repository); the finished process with text ``stdout``/``stderr``."""
    return subprocess.run(
        [*gannas_command(), *args],
        cwd=cwd,
        env=cli_env(cache_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def gannas(tmp_path: Path, cache_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``gannas(*args, timeout=...)``: :func:`run_gannas` in this test's ``tmp_path``."""

    def run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return run_gannas(*args, cwd=tmp_path, cache_dir=cache_dir, timeout=timeout)

    return run


# --------------------------------------------------------------------------- browser


def find_chromium() -> str | None:
    """``$GANNAS_CHROMIUM``, else Debian's ``chromium`` on the PATH; ``None`` if neither exists."""
    explicit = os.environ.get(CHROMIUM_ENV_VAR, "").strip()
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _missing_browser() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package 'playwright' is not installed"
    if find_chromium() is None:
        return f"no chromium executable found (looked at ${CHROMIUM_ENV_VAR} and PATH)"
    return None


@dataclass
class BrowserPage:
    """A fresh page plus everything that went wrong while it was open."""

    page: Any  # playwright.sync_api.Page
    allowed_origins: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)

    def allow(self, origin: str) -> None:
        """Let requests to ``origin`` (e.g. ``http://127.0.0.1:8123``) through."""
        self.allowed_origins.append(origin.rstrip("/") + "/")

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="load")

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """Save a PNG of the page (or of the visible part) as ``test-artifacts/<name>``, kept
        after the test."""
        ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
        path = ARTIFACT_DIR / name
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
            + [f"external request blocked: {u}" for u in self.blocked_requests]
        )


# Module scope: Playwright's sync API allows one running instance per thread, and the e2e and
# report tests each start their own.
@pytest.fixture(scope="module")
def _browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = _missing_browser()
    if reason is not None:
        message = f"headless browser unavailable: {reason}; {INSTALL_HINT}"
        if ci():
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    try:
        # A persistent context is how Playwright takes a user-data-dir; a fresh one per session.
        context = manager.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=find_chromium(),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
    except Exception:
        manager.stop()
        raise
    try:
        yield context
    finally:
        context.close()
        manager.stop()


@pytest.fixture
def browser_page(_browser_context: Any) -> Iterator[BrowserPage]:
    """A new page in headless chromium; requests other than ``file:``/``data:``/``blob:`` and the
    origins given to :meth:`BrowserPage.allow` are blocked and recorded in ``blocked_requests``."""
    page = _browser_context.new_page()
    result = BrowserPage(page=page)

    def on_console(message: Any) -> None:
        if message.type == "error":
            result.console_errors.append(message.text)

    def route(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")) or any(
            url.startswith(origin) or url == origin[:-1] for origin in result.allowed_origins
        ):
            route.continue_()
        else:
            result.blocked_requests.append(url)
            route.abort()

    page.on("console", on_console)
    page.on("pageerror", lambda error: result.page_errors.append(str(error)))
    page.route("**/*", route)
    try:
        yield result
    finally:
        page.close()
