"""The oracle ceiling of the search-efficiency benchmark: its region sampler and its landscape.

The committed ceiling numbers rest on two things checked here: the oracle samples only inside
its region (and everywhere else at random), and the landscape's shares are counted right.
"""

from __future__ import annotations

import itertools
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from nas import strategies
from nas.strategies import make_sampler


@pytest.fixture(scope="module")
def ceiling(load_benchmark):
    return load_benchmark("search_efficiency_ceiling")


def test_narrowed_keeps_scale_and_grid_and_stays_inside_the_original(ceiling):
    lr = ceiling.narrowed(FloatDistribution(1e-5, 3e-3, log=True), (3e-4, 1.0))
    assert (lr.low, lr.high, lr.log) == (3e-4, 3e-3, True)
    width = ceiling.narrowed(IntDistribution(8, 32, step=8), (10, 30))
    assert (width.low, width.high, width.step) == (16, 24, 8)
    depth = ceiling.narrowed(IntDistribution(2, 3), (2, 2))
    assert (depth.low, depth.high) == (2, 2)
    with pytest.raises(TypeError):
        ceiling.narrowed(optuna.distributions.CategoricalDistribution(["a", "b"]), (0, 1))


def test_the_region_sampler_samples_its_parameters_inside_the_region_only(ceiling):
    region = {"lr": (3e-4, 3e-3), "depth": (2, 2)}
    study = optuna.create_study(sampler=ceiling.RegionSampler(region, seed=0))

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float("lr", 1e-5, 3e-3, log=True)
        depth = trial.suggest_int("depth", 2, 3)
        other = trial.suggest_float("other", 1e-5, 3e-3, log=True)
        return lr + depth + other

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=200)
    lrs = [t.params["lr"] for t in study.trials]
    others = [t.params["other"] for t in study.trials]
    assert all(3e-4 <= v <= 3e-3 for v in lrs)
    assert {t.params["depth"] for t in study.trials} == {2}
    # outside the region the sampler is random search over the whole range
    assert min(others) < 1e-4 and max(others) > 1e-3
    assert all(ceiling.in_region(t.params, region) for t in study.trials)


def test_in_region_needs_every_parameter(ceiling):
    region = {"a": (1, 2), "b": (0.5, 1.0)}
    assert ceiling.in_region({"a": 1, "b": 0.5}, region)
    assert not ceiling.in_region({"a": 3, "b": 0.5}, region)
    assert not ceiling.in_region({"a": 1}, region)


def test_the_oracle_strategies_search_with_the_region_sampler_and_their_own_pruner(
    ceiling, monkeypatch
):
    seen: dict[str, Any] = {}

    def fake_search(strategy: str, seed: int, *args: Any) -> str:
        seen[strategy] = make_sampler("tpe", seed=seed)
        return strategy

    monkeypatch.setattr(ceiling.variants, "_run_strategy", fake_search)
    assert ceiling.bench.STRATEGIES["oracle-region"] == ("tpe", "none", None)
    assert ceiling.bench.STRATEGIES["oracle-region+hyperband"] == ("tpe", "hyperband", None)
    assert ceiling.bench.STRATEGIES["oracle-narrow+hyperband"] == ("tpe", "hyperband", None)
    oracles = ("oracle-region", "oracle-region+hyperband", "oracle-narrow+hyperband")
    for label in (*oracles, "tpe+hyperband"):
        ceiling.bench.run_strategy(label, 3, "cfg")
    for label in oracles:
        assert isinstance(seen[label], ceiling.RegionSampler)
        assert seen[label]._region == ceiling.REGION
    assert seen["oracle-region+hyperband"]._choices == {}
    assert seen["oracle-narrow+hyperband"]._choices == ceiling.NARROW_CHOICES
    ceiling.bench.run_strategy("oracle-lr-g+hyperband", 3, "cfg")
    assert seen["oracle-lr-g+hyperband"]._region == {"training.lr_g": (2e-4, 3e-3)}
    assert isinstance(seen["tpe+hyperband"], strategies._TPESampler)
    assert isinstance(make_sampler("tpe", seed=0), strategies._TPESampler)


