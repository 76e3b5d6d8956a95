"""``gannas dashboard`` in a real browser: the study, its trials and a trial's sample grid.

The dashboard runs as a subprocess through the real entry point, on the database and artifact store
of a finished search; headless chromium then loads its pages the way a user's browser would (the
React app, its JSON API and the ``/artifacts/<study>/<trial>/<artifact>`` route for images).
"""

from __future__ import annotations

import io
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from PIL import Image

from storage.artifacts import make_artifact_store, read_artifact_bytes, trial_artifacts

from .conftest import BrowserPage, SearchedStudy, cli_env, gannas_command, run_gannas

STARTUP_TIMEOUT_S = 60.0
LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Dashboard:
    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def origin(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_until_serving(dash: Dashboard) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if dash.process.poll() is not None:
            pytest.fail(f"gannas dashboard exited with {dash.process.returncode}:\n{dash.log()}")
        try:
            with urllib.request.urlopen(f"{dash.origin}/api/meta", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    pytest.fail(f"gannas dashboard did not answer within {STARTUP_TIMEOUT_S}s:\n{dash.log()}")


@pytest.fixture
def dashboard(
    searched_study: SearchedStudy, tmp_path: Path, cache_dir: Path
) -> Iterator[Dashboard]:
    """``gannas dashboard --storage URL --artifacts DIR --port P`` (no ``--host``: the default
    bind is under test), stopped and reaped after the test whatever happens."""
    port = _free_port()
    log_path = tmp_path / "dashboard.log"
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [
                *gannas_command(),
                "dashboard",
                "--storage",
                searched_study.storage_url,
                "--artifacts",
                str(searched_study.artifacts),
                "--port",
                str(port),
            ],
            cwd=tmp_path,
            env=cli_env(cache_dir),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    dash = Dashboard(process=process, port=port, log_path=log_path)
    try:
        _wait_until_serving(dash)
        yield dash
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _listening_addresses(port: int) -> list[str] | None:
    """IPv4 addresses with a socket LISTENing on ``port`` per ``/proc/net/tcp`` (Linux), or
    ``None`` where that file does not exist."""
    proc = Path("/proc/net/tcp")
    if not proc.exists():
        return None
    found = []
    for line in proc.read_text().splitlines()[1:]:
        fields = line.split()
        local, state = fields[1], fields[3]
        hex_ip, hex_port = local.split(":")
        if int(hex_port, 16) == port and state == "0A":  # 0A: TCP_LISTEN
            raw = bytes.fromhex(hex_ip)[::-1]  # stored little-endian
            found.append(socket.inet_ntoa(raw))
    return found


def test_dashboard_binds_to_loopback_only_by_default(dashboard: Dashboard) -> None:
    addresses = _listening_addresses(dashboard.port)
    if addresses is not None:
        assert addresses == [LOOPBACK], addresses
    # 127.0.0.2 is another address of this same machine (Linux routes all of 127/8 to lo); a server
    # bound to 0.0.0.0 would answer there, one bound to 127.0.0.1 does not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        assert s.connect_ex(("127.0.0.2", dashboard.port)) != 0
    assert f"http://{LOOPBACK}:{dashboard.port}" in dashboard.log()


def test_dashboard_shows_study_trials_and_sample_grid(
    browser_page: BrowserPage, searched_study: SearchedStudy, dashboard: Dashboard
) -> None:
    study = optuna.load_study(
        study_name=searched_study.study_name, storage=searched_study.storage_url
    )
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2
    study_id = study._study_id
    shown = next(t for t in trials if t.state == TrialState.COMPLETE)
    samples = [m for m in trial_artifacts(study, shown) if m.filename.startswith("samples_step")]
    assert samples, [m.filename for m in trial_artifacts(study, shown)]
    store = make_artifact_store(str(searched_study.artifacts))
    pngs = {m.artifact_id: read_artifact_bytes(store, m.artifact_id) for m in samples}

    page = browser_page.page
    browser_page.allow(dashboard.origin)

    # 1. The study list shows the study as a card ("1. <name>"), which opens the study.
    browser_page.goto(f"{dashboard.origin}/dashboard")
    card = page.get_by_text(re.compile(rf"^\d+\. {re.escape(searched_study.study_name)}$"))
    card.wait_for(timeout=30_000)
    browser_page.screenshot("dashboard-study-list.png")
    card.click()
    page.wait_for_url(f"{dashboard.origin}/dashboard/studies/{study_id}", timeout=30_000)

    # 2. The study's trial list names every trial, with its state.
    browser_page.goto(f"{dashboard.origin}/dashboard/studies/{study_id}/trials")
    page.get_by_text(f"{len(trials)} Trials", exact=True).wait_for(timeout=30_000)
    for t in trials:
        page.get_by_text(f"Trial {t.number}", exact=True).first.wait_for(timeout=30_000)

    # 3. One trial selected: its artifacts, the sample grids among them, load as images.
    browser_page.goto(
        f"{dashboard.origin}/dashboard/studies/{study_id}/trials?numbers={shown.number}"
    )
    page.get_by_text(f"Trial {shown.number} (trial_id={shown._trial_id})").wait_for(
        timeout=30_000
    )
    for meta in samples:  # every evaluation's grid, the last one scrolled into view
        src = f"/artifacts/{study_id}/{shown._trial_id}/{meta.artifact_id}"
        image = page.locator(f'img[src$="{src}"]')
        image.wait_for(state="attached", timeout=30_000)
        image.evaluate("el => el.scrollIntoView({block: 'center'})")
        page.wait_for_function(
            "el => el.complete && el.naturalWidth > 0", arg=image.element_handle(), timeout=30_000
        )
        natural = image.evaluate("el => [el.naturalWidth, el.naturalHeight]")
        with Image.open(io.BytesIO(pngs[meta.artifact_id])) as stored:
            assert tuple(natural) == stored.size  # an 8 x 8 grid of 16 px images
        box = image.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0  # laid out, shown
        page.get_by_text(meta.filename, exact=True).first.wait_for(timeout=10_000)
    # The trial page is very wide (long attribute JSON): keep the part the image scrolled into.
    shot = browser_page.screenshot("dashboard-trial-samples.png", full_page=False)
    assert shot.stat().st_size > 0

    # The page is self-contained (no CDN, fonts or telemetry) and raised nothing.
    assert browser_page.problems() == []
    # The same artifact the browser showed is served with its stored MIME type and bytes.
    with urllib.request.urlopen(f"{dashboard.origin}{src}", timeout=10) as response:
        assert response.headers["Content-Type"] == "image/png"
        assert response.read() == pngs[samples[-1].artifact_id]


def test_busy_port_is_a_clear_error(
    searched_study: SearchedStudy, tmp_path: Path, cache_dir: Path
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_gannas(
            "dashboard", "--storage", searched_study.storage_url,
            "--artifacts", str(searched_study.artifacts), "--port", str(port),
            cwd=tmp_path, cache_dir=cache_dir, timeout=STARTUP_TIMEOUT_S,
        )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # One line, and no "Listening on ..." announcement of a server that never started.
    assert proc.stderr.strip().splitlines() == [
        f"error: cannot serve the dashboard on {LOOPBACK}:{port}: Address already in use; "
        "choose another --port"
    ]


def test_missing_database_or_store_is_refused_and_nothing_is_created(
    searched_study: SearchedStudy, tmp_path: Path, cache_dir: Path
) -> None:
    # Run in a directory without gannas.db: it used to serve an empty dashboard and leave
    # gannas.db and gannas_artifacts/ behind.
    def run(*args: str) -> str:
        proc = run_gannas("dashboard", *args, cwd=tmp_path, cache_dir=cache_dir, timeout=60)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        return line

    assert run().startswith(f"error: no study database at {str(tmp_path / 'gannas.db')!r}")
    missing = tmp_path / "no-store"
    assert run("--storage", searched_study.storage_url, "--artifacts", str(missing)).startswith(
        f"error: no artifact store at {str(missing)!r}"
    )
    assert list(tmp_path.iterdir()) == []
