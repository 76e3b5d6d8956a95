"""The surrogate screen of the search-efficiency benchmark.

Its readings rest on: the recorded trials it fits on being read right (seconds between trial
ends, full histories only), a prediction that follows the recorded FIDs, outcomes that depend on
(seed, trial number) and parameters only, a simulated search that prunes and bills time as the
real benchmark does, and strategies built by the same code as the real ones.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import optuna
import pytest

STEPS = (15, 30, 60)


@pytest.fixture(scope="module")
def surrogate_mod(load_benchmark):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return load_benchmark("search_efficiency_surrogate")


@pytest.fixture(scope="module")
def space(surrogate_mod):
    return surrogate_mod.space_from_text(surrogate_mod.bench.SPACE_YAML)


def _random_params(space, surrogate_mod, n: int, seed: int = 0) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    for _ in range(n):
        trial = study.ask()
        surrogate_mod.sample_values(space, trial)
        out.append(dict(trial.params))
        study.tell(trial, 0.0)
    return out


def _fid(params: dict[str, Any], step: int) -> float:
    # A known landscape: the further lr_g from 1e-3 (in decades), the worse; later steps better.
    return 0.01 * (1.0 + abs(math.log10(params["training.lr_g"] / 1e-3))) * (60 / step) ** 0.5


def _saved_run(space, surrogate_mod, path: Path, n: int = 60, **setting: Any) -> Path:
    """A saved random-search run in search_efficiency.py's JSON format, on the known landscape."""
    bench = surrogate_mod.bench
    cfg = replace(bench.FULL, seeds=(0,), strategies=("random",), **setting)
    events, clock = [], 0.0
    for number, params in enumerate(_random_params(space, surrogate_mod, n)):
        clock += 1.0 + 0.5 * (params["generator.base_width"] / 32)
        history = {str(s): _fid(params, s) for s in STEPS}
        events.append(
            {
                "number": number,
                "state": "COMPLETE",
                "fid": _fid(params, 60),
                "cpu_s": clock,
                "wall_s": clock,
                "history": history,
                "params": params,
            }
        )
    saved = {
        "config": {**asdict(cfg), "seeds": list(cfg.seeds), "strategies": list(cfg.strategies)},
        "runs": [
            {"strategy": "random", "seed": 0, "events": events, "cpu_s": clock, "wall_s": clock}
        ],
    }
    path.write_text(json.dumps(saved))
    return path


def test_recorded_trials_are_the_full_budget_ones_with_the_time_since_the_previous_end(
    surrogate_mod,
):
    bench = surrogate_mod.bench
    p = {"training.lr_g": 1e-3}
    run = bench.RunResult(
        "random",
        0,
        [
            bench.TrialEvent(0, "COMPLETE", 0.01, 2.0, 2.0, {15: 0.03, 30: 0.02, 60: 0.01}, p),
            bench.TrialEvent(1, "PRUNED", None, 2.5, 2.5, {15: 0.09}, p),
            bench.TrialEvent(2, "COMPLETE", 0.02, 5.5, 5.5, {15: 0.05, 30: 0.03, 60: 0.02}, p),
            bench.TrialEvent(3, "COMPLETE", 0.02, 6.0, 6.0, {15: 0.05, 30: 0.03, 60: 0.02}, {}),
        ],
    )
    trials = surrogate_mod.recorded_trials([run], STEPS)
    assert [t.seconds for t in trials] == [2.0, 3.0]  # the pruned one's 0.5 s is not in trial 2's
    assert trials[1].fid == {15: 0.05, 30: 0.03, 60: 0.02}


def test_the_encoder_one_hots_choices_logs_log_ranges_and_zeroes_missing(surrogate_mod, space):
    encoder = surrogate_mod.Encoder(space)
    params = _random_params(space, surrogate_mod, 1)[0]
    params["training.loss"] = "hinge"
    params.pop("training.gp_weight", None)
    row = dict(zip(_column_names(encoder), encoder.row(params)))
    assert row["training.loss=hinge"] == 1.0 and row["training.loss=bce"] == 0.0
    assert row["training.lr_g"] == pytest.approx(math.log(params["training.lr_g"]))
    assert row["generator.depth"] == params["generator.depth"]
    assert row["training.gp_weight"] == 0.0


def _column_names(encoder) -> list[str]:
    names = []
    for name, kind in encoder.columns:
        names.extend(f"{name}={c}" for c in kind) if isinstance(kind, tuple) else names.append(name)
    return names