def test_landscape_counts_the_best_tenth_and_the_region_share(ceiling):
    bench = ceiling.bench
    events = []
    for i in range(20):
        good = i < 2  # the two lowest FIDs are the best tenth
        params = {
            "training.lr_g": 1e-3 if good or i % 2 else 1e-5,
            "training.lr_d": 1e-3,
            "generator.depth": 2 if good or i % 4 == 0 else 3,
            "training.loss": "hinge" if good else "bce",
        }
        fid = 0.01 * (i + 1)
        events.append(bench.TrialEvent(i, "COMPLETE", fid, float(i), float(i), {}, params))
    events.append(bench.TrialEvent(20, "PRUNED", None, 21.0, 21.0, {15: 0.5}, {"x": 1}))
    region = {"training.lr_g": (2e-4, 3e-3), "generator.depth": (2, 2)}
    land = ceiling.landscape([bench.RunResult("random", 0, events)], region)
    assert (land.trials, land.top_trials) == (20, 2)
    assert land.top_threshold == pytest.approx(0.02)
    assert land.categorical["training.loss"] == {"bce": (0, 18), "hinge": (2, 2)}
    assert land.categorical["generator.depth"]["2"][0] == 2
    # inside: the 2 good ones, plus odd i with depth 2 (i % 4 == 0 is even: none) -> 2 of 20
    assert land.region_share == pytest.approx(2 / 20)
    assert land.region_top_share == 1.0
    text = ceiling.landscape_markdown(land, "cmd")
    assert "hinge: 2/2" in text and "10% of the trials and 100% of the best tenth" in text
    assert "`generator.depth` in [2, 2]" in text
    with_runs = ceiling.landscape_markdown(land, "cmd", "python run")
    assert "reading the runs of `python run`" in with_runs


def test_landscape_refuses_runs_without_recorded_parameters(ceiling):
    bench = ceiling.bench
    old = bench.RunResult("random", 0, [bench.TrialEvent(0, "COMPLETE", 0.1, 1.0, 1.0)])
    with pytest.raises(ValueError, match="recorded parameters"):
        ceiling.landscape([old])


def _saved_runs(bench, path, events) -> None:
    import json
    from dataclasses import asdict

    cfg = bench.Config(**{**asdict(bench.QUICK), "strategies": ("random",)})
    runs = [bench.RunResult("random", 0, events)]
    saved = {"config": asdict(cfg), "runs": [asdict(r) for r in runs], "command": "python run"}
    path.write_text(json.dumps(saved))


def test_the_landscape_command_writes_its_markdown_and_refuses_old_results(
    ceiling, tmp_path, capsys
):
    bench = ceiling.bench
    inside = {"training.lr_g": 1e-3, "training.lr_d": 1e-3, "generator.depth": 2}
    inside["discriminator.width"] = 16
    events = [
        bench.TrialEvent(i, "COMPLETE", 0.01 * (i + 1), float(i), float(i), {}, dict(inside))
        for i in range(10)
    ]
    saved = tmp_path / "landscape.json"
    _saved_runs(bench, saved, events)
    out = tmp_path / "where.md"
    assert ceiling.main(["--landscape", str(saved), "--out", str(out)]) == 0
    text = out.read_text()
    assert "10 completed random-search trials" in text
    assert "reading the runs of `python run`" in text
    assert "100% of the trials and 100% of the best tenth" in text

    old = tmp_path / "old.json"
    _saved_runs(bench, old, [bench.TrialEvent(0, "COMPLETE", 0.1, 1.0, 1.0)])
    with pytest.raises(SystemExit) as exc:
        ceiling.main(["--landscape", str(old)])
    assert exc.value.code == 2
    assert "no completed trials with recorded parameters" in capsys.readouterr().err
    assert not old.with_suffix(".md").exists()


