"""A headless-browser fixture (``browser_page``) for tests that check what users see in HTML output.

It drives Debian's ``chromium`` through Playwright's Python package (``scripts/install_browser.sh``
installs both; ``playwright install`` is never used, it would download a browser build). It
collects console errors, uncaught page errors and every attempt to load something that is not a
``file:``/``data:`` URL, and saves screenshots under ``test-artifacts/`` in the repository root.

When the browser is not installed the tests using it are skipped on a developer machine, but FAIL
when ``$CI`` is set, so a broken install step is never hidden by a green CI run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
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


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


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
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)

    def goto(self, url: str) -> None:
        self.page.goto(url, wait_until="load")

    def screenshot(self, name: str) -> Path:
        """Save a full-page PNG as ``test-artifacts/<name>`` (kept after the test)."""
        ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
        path = ARTIFACT_DIR / name
        self.page.screenshot(path=str(path), full_page=True)
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
        if _ci():
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
    """A new page in headless chromium; network access other than ``file:``/``data:`` is blocked
    and recorded in ``blocked_requests``."""
    page = _browser_context.new_page()
    result = BrowserPage(page=page)

    def on_console(message: Any) -> None:
        if message.type == "error":
            result.console_errors.append(message.text)

    def route(route: Any) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
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
