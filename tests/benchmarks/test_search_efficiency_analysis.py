"""The search-efficiency benchmark's analysis: the speedup it prints, and re-reading saved runs.

The searches themselves take minutes; here hand-made runs with known answers go through the
script's ``--from-json`` path, which is the code that turns runs into the committed table.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "search_efficiency.py"

CONFIG = {
    "seeds": [0],
    "time_budget_s": 100.0,
    "trial_budget": 60,
    "eval_points": 3,
    "fid_samples": 128,
    "real_samples": 1000,
    "resolution": 8,
}


def _run(strategy: str, events: list[tuple[float, float | None]]) -> dict:
    return {
        "strategy": strategy,
        "seed": 0,
        "cpu_s": events[-1][0],
        "wall_s": events[-1][0],
        "events": [
            {
                "number": i,
                "state": "COMPLETE" if fid is not None else "PRUNED",
                "fid": fid,
                "cpu_s": t,
                "wall_s": t,
                "history": {} if fid is None else {"60": fid},
            }
            for i, (t, fid) in enumerate(events)
        ],
    }


def _write(path: Path, strategies: list[str], runs: list[dict]) -> Path:
    path.write_text(json.dumps({"config": {**CONFIG, "strategies": strategies}, "runs": runs}))
    return path


def _analyse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path / "out"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


# random: best 0.5 at 60 s, then 0.3 at 90 s. tpe+hyperband: 0.4 at 20 s, 0.25 at 30 s.
RANDOM = _run("random", [(10, 0.9), (60, 0.5), (90, 0.3)])
HYPERBAND = _run("tpe+hyperband", [(10, 0.8), (15, None), (20, 0.4), (30, 0.25)])


def test_speedup_is_random_time_to_its_best_over_the_strategy_time_to_reach_it(
    tmp_path: Path,
) -> None:
    saved = _write(tmp_path / "runs.json", ["random", "tpe+hyperband"], [RANDOM, HYPERBAND])
    proc = _analyse(tmp_path, "--from-json", str(saved))
    assert proc.returncode == 0, proc.stderr
    # random reached 0.3 at 90 s; TPE + Hyperband reached <= 0.3 at 30 s
    assert proc.stdout.strip().splitlines()[-1] == "speedup_vs_random: 3.00"
    table = (tmp_path / "out.md").read_text()
    assert "| tpe+hyperband | 4 | 1 | 0 | 0.25000 | 30 | 3.00x |" in table


def test_a_shorter_budget_reanalyses_the_first_seconds_of_each_run(tmp_path: Path) -> None:
    saved = _write(tmp_path / "runs.json", ["random", "tpe+hyperband"], [RANDOM, HYPERBAND])
    proc = _analyse(tmp_path, "--from-json", str(saved), "--time-budget", "70")
    assert proc.returncode == 0, proc.stderr
    # within 70 s random's best is 0.5 (at 60 s), reached by TPE + Hyperband at 20 s
    assert proc.stdout.strip().splitlines()[-1] == "speedup_vs_random: 3.00"
    assert "| random | 2 | 0 | 0 | 0.50000 |" in (tmp_path / "out.md").read_text()

    longer = _analyse(tmp_path, "--from-json", str(saved), "--time-budget", "150")
    assert longer.returncode != 0
    assert "longer than the saved runs' 100 CPU s" in longer.stderr


def test_runs_of_other_strategies_merge_only_with_the_same_setting(tmp_path: Path) -> None:
    base = _write(tmp_path / "base.json", ["random", "tpe+hyperband"], [RANDOM, HYPERBAND])
    sh_run = {**_run("tpe+sh", [(5, 0.2)])}
    sh = _write(tmp_path / "sh.json", ["random", "tpe+sh"], [sh_run])
    proc = _analyse(tmp_path, "--from-json", str(base), str(sh))
    assert proc.returncode == 0, proc.stderr
    assert "| tpe+sh | 1 | 0 | 0 | 0.20000 | 5 | 18.00x |" in (tmp_path / "out.md").read_text()

    other = json.loads(sh.read_text())
    other["config"]["trial_budget"] = 30
    sh.write_text(json.dumps(other))
    refused = _analyse(tmp_path, "--from-json", str(base), str(sh))
    assert refused.returncode != 0
    assert "its setting differs" in refused.stderr


def test_without_tpe_hyperband_runs_the_speedup_is_not_reported_as_zero(tmp_path: Path) -> None:
    tpe = _run("tpe", [(10, 0.2)])
    saved = _write(tmp_path / "runs.json", ["random", "tpe"], [RANDOM, tpe])
    proc = _analyse(tmp_path, "--from-json", str(saved))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "speedup_vs_random: n/a (no tpe+hyperband runs)"
    assert "| tpe | 1 | 0 | 0 | 0.20000 | 10 | 9.00x |" in (tmp_path / "out.md").read_text()


def test_the_results_file_reads_the_comparison_at_shorter_search_lengths(tmp_path: Path) -> None:
    saved = _write(tmp_path / "runs.json", ["random", "tpe+hyperband"], [RANDOM, HYPERBAND])
    proc = _analyse(tmp_path, "--from-json", str(saved))
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "out.md").read_text()
    # 25 and 50 s: random's best is its first trial (0.9 at 10 s), which TPE + Hyperband's first
    # trial (0.8 at 10 s) matches at the same time: 1x. From 75 s on random's best is 0.5 at 60 s
    # (then 0.3 at 90 s), reached at 20 s (30 s): 3x, on the per-seed and on the curve reading.
    assert "| 25 | 1 | 1.00x (0/1) | 1.0x |" in table
    assert "| 50 | 1 | 1.00x (0/1) | 1.0x |" in table
    assert "| 75 | 2 | 3.00x (1/1) | 3.0x |" in table
    assert "| 100 | 3 | 3.00x (1/1) | 3.0x |" in table


def test_the_bootstrap_interval_of_the_median_matches_the_exact_resampling_distribution(
    load_benchmark,
) -> None:
    import itertools
    import statistics

    bench = load_benchmark("search_efficiency")
    # Three seeds: all 27 resamples are equally likely, so the exact 5 % and 95 % quantiles of
    # the resampled median are known. Each end value is the median with probability 7/27 > 5 %.
    values = [1.0, 2.0, 10.0]
    exact = sorted(statistics.median(c) for c in itertools.product(values, repeat=3))
    assert exact.count(1.0) == exact.count(10.0) == 7
    assert bench.bootstrap_median_interval(values) == (1.0, 10.0)
    # A 40 % interval of the same values excludes the ends (P(median in {1, 10}) = 14/27 > 60 %
    # would be needed to keep them at the 30 % and 70 % quantiles; it is 7/27 each side).
    assert bench.bootstrap_median_interval(values, level=0.4) == (2.0, 2.0)
    # Identical seeds leave nothing to resample; no seeds, nothing to say.
    assert bench.bootstrap_median_interval([3.0] * 10) == (3.0, 3.0)
    lo, hi = bench.bootstrap_median_interval([])
    assert math.isnan(lo) and math.isnan(hi)


def test_the_table_shows_the_interval_of_each_per_seed_median(tmp_path: Path) -> None:
    runs = [RANDOM, HYPERBAND]
    saved = _write(tmp_path / "runs.json", ["random", "tpe+hyperband"], runs)
    proc = _analyse(tmp_path, "--from-json", str(saved))
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "out.md").read_text()
    # One seed: every resample is that seed, so the interval is the point.
    assert "| tpe+hyperband | 4 | 1 | 0 | 0.25000 | 30 | 3.00x | 3.00x-3.00x | 30 |" in table
    assert "90% interval of that median (bootstrap over seeds)" in table


def test_a_negative_first_seed_is_refused_before_any_search_runs(tmp_path: Path) -> None:
    proc = _analyse(tmp_path, "--first-seed", "-1")
    assert proc.returncode != 0
    assert "--first-seed must be a non-negative integer, got -1" in proc.stderr
    assert not (tmp_path / "out.md").exists()


def test_an_ema_decay_outside_0_1_is_refused_before_any_search_runs(tmp_path: Path) -> None:
    proc = _analyse(tmp_path, "--ema-decay", "1.5")
    assert proc.returncode != 0
    assert "--ema-decay must be between 0 and 1 (exclusive), got 1.5" in proc.stderr
    assert not (tmp_path / "out.md").exists()


def test_a_run_scored_on_an_ema_says_so_in_its_table(tmp_path: Path) -> None:
    saved = tmp_path / "ema.json"
    config = {**CONFIG, "strategies": ["random", "tpe+hyperband"], "ema_decay": 0.9}
    saved.write_text(json.dumps({"config": config, "runs": [RANDOM, HYPERBAND]}))
    proc = _analyse(tmp_path, "--from-json", str(saved))
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "out.md").read_text()
    assert "see the script, generators scored as an EMA of decay 0.9)" in table
    # the runs of a setting without an EMA do not merge with it
    plain = _write(tmp_path / "plain.json", ["random"], [RANDOM])
    proc = _analyse(tmp_path, "--from-json", str(saved), str(plain))
    assert proc.returncode != 0 and "its setting differs" in proc.stderr + proc.stdout


def test_the_ema_decay_reaches_every_trial_as_a_one_value_training_parameter(
    load_benchmark, tmp_path: Path
) -> None:
    from dataclasses import replace

    from search_spaces import RandomSuggester, load_space, sample_config

    bench = load_benchmark("search_efficiency")
    assert bench.space_yaml(bench.FULL) == bench.SPACE_YAML
    path = tmp_path / "space.yaml"
    for decay, expected in ((0.9, 0.9), (None, None)):
        path.write_text(bench.space_yaml(replace(bench.FULL, ema_decay=decay)))
        space = load_space(str(path))
        for seed in range(5):
            config = sample_config(space, RandomSuggester(seed), resolution=8, channels=1)
            assert config.training.ema_decay == expected


def test_seed_noise_refuses_an_ema_decay_outside_0_1() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "seed_noise.py"), "--ema-decay", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "--ema-decay must be between 0 and 1 (exclusive), got 0.0" in proc.stderr


def test_a_file_that_is_not_a_saved_run_is_refused_with_its_name(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    not_json = tmp_path / "notes.json"
    not_json.write_text("these are notes")
    other_shape = tmp_path / "other.json"
    other_shape.write_text(json.dumps({"config": {"seeds": [0]}}))
    for path, why in ((missing, "FileNotFoundError"), (not_json, "JSONDecodeError"),
                      (other_shape, "KeyError")):  # fmt: skip
        proc = _analyse(tmp_path, "--from-json", str(path))
        assert proc.returncode == 1
        assert f"{path}: not a saved run of this benchmark ({why}" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (tmp_path / "out.md").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time-budget", "-5"], "--time-budget must be a positive number of CPU seconds, got -5"),
        (["--time-budget", "0"], "--time-budget must be a positive number of CPU seconds, got 0"),
        (["--seeds", "0"], "--seeds must be at least 1, got 0"),
        (["--seeds", "-1"], "--seeds must be at least 1, got -1"),
        (["--trial-budget", "0"], "--trial-budget must be at least 1, got 0"),
        (["--fid-samples", "1"], "--fid-samples must be at least 2, got 1"),
        (["--eval-points", "0"], "--eval-points must be at least 1, got 0"),
        (["--jobs", "0"], "--jobs must be at least 1, got 0"),
        (["--resolution", "12"], "--resolution must be a positive multiple of 8, got 12"),
    ],
)
def test_nonsense_settings_are_refused_before_anything_runs_or_is_written(
    load_benchmark, tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    # A --time-budget of -5 once ran, printed a speedup of 0.00 and overwrote the committed results.
    bench = load_benchmark("search_efficiency")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--out", str(tmp_path / "out"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