def test_narrowed_choices_keeps_the_spaces_order_and_refuses_what_it_cannot_cut(ceiling):
    norm = optuna.distributions.CategoricalDistribution(["batch", "instance", "none"])
    assert ceiling.narrowed_choices(norm, ("none", "batch")).choices == ("batch", "none")
    with pytest.raises(ValueError, match="none of"):
        ceiling.narrowed_choices(norm, ("layer",))
    with pytest.raises(TypeError):
        ceiling.narrowed_choices(FloatDistribution(0.0, 1.0), (0.5,))


def test_the_narrow_oracle_keeps_only_its_choices_and_the_study_sees_the_full_space(ceiling):
    region = {"lr": (3e-4, 3e-3)}
    choices = {"norm": ("batch", "instance"), "beta1": (0.0,)}
    sampler = ceiling.RegionSampler(region, seed=0, choices=choices)
    study = optuna.create_study(sampler=sampler)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-5, 3e-3, log=True)
        trial.suggest_categorical("norm", ["batch", "instance", "none"])
        trial.suggest_categorical("beta1", [0.0, 0.5])
        trial.suggest_categorical("act", ["relu", "silu", "gelu"])
        return 0.0

    study.optimize(objective, n_trials=150)
    assert {t.params["norm"] for t in study.trials} == {"batch", "instance"}
    assert {t.params["beta1"] for t in study.trials} == {0.0}
    assert {t.params["act"] for t in study.trials} == {"relu", "silu", "gelu"}
    # the stored distributions are the space's own: the trials are ordinary trials of the space
    assert study.trials[0].distributions["norm"].choices == ("batch", "instance", "none")
    assert all(ceiling.in_region(t.params, region, choices) for t in study.trials)
    assert not ceiling.in_region({"lr": 1e-3, "norm": "none", "beta1": 0.0}, region, choices)
    assert not ceiling.in_region({"lr": 1e-3, "norm": "batch"}, region, choices)


def test_the_landscape_reports_the_narrow_regions_share(ceiling):
    bench = ceiling.bench
    events = []
    for i in range(10):
        params = {"training.lr_g": 1e-3, "training.loss": "hinge" if i < 3 else "wgan_gp"}
        events.append(bench.TrialEvent(i, "COMPLETE", 0.01 * (i + 1), 0.0, 0.0, {}, params))
    runs = [bench.RunResult("random", 0, events)]
    region = {"training.lr_g": (2e-4, 3e-3)}
    wide = ceiling.landscape(runs, region, top=0.2)
    narrow = ceiling.landscape(runs, region, top=0.2, choices={"training.loss": ("hinge",)})
    assert (wide.region_share, wide.region_top_share) == (1.0, 1.0)
    assert narrow.region_share == pytest.approx(0.3) and narrow.region_top_share == 1.0
    text = ceiling.landscape_markdown(wide, "cmd", narrow=narrow)
    assert (
        "The narrow oracle's region (`training.lr_g` in [0.0002, 0.003], `training.loss` in "
        "{hinge}) holds 30.0% of the trials and 100% of the best tenth."
    ) in text