def test_the_surrogate_follows_the_recorded_landscape_and_its_noise_is_keyed(
    surrogate_mod, space, tmp_path
):
    bench = surrogate_mod.bench
    _, _, runs = bench._read_saved(_saved_run(space, surrogate_mod, tmp_path / "r.json", n=200))
    trials = surrogate_mod.recorded_trials(runs, STEPS)
    encoder = surrogate_mod.Encoder(space)
    quiet = surrogate_mod.Surrogate(trials, encoder, STEPS, noise=0.0, trees=50)
    base = _random_params(space, surrogate_mod, 1, seed=5)[0]
    near, far = {**base, "training.lr_g": 1e-3}, {**base, "training.lr_g": 2e-5}
    assert quiet.outcome(near, (0, 1))[0][60] < quiet.outcome(far, (0, 1))[0][60] / 1.5
    assert quiet.outcome(near, (0, 1)) == quiet.outcome(near, (7, 9))  # no noise: no key effect
    noisy = surrogate_mod.Surrogate(trials, encoder, STEPS, noise=1.0, trees=50)
    assert noisy.outcome(near, (3, 4)) == noisy.outcome(near, (3, 4))
    assert len({noisy.outcome(near, (3, n))[0][60] for n in range(20)}) > 1
    with pytest.raises(ValueError, match="too few"):
        surrogate_mod.Surrogate(trials[:10], encoder, STEPS)


class _Fixed:
    """A surrogate stand-in: every trial takes 1 s at the full budget; FID from the landscape."""

    eval_at = STEPS

    def outcome(self, params, key):
        return {s: _fid(params, s) for s in STEPS}, 1.0


class _AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


def test_a_pruned_trial_costs_its_share_of_the_budget_and_the_search_stops_at_the_budget(
    surrogate_mod, space
):
    run = surrogate_mod.simulate(
        _Fixed(),
        space,
        optuna.samplers.RandomSampler(seed=0),
        _AlwaysPrune(),
        strategy="x",
        seed=0,
        budget_s=1.0,
        count_optuna_time=False,
    )
    # pruned at the first step: 15/60 of a 1 s trial each; the 4th ends at the budget
    assert [e.state for e in run.events] == ["PRUNED"] * 4
    assert [e.cpu_s for e in run.events] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(list(e.history) == [15] and e.fid is None for e in run.events)
    full = surrogate_mod.simulate(
        _Fixed(),
        space,
        optuna.samplers.RandomSampler(seed=0),
        optuna.pruners.NopPruner(),
        strategy="x",
        seed=0,
        budget_s=2.5,
        count_optuna_time=False,
    )
    assert [e.cpu_s for e in full.events] == pytest.approx([1.0, 2.0, 3.0])
    assert full.events[0].fid == _fid(full.events[0].params, 60)


def _search_fixed(surrogate_mod, space, label: str, *, seed: int, budget_s: float):
    """``label``'s search, built as the benchmark builds it, on the fixed landscape."""
    sampler, pruner = surrogate_mod.strategy_parts(label, seed, STEPS)
    return surrogate_mod.simulate(
        _Fixed(),
        space,
        sampler,
        pruner,
        strategy=label,
        seed=seed,
        budget_s=budget_s,
        count_optuna_time=False,
    )


def test_random_search_and_tpes_start_up_trials_draw_the_same_parameters(surrogate_mod, space):
    def run(label: str):
        return _search_fixed(surrogate_mod, space, label, seed=3, budget_s=6.0)

    random_run, tpe_run = run("random"), run("tpe+hyperband")
    assert [e.params for e in tpe_run.events[:3]] == [e.params for e in random_run.events[:3]]
    assert tpe_run.events[3].params != random_run.events[3].params
    again = run("tpe+hyperband")
    assert [e.params for e in again.events] == [e.params for e in tpe_run.events]


def test_strategies_are_built_as_the_real_benchmark_builds_them(surrogate_mod):
    from nas.strategies import FirstObjectivePruner

    sampler, pruner = surrogate_mod.strategy_parts("tpe-prior0.1+hyperband", 0, STEPS)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._parzen_estimator_parameters.prior_weight == 0.1
    assert isinstance(pruner, FirstObjectivePruner)
    default, _ = surrogate_mod.strategy_parts("tpe+hyperband", 0, STEPS)
    assert default._parzen_estimator_parameters.prior_weight == 1.0  # the override was scoped
    oracle, _ = surrogate_mod.strategy_parts("oracle-narrow+hyperband", 0, STEPS)
    assert type(oracle).__name__ == "RegionSampler"
    with pytest.raises(KeyError):
        surrogate_mod.strategy_parts("no-such-strategy", 0, STEPS)


