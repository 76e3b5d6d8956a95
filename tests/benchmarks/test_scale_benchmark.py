"""The controller scale benchmark still runs end to end and writes a table that parses (a smoke run:
tiny trial counts on SQLite; its numbers are not checked against the goals here, see
benchmarks/results/scale.md for a measured run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_scale_benchmark_runs_and_reports_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "scale.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "scale.py"),
            "--backends", "sqlite",
            "--workers", "2",
            "--sleep", "0.05",
            "--trials-per-worker", "2",
            "--overhead-trials", "3",
            "--sweep-sleeps", "0.1",
            "--sweep-trials-per-worker", "3",
            "--repeats", "2",
            "--out", str(out),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    overhead = re.search(r"^\| sqlite \| 3 \| ([\d.]+) \| ([\d.]+) \| (yes|NO) \|$", text, re.M)
    assert overhead, text
    assert 0 < float(overhead.group(1)) <= float(overhead.group(2))
    rows = re.findall(
        r"^\| sqlite \| (\d+) \| ([\d.]+) \| (\d+) \| [\d.]+ \| [\d.]+ \| ([\d.]+) \| [\d.]+ \| (\d+)% \| ([\d., ]*) \|$", text, re.M
    )
    # (workers, sleep, trials): 2 workers at 0.05 s, the longer search (3 trials per worker),
    # then the trial-length sweep.
    assert [(w, s, n) for w, s, n, *_ in rows] == [("2", "0.05", "4"), ("2", "0.05", "6"), ("2", "0.1", "4")]
    for _, _, _, efficiency, busy, runs in rows[:2]:
        assert 0 < float(efficiency) <= 1.0
        assert 0 <= int(busy) <= 100
        # Two runs each; the row is the lower of the two (the median of an even count).
        assert [float(x) for x in runs.split(", ")][0] == float(efficiency)
        assert len(runs.split(", ")) == 2
    assert rows[2][5] == ""  # the sweep runs once