def _contact_search(sampler: Any, objective: Any, n_trials: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study


def _lr_and_depth(trial: optuna.Trial) -> float:
    return trial.suggest_float("lr", 1e-5, 3e-3, log=True) + trial.suggest_int("depth", 2, 3)


def test_a_contact_oracle_is_random_search_until_a_trial_lands_in_its_region(ceiling):
    stages = [({"lr": (2e-3, 3e-3)}, {})]  # about 7 % of the log range
    random = _contact_search(optuna.samplers.RandomSampler(seed=5), _lr_and_depth, 60)
    contact = _contact_search(ceiling.ContactSampler(stages, seed=5), _lr_and_depth, 60)
    first = next(t.number for t in random.trials if t.params["lr"] >= 2e-3)
    assert 0 < first < 50  # seed 5 finds the region after a few trials
    # the same draws as random search up to and including the first contact ...
    assert [t.params for t in contact.trials[: first + 1]] == [
        t.params for t in random.trials[: first + 1]
    ]
    # ... and only the region from then on, the rest of the space still at random
    after = contact.trials[first + 1 :]
    assert all(t.params["lr"] >= 2e-3 for t in after)
    assert {t.params["depth"] for t in after} == {2, 3}


def test_a_contact_oracle_moves_to_the_finest_stage_it_has_touched(ceiling):
    coarse = ({"lr": (2e-4, 3e-3)}, {})
    fine = ({"lr": (2e-4, 3e-3), "depth": (2, 2)}, {})
    sampler = ceiling.ContactSampler([coarse, fine], seed=0)
    study = optuna.create_study(sampler=sampler)
    dists = {
        "lr": FloatDistribution(1e-5, 3e-3, log=True),
        "depth": IntDistribution(2, 3),
    }
    assert sampler._stage(study) == ({}, {})
    study.add_trial(
        optuna.trial.create_trial(params={"lr": 1e-3, "depth": 3}, distributions=dists, value=1.0)
    )
    assert sampler._stage(study) == coarse
    # a running trial inside the fine stage is no contact yet: it has no result
    study.enqueue_trial({"lr": 1e-3, "depth": 2})
    running = study.ask(dists)
    assert ceiling.in_region(running.params, fine[0])
    assert sampler._stage(study) == coarse
    # a pruned one is: the search has tried that part of the space
    study.tell(running, state=optuna.trial.TrialState.PRUNED)
    assert sampler._stage(study) == fine


def test_a_contact_oracle_draws_all_of_a_trials_parameters_in_one_stage(ceiling):
    region = {"lr": (2e-3, 3e-3), "depth": (2, 2)}
    study = optuna.create_study(sampler=ceiling.ContactSampler([(region, {})], seed=1))
    dists = {"lr": FloatDistribution(1e-5, 3e-3, log=True), "depth": IntDistribution(2, 3)}
    trial = study.ask()
    trial.suggest_float("lr", 1e-5, 3e-3, log=True)  # drawn before any contact
    # another worker's trial lands in the region while this one is being sampled
    study.add_trial(
        optuna.trial.create_trial(params={"lr": 2.5e-3, "depth": 2}, distributions=dists, value=1.0)
    )
    depths = {trial.suggest_int("depth", 2, 3)}
    for _ in range(30):  # the trials after it sample inside the region
        later = study.ask(dists)
        assert ceiling.in_region(later.params, region)
        study.tell(later, 1.0)
    # the interrupted trial's later parameters are still drawn at random over the whole space
    for seed in range(2, 30):
        study = optuna.create_study(sampler=ceiling.ContactSampler([(region, {})], seed=seed))
        trial = study.ask()
        trial.suggest_float("lr", 1e-5, 3e-3, log=True)
        study.add_trial(
            optuna.trial.create_trial(
                params={"lr": 2.5e-3, "depth": 2}, distributions=dists, value=1.0
            )
        )
        depths.add(trial.suggest_int("depth", 2, 3))
    assert depths == {2, 3}


def test_the_contact_strategies_learn_their_stages_coarse_to_fine(ceiling, monkeypatch):
    seen: dict[str, Any] = {}

    def fake_search(strategy: str, seed: int, *args: Any) -> str:
        seen[strategy] = make_sampler("tpe", seed=seed)
        return strategy

    monkeypatch.setattr(ceiling.variants, "_run_strategy", fake_search)
    for label in ceiling.CONTACT_STAGES:
        assert ceiling.bench.STRATEGIES[label] == ("tpe", "hyperband", None)
        ceiling.bench.run_strategy(label, 3, "cfg")
        assert isinstance(seen[label], ceiling.ContactSampler)
    stages = seen["contact-lr-box-narrow+hyperband"]._stages
    assert stages[-1] == (ceiling.REGION, ceiling.NARROW_CHOICES)
    # each stage lies inside the one before it: its bounds are at least as tight
    for outer, inner in itertools.pairwise(stages):
        for name, (lo, hi) in outer[0].items():
            assert inner[0][name][0] >= lo and inner[0][name][1] <= hi