def test_a_recipe_strategy_starts_with_the_recipe_inside_the_space_then_searches(
    surrogate_mod, space
):
    def run(label: str):
        return _search_fixed(surrogate_mod, space, label, seed=5, budget_s=8.0)

    for name, recipe in surrogate_mod.RECIPES.items():
        # every value is one the space allows: Optuna would replace an outside value by a draw
        study = optuna.create_study()
        study.enqueue_trial(recipe)
        trial = study.ask()
        surrogate_mod.sample_values(space, trial)
        assert trial.params == recipe, name
    started = run("tpe+hyperband@sngan")
    assert started.events[0].params == surrogate_mod.RECIPES["sngan"]
    plain = run("tpe+hyperband")
    # after the recipe, the base strategy's own draws: the recipe counts as one of TPE's 3
    # start-up trials, so 2 of random search's draws follow, then TPE's model
    assert [e.params for e in started.events[1:3]] == [e.params for e in plain.events[:2]]
    assert started.events[3].params != plain.events[2].params
    assert run("random@dcgan").events[0].params == surrogate_mod.RECIPES["dcgan"]


def test_the_recipes_own_trials_are_summarised_against_random_of_the_same_seed(surrogate_mod):
    bench = surrogate_mod.bench

    def run(strategy: str, seed: int, fids: list[float | None], cpu: list[float]):
        events = [
            bench.TrialEvent(
                number=i, state="PRUNED" if f is None else "COMPLETE", fid=f, cpu_s=c, wall_s=c
            )
            for i, (f, c) in enumerate(zip(fids, cpu, strict=True))
        ]
        return bench.RunResult(strategy=strategy, seed=seed, events=events)

    runs = [
        # seed 0: random's best within the 10 s budget is 0.5 (0.1 ends past it), the recipe 0.4
        run("random", 0, [0.9, 0.5, 0.1], [2.0, 8.0, 11.0]),
        run("tpe+hyperband@dcgan", 0, [0.4, 0.3], [2.0, 4.0]),
        # seed 1: the recipe (0.6) does not reach random's 0.2
        run("random", 1, [0.2], [3.0]),
        run("tpe+hyperband@dcgan", 1, [0.6], [3.0]),
        # seed 2: the recipe's trial was pruned
        run("random", 2, [0.7], [3.0]),
        run("tpe+hyperband@dcgan", 2, [None, 0.1], [1.0, 3.0]),
    ]
    text = surrogate_mod.recipe_lines(runs, random_best=0.5, budget_s=10.0)
    assert "## The recipes' own trials" in text
    assert (
        "`tpe+hyperband@dcgan`: the recipe's own trial scored a median final FID of 0.5000 "
        "(range 0.4000-0.6000, 2 of 3 searches scored it; random search's median final best: "
        "0.5000); at or below random search's final best of the same seed in 1 of 3 seeds."
    ) in text
    assert surrogate_mod.recipe_lines(runs[:1], random_best=0.5, budget_s=10.0) == ""


def test_the_warm_started_tpe_sees_the_prior_trials_and_stores_none_of_them(
    surrogate_mod, space, tmp_path
):
    bench = surrogate_mod.bench
    _, _, runs = bench._read_saved(_saved_run(space, surrogate_mod, tmp_path / "r.json", n=30))
    prior = surrogate_mod.prior_trials(runs, space)
    assert len(prior) == 30 and prior[0].params == runs[0].events[0].params
    assert prior[0].intermediate_values == {
        15: runs[0].events[0].history[15],
        30: runs[0].events[0].history[30],
        60: runs[0].events[0].history[60],
    }
    study = optuna.create_study()
    view = surrogate_mod.variants.StudyView(study, surrogate_mod.with_prior(prior))
    assert len(view.get_trials()) == 30
    assert view.get_trials(states=(optuna.trial.TrialState.PRUNED,)) == []
    study.tell(study.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 1.0)
    seen = view._get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(seen) == 31 and seen[0].params == study.trials[0].params
    assert len(study.trials) == 1


