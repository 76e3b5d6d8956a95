"""The per-seed reading model: its simulation obeys what follows from its assumptions."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model(load_benchmark):
    return load_benchmark("per_seed_reading_model")


def test_a_second_random_search_reaches_the_firsts_final_best_half_of_the_time(model):
    # k = 1 is another random search: by symmetry, whichever of two equal searches ends lower.
    r = model.reading(1.0, n_trials=40, seeds=1, sims=40_000)
    assert r.share_reached == pytest.approx(0.5, abs=0.015)


def test_a_sampler_that_always_hits_at_once_reads_random_searchs_own_time(model):
    rng = np.random.default_rng(1)
    ratios = model.per_seed_ratios(1e9, 50, 20_000, rng)
    # first hit on trial 1, so the ratio is the trial of random's final best: uniform on 1..50
    assert set(np.unique(ratios)) <= set(range(1, 51))
    assert np.median(ratios) == pytest.approx(25.5, abs=1.0)


def test_start_up_trials_shared_with_random_search_delay_the_first_hit(model):
    rng = np.random.default_rng(2)
    ratios = model.per_seed_ratios(1e9, 50, 20_000, rng, startup=3)
    # random's best among the 3 shared trials is matched at once (1x); otherwise the
    # sampler's first own trial, the 4th, hits: pos / 4
    assert set(np.unique(ratios)) <= {1.0} | {pos / 4 for pos in range(4, 51)}
    assert np.mean(ratios == 1.0) == pytest.approx(3 / 50 + 1 / 50, abs=0.01)  # pos <= 3 or 4


def test_the_reading_grows_with_k_and_k_for_finds_the_3x_threshold(model):
    medians = [model.reading(k, n_trials=50, seeds=1, sims=5_000).per_seed_median
               for k in (2, 4, 8, 16)]  # fmt: skip
    assert medians == sorted(medians) and medians[-1] > 2 * medians[1]
    k3 = model.k_for(3.0, n_trials=50, sims=5_000)
    assert model.reading(k3, n_trials=50, seeds=1, sims=5_000).per_seed_median >= 3.0
    assert model.reading(k3 / 1.05, n_trials=50, seeds=1, sims=5_000).per_seed_median < 3.0


def test_the_model_refuses_what_it_cannot_simulate(model):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="k must be positive"):
        model.per_seed_ratios(0.0, 10, 5, rng)
    with pytest.raises(ValueError, match="startup"):
        model.per_seed_ratios(2.0, 10, 5, rng, startup=10)


def test_the_command_writes_its_table_and_rejects_bad_arguments(model, tmp_path, capsys):
    out = tmp_path / "model.md"
    assert model.main(["--k", "2,8", "--trials", "30", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| 2 |" in text and "| 8 |" in text and "A per-seed median of 3x needs k =" in text
    assert "--trials 30" in text
    for bad, message in [
        (["--k", "0,2"], "--k values must be positive"),
        (["--k", "two"], "--k must be comma-separated numbers"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--startup", "50"], "--startup must be in [0, 50)"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            model.main(bad)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


def _events(bench, rows):
    """TrialEvents from (cpu_s, first FID, final FID or None when pruned) rows."""
    return [
        bench.TrialEvent(i, "COMPLETE" if fid is not None else "PRUNED", fid, t, t,
                         {15: first} if fid is None else {15: first, 60: fid})
        for i, (t, first, fid) in enumerate(rows)
    ]  # fmt: skip


def test_shared_start_counts_leading_trials_with_the_same_first_fid(model):
    import search_efficiency as bench  # importable once the model module set its path

    random = _events(bench, [(1, 0.5, 0.4), (2, 0.6, 0.3), (3, 0.7, 0.6), (4, 0.9, 0.8)])
    # the second trial is a pruned copy of random's: same first FID, so still shared
    other = _events(bench, [(1, 0.5, 0.4), (2, 0.6, None), (3, 0.2, 0.1), (4, 0.9, 0.8)])
    assert model.shared_start(random, other) == 2
    assert model.shared_start(random, random) == 4
    assert model.shared_start(random, other[2:]) == 0


def test_check_counts_hits_against_randoms_final_best_and_reads_the_measured_speedup(model):
    import search_efficiency as bench

    random_rows = [(10.0 * i, 0.9, 0.9) for i in range(1, 10)]
    random_rows[4] = (50.0, 0.8, 0.2)  # random's final best, 0.2, at 50 s
    strategy_rows = [
        random_rows[0],  # shared start-up trial
        (15.0, 0.5, 0.19),  # hits: at or below 0.2 within the budget
        (40.0, 0.5, 0.5),
        (60.0, 0.5, 0.2),
        (70.0, 0.5, None),  # pruned: never a hit
        (95.0, 0.5, 0.1),
        (130.0, 0.5, 0.05),  # after the 100 s budget: not counted
    ]
    runs = [
        bench.RunResult("random", 0, _events(bench, random_rows)),
        bench.RunResult("tpe+hyperband", 0, _events(bench, strategy_rows)),
    ]
    cfg = bench.Config(seeds=(0,), time_budget_s=100.0, trial_budget=60, eval_points=3,
                       fid_samples=64, real_samples=100,
                       strategies=("random", "tpe+hyperband"))  # fmt: skip
    (c,) = model.check(runs, cfg, sims=2_000)
    assert (c.strategy, c.seeds, c.random_trials, c.shared_startup) == ("tpe+hyperband", 1, 9, 1)
    assert (c.hits, c.first_half_hits) == (3, 1)
    assert c.k == pytest.approx(3 * 10 / 9)
    assert c.measured == pytest.approx(50 / 15)
    assert c.predicted is not None and c.predicted > 0
    text = model.check_markdown([c], ["runs.json"])
    assert "| tpe+hyperband | 1 | 9 | 1 | 3.0 (1.0) | 3.3 |" in text


def test_the_check_command_reads_saved_runs_and_refuses_runs_without_random_search(
    model, tmp_path, capsys
):
    import json
    from dataclasses import asdict

    import search_efficiency as bench

    rows = [(10.0, 0.5, 0.3), (20.0, 0.5, 0.2)]
    cfg = bench.Config(seeds=(0,), time_budget_s=30.0, trial_budget=60, eval_points=3,
                       fid_samples=64, real_samples=100, strategies=("random", "tpe"))  # fmt: skip
    runs = [bench.RunResult("random", 0, _events(bench, rows)),
            bench.RunResult("tpe", 0, _events(bench, [(5.0, 0.4, 0.1)]))]  # fmt: skip
    saved = tmp_path / "runs.json"
    saved.write_text(json.dumps({"config": asdict(cfg), "runs": [asdict(r) for r in runs]}))
    out = tmp_path / "check.md"
    assert model.main(["--check", str(saved), "--out", str(out)]) == 0
    assert "| tpe | 1 | 2 | 0 | 1.0 (1.0) |" in out.read_text()

    no_random = tmp_path / "tpe_only.json"
    only = {"config": asdict(cfg) | {"strategies": ["tpe"]}, "runs": [asdict(runs[1])]}
    no_random.write_text(json.dumps(only))
    with pytest.raises(SystemExit) as exit_:
        model.main(["--check", str(no_random)])
    assert exit_.value.code == 2
    assert "no random search" in capsys.readouterr().err
