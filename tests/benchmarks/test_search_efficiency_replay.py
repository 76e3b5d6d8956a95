"""The replay of saved search-efficiency runs: simulated searches, all-pairs speedups, the CLI.

Hand-made trials and runs with known answers; the committed table is this code run on the
committed ``search_efficiency.json``.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "search_efficiency_replay.py"


@pytest.fixture(scope="module")
def replay(load_benchmark):
    return load_benchmark("search_efficiency_replay")


def _trial(replay, cpu_s: float, fid: float):
    """A trial whose FID is ``fid`` at each of the three evaluation steps of a 60-step budget."""
    return replay.RecordedTrial(cpu_s, {15: fid, 30: fid, 60: fid})


def test_without_a_pruner_trials_finish_one_after_another_until_the_budget_is_spent(
    replay,
) -> None:
    trials = [_trial(replay, 2.0, 3.0), _trial(replay, 3.0, 1.0), _trial(replay, 4.0, 2.0)]
    outcomes = replay.simulate(lambda n: trials[n % 3], budget=10.0)
    # 2, 5, 9 s; the fourth trial (2 s more) would finish at 11 s, after the budget
    assert [(o.finished_s, o.fid) for o in outcomes] == [(2.0, 3.0), (5.0, 1.0), (9.0, 2.0)]
    assert replay.final_best(outcomes) == (1.0, 5.0)
    assert replay.time_to_reach(outcomes, 2.5) == 5.0
    assert replay.time_to_reach(outcomes, 0.5) == float("inf")

    # a search needs nothing after it reaches the value it is compared at
    stopped = replay.simulate(lambda n: trials[n % 3], budget=10.0, stop_below=1.0)
    assert [o.finished_s for o in stopped] == [2.0, 5.0]


def test_a_pruned_trial_costs_its_share_of_the_steps_and_records_no_fid(replay) -> None:
    good = [_trial(replay, 2.0, 1.0) for _ in range(3)]
    bad = _trial(replay, 6.0, 5.0)
    trials = [*good, bad]
    outcomes = replay.simulate(
        lambda n: trials[n % 4], budget=7.5, pruner="median", trial_budget=60
    )
    # gannas's median pruner waits for three completed trials, then prunes the bad one at its
    # first evaluation (step 15 of 60): a quarter of its 6 s
    assert [(o.finished_s, o.fid) for o in outcomes] == [
        (2.0, 1.0),
        (4.0, 1.0),
        (6.0, 1.0),
        (7.5, None),
    ]
    unpruned = replay.simulate(lambda n: trials[n % 4], budget=12.0, trial_budget=60)
    assert unpruned[-1].finished_s == 12.0 and unpruned[-1].fid == 5.0


def test_the_speedup_is_the_reference_time_to_its_best_over_the_search_time_to_reach_it(
    replay,
) -> None:
    outcome = replay.Outcome
    reference = [outcome(10.0, 0.9), outcome(60.0, 0.5), outcome(90.0, 0.3)]
    assert replay.speedup(reference, [outcome(10.0, 0.8), outcome(30.0, 0.25)]) == 3.0
    assert replay.speedup(reference, [outcome(10.0, None), outcome(40.0, 0.4)]) == 0.0


def test_an_idealised_sampler_draws_from_the_best_fraction_only_after_its_start_up(
    replay,
) -> None:
    pool = [_trial(replay, 1.0, float(fid)) for fid in range(1, 11)]
    starts, focused = set(), set()
    for seed in range(200):
        draw = replay.idealised_draw(pool, top=0.2, startup=3, rng=random.Random(seed))
        starts |= {draw(n).fid for n in range(3)}
        focused |= {draw(n).fid for n in range(3, 10)}
    assert focused == {1.0, 2.0}
    assert starts == {float(f) for f in range(1, 11)}


def _run(replay, strategy: str, seed: int, events: list[tuple[float, float]]):
    # the replay script reads runs through search_efficiency.py's own types
    bench = sys.modules[replay.RunResult.__module__]
    return replay.RunResult(
        strategy,
        seed,
        [
            bench.TrialEvent(i, "COMPLETE", fid, t, t, {60: fid})
            for i, (t, fid) in enumerate(events)
        ],
    )


def test_all_pairs_compares_every_random_run_with_every_strategy_run(replay) -> None:
    runs = [
        _run(replay, "random", 0, [(10, 0.9), (60, 0.5)]),  # best 0.5 at 60 s
        _run(replay, "random", 1, [(30, 0.4)]),  # best 0.4 at 30 s
        _run(replay, "tpe+hyperband", 0, [(20, 0.45), (40, 0.3)]),  # <= 0.5 at 20, <= 0.4 at 40
        _run(replay, "tpe+hyperband", 1, [(10, 0.6), (50, 0.5)]),  # <= 0.5 at 50, 0.4 never
    ]
    (row,) = replay.all_pairs(runs, budget=100.0)
    assert row.strategy == "tpe+hyperband"
    assert row.paired == [3.0, 0.0]  # 60/20 for seed 0; seed 1 never reaches 0.4
    assert row.all_pairs == [3.0, 1.2, 0.75, 0.0]


def test_concentration_counts_early_trials_that_beat_random_search_thresholds(replay) -> None:
    runs = [
        _run(replay, "random", 0, [(5, 4.0), (10, 3.0), (15, 2.0), (20, 1.0)]),
        _run(replay, "tpe", 0, [(5, 1.5), (10, 0.5), (50, 0.1)]),
    ]
    pool = replay.recorded_trials(runs, budget=60.0)
    assert [t.cpu_s for t in pool] == [5.0, 5.0, 5.0, 5.0]
    # thresholds: best half of random's FIDs <= 2.0, best quarter <= 1.0; the first sixth of
    # 60 s is 10 s: random's 4.0 and 3.0, TPE's 1.5 and 0.5 (its 0.1 at 50 s is too late)
    counts = replay.concentration(runs, pool, budget=60.0, tops=[0.5, 0.25])
    assert counts == {"random": {0.5: (0, 2), 0.25: (0, 2)}, "tpe": {0.5: (2, 2), 0.25: (1, 2)}}


def test_discovery_counts_trials_at_random_search_final_best_after_the_shared_start_up(
    replay,
) -> None:
    runs = [
        _run(replay, "random", 0, [(5, 0.5), (10, 0.9), (20, 0.6)]),  # best 0.5, its first trial
        _run(replay, "random", 1, [(5, 0.9), (10, 0.8), (30, 0.4)]),  # best 0.4 at 30 s
        # seed 0: the shared first trial reaches 0.5 at 5 s; after the start-up 0.45 and 0.5 hit
        _run(replay, "tpe", 0, [(5, 0.5), (8, 0.7), (12, 0.45), (15, 0.5), (70, 0.1)]),
        _run(replay, "tpe", 1, [(5, 0.9), (10, 0.8), (20, 0.6)]),  # never reaches 0.4
    ]
    found = replay.discovery(runs, budget=60.0, startup=2)
    assert found["random"] == [replay.Discovery(0, 5.0, 0), replay.Discovery(1, 30.0, 1)]
    # the 0.1 at 70 s is after the budget
    assert found["tpe"] == [replay.Discovery(0, 5.0, 2), replay.Discovery(1, math.inf, 0)]


def test_the_reading_names_the_widest_sampler_that_meets_the_goal(replay) -> None:
    rows = [
        replay.ReplayRow(0.5, "none", [1.0, 2.0, 2.5]),
        replay.ReplayRow(0.1, "none", [3.0, 3.5, 4.0]),
        replay.ReplayRow(0.1, "hyperband", [3.0, 5.0, 6.0]),
        replay.ReplayRow(0.05, "none", [9.0, 9.0, 9.0]),
    ]
    assert replay._first_at_goal(rows) == (
        "The per-seed median reaches 3x first for a sampler that draws only from the best 10% "
        "(hyperband: 5.00x)."
    )
    assert "No idealised sampler" in replay._first_at_goal(rows[:1])


def _saved_runs(path: Path) -> Path:
    def run(strategy: str, seed: int, events: list[tuple[float, float]]) -> dict:
        return {
            "strategy": strategy,
            "seed": seed,
            "cpu_s": events[-1][0],
            "wall_s": events[-1][0],
            "events": [
                {
                    "number": i,
                    "state": "COMPLETE",
                    "fid": fid,
                    "cpu_s": t,
                    "wall_s": t,
                    "history": {"15": fid + 1.0, "30": fid + 0.5, "60": fid},
                }
                for i, (t, fid) in enumerate(events)
            ],
        }

    config = {
        "seeds": [0, 1],
        "time_budget_s": 60.0,
        "trial_budget": 60,
        "eval_points": 3,
        "fid_samples": 128,
        "real_samples": 1000,
        "resolution": 8,
        "strategies": ["random", "tpe+hyperband"],
    }
    runs = [
        run("random", 0, [(5, 4.0), (10, 3.0), (15, 2.0), (20, 1.0), (40, 0.8)]),
        run("random", 1, [(10, 2.5), (25, 1.2), (30, 3.0)]),
        run("tpe+hyperband", 0, [(5, 1.0), (30, 0.7)]),
        run("tpe+hyperband", 1, [(10, 2.0), (20, 0.9)]),
    ]
    path.write_text(json.dumps({"config": config, "runs": runs}))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_script_writes_all_four_tables_from_saved_runs(tmp_path: Path) -> None:
    saved = _saved_runs(tmp_path / "runs.json")
    out = tmp_path / "replay.md"
    proc = _cli("--json", str(saved), "--sims", "4", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert proc.stdout.strip() == text.strip()
    # equal seeds: 40/30 and 25/20; the other two pairs: TPE + Hyperband's seed 1 never reaches
    # random seed 0's 0.8, its seed 0 reaches random seed 1's 1.2 at 5 s (25/5)
    assert "| tpe+hyperband | 1.29x (2) | 1.29x [" in text
    assert "random search's 8 recorded trials" in text
    for q in ("all (random search)", "50%", "25%", "10%", "5%"):
        for pruner in ("none", "median", "successive_halving", "hyperband"):
            assert f"| {q} | {pruner} | " in text
    assert "| tpe+hyperband | 2/2 (100%) |" in text
    # random's final bests: 0.8 at 40 s (seed 0, its 5th trial, after the 3 shared start-up
    # trials) and 1.2 at 25 s (seed 1, its 2nd: a start-up trial); TPE + Hyperband reaches them at
    # 30 s and 20 s, with 2 trials each, all start-up. Medians 32.5 s (printed 32) and 25 s.
    assert "| random | 32 | 0/2 | 0.5 [0-1] |" in text
    assert "| tpe+hyperband | 25 | 0/2 | 0 [0-0] |" in text


def test_a_missing_results_file_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "replay.md"
    proc = _cli("--json", str(tmp_path / "nope.json"), "--out", str(out))
    assert proc.returncode != 0
    assert "no such results file" in proc.stderr and "nope.json" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()

    bad = _cli("--json", str(_saved_runs(tmp_path / "r.json")), "--sims", "0", "--out", str(out))
    assert bad.returncode != 0 and "--sims must be at least 1" in bad.stderr
    assert not out.exists()