def test_readings_are_per_seed_against_random_of_the_same_seed(surrogate_mod):
    bench = surrogate_mod.bench

    def run(strategy: str, seed: int, times_fids: list[tuple[float, float]]):
        events = [bench.TrialEvent(i, "COMPLETE", f, t, t) for i, (t, f) in enumerate(times_fids)]
        return bench.RunResult(strategy, seed, events, times_fids[-1][0], times_fids[-1][0])

    runs = [
        run("random", 0, [(10, 0.5), (60, 0.2)]),  # final best 0.2 at 60 s
        run("tpe", 0, [(10, 0.5), (20, 0.1)]),  # reaches it at 20 s: 3x
        run("random", 1, [(30, 0.3)]),
        run("tpe", 1, [(10, 0.4), (100, 0.35)]),  # never: 0
        run("random", 2, [(40, 0.3)]),
        run("tpe", 2, [(20, 0.3)]),  # 2x
    ]
    reading = surrogate_mod.readings(runs, 120.0)["tpe"]
    assert reading.per_seed == 2.0 and reading.at_least_3x == 1 and reading.never == 1
    assert reading.seeds == 3


def test_real_runs_pair_only_with_random_search_of_their_own_group(surrogate_mod, tmp_path):
    bench = surrogate_mod.bench

    def saved(path: Path, runs: list[tuple[str, list[tuple[float, float]]]]) -> Path:
        cfg = replace(bench.FULL, seeds=(0,), strategies=tuple(dict.fromkeys(r for r, _ in runs)))
        path.write_text(
            json.dumps(
                {
                    "config": {**asdict(cfg), "seeds": [0], "strategies": list(cfg.strategies)},
                    "runs": [
                        {
                            "strategy": label,
                            "seed": 0,
                            "cpu_s": 120.0,
                            "wall_s": 120.0,
                            "events": [
                                {
                                    "number": i,
                                    "state": "COMPLETE",
                                    "fid": f,
                                    "cpu_s": t,
                                    "wall_s": t,
                                    "history": {},
                                }
                                for i, (t, f) in enumerate(events)
                            ],
                        }
                        for label, events in runs
                    ],
                }
            )
        )
        return path

    # Day 1: random's final best 0.2 at 60 s, TPE reaches it at 20 s (3x). Day 2, same seed
    # number: random's 0.1 at 10 s, TPE at 40 s (0.25x). Day 2's variant file has no random
    # search of its own and pairs with day 2's.
    day1 = saved(tmp_path / "d1.json", [("random", [(60, 0.2)]), ("tpe", [(20, 0.2)])])
    day2 = saved(tmp_path / "d2.json", [("random", [(10, 0.1)]), ("tpe", [(40, 0.1)])])
    variant = saved(tmp_path / "v2.json", [("tpe-x", [(5, 0.1)])])
    pooled = surrogate_mod.measured_speedups([[day1], [day2, variant]], 120.0)
    assert pooled["tpe"] == [3.0, 0.25]
    assert pooled["tpe-x"] == [2.0]
    assert pooled["random"] == [1.0, 1.0]


def test_fitting_on_runs_of_different_trial_settings_is_refused(surrogate_mod, space, tmp_path):
    a = _saved_run(space, surrogate_mod, tmp_path / "a.json", n=5)
    b = _saved_run(space, surrogate_mod, tmp_path / "b.json", n=5, fid_samples=64)
    with pytest.raises(SystemExit, match="trained or scored differently"):
        surrogate_mod._load_fit_runs([a, b])
    with pytest.raises(SystemExit, match="not a saved run"):
        surrogate_mod._load_fit_runs([tmp_path / "missing.json"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "tpe+hyperband"], "must include random"),
        (["--strategies", "random,bogus"], "unknown strategies"),
        (["--noise", "-1"], "--noise must be a non-negative"),
        (["--seeds", "0"], "at least 1"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(surrogate_mod, args, message, capsys):
    with pytest.raises(SystemExit) as raised:
        surrogate_mod.main(args)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_a_small_screen_writes_its_table(surrogate_mod, space, tmp_path, capsys):
    fit = _saved_run(space, surrogate_mod, tmp_path / "fit.json", n=80)
    out = tmp_path / "screen"
    code = surrogate_mod.main(
        [
            "--fit",
            str(fit),
            "--seeds",
            "2",
            "--time-budget",
            "8",
            "--noise",
            "0.3",
            "--strategies",
            "random,tpe+hyperband",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    text = out.with_suffix(".md").read_text()
    assert "Fitted on 80 recorded full-budget trials of `fit.json`" in text
    assert "2 simulated seeds per strategy, 8 simulated CPU s per search" in text
    rows = [line for line in text.splitlines() if line.startswith("| tpe+hyperband |")]
    assert len(rows) == 1 and "/2 |" in rows[0]
