"""The TPE-variant wrapper of the search-efficiency benchmark: which TPE each strategy gets.

The searches take minutes; these check the plumbing that decides which sampler a search runs
with, which is what the committed comparison of TPE settings rests on.
"""

from __future__ import annotations

from typing import Any

import pytest

from nas import strategies
from nas.strategies import make_sampler


@pytest.fixture(scope="module")
def variants(load_benchmark):
    return load_benchmark("search_efficiency_tpe_variants")


def _settings(sampler: Any) -> tuple[int, bool, float]:
    return (
        sampler._n_ei_candidates,
        sampler._multivariate,
        sampler._parzen_estimator_parameters.prior_weight,
    )


def test_tpe_options_apply_inside_the_block_only(variants):
    default = _settings(make_sampler("tpe", seed=0))
    assert default == (24, True, 1.0)  # gannas's TPE: Optuna's candidates and prior, multivariate

    with variants.tpe_options({"n_ei_candidates": 128, "multivariate": False, "group": False}):
        inside = make_sampler("tpe", seed=0)
    assert _settings(inside)[:2] == (128, False)
    # What the override leaves alone is still gannas's: start-up trials and constant liar.
    assert inside._n_startup_trials == strategies.DEFAULT_TPE_STARTUP_TRIALS
    assert inside._constant_liar is True
    assert _settings(make_sampler("tpe", seed=0)) == default


def test_tpe_options_are_undone_when_the_search_fails(variants):
    with pytest.raises(RuntimeError), variants.tpe_options({"n_ei_candidates": 7}):
        raise RuntimeError("the search crashed")
    assert _settings(make_sampler("tpe", seed=0))[0] == 24


def test_every_variant_is_a_tpe_hyperband_strategy_that_optuna_accepts(variants):
    for label, overrides in variants.TPE_VARIANTS.items():
        assert variants.bench.STRATEGIES[label] == ("tpe", "hyperband", None)
        with variants.tpe_options(overrides):
            sampler = make_sampler("tpe", seed=0)
        assert isinstance(sampler, strategies._TPESampler)
    gamma = variants.TPE_VARIANTS["tpe-gamma25+hyperband"]["gamma"]
    assert [gamma(n) for n in (1, 4, 5, 40, 200)] == [1, 1, 2, 10, 25]
    # make_sampler passes its own start-up count; the variant's replaces it
    with variants.tpe_options(variants.TPE_VARIANTS["tpe-2-startup+hyperband"]):
        assert make_sampler("tpe", seed=0)._n_startup_trials == 2


def test_a_search_runs_with_its_own_variant_and_others_with_the_default(variants, monkeypatch):
    seen: dict[str, tuple[int, bool, float]] = {}

    def fake_search(strategy: str, seed: int, *args: Any) -> str:
        seen[strategy] = _settings(make_sampler("tpe", seed=seed))
        return strategy

    monkeypatch.setattr(variants, "_run_strategy", fake_search)
    for label in ("tpe-univariate+hyperband", "tpe-ei128+hyperband", "tpe+hyperband"):
        assert variants.run_strategy(label, 3, "cfg") == label
    assert seen["tpe-univariate+hyperband"] == (24, False, 1.0)
    assert seen["tpe-ei128+hyperband"] == (128, True, 1.0)
    assert seen["tpe+hyperband"] == (24, True, 1.0)
    # The benchmark's job runner calls the wrapped function, so the pool's searches get it too.
    assert variants.bench.run_strategy is variants.run_strategy


def test_the_gp_strategy_runs_optunas_gp_sampler_in_its_search_only(variants, monkeypatch):
    import optuna

    seen: dict[str, Any] = {}

    def fake_search(strategy: str, seed: int, *args: Any) -> str:
        seen[strategy] = make_sampler("tpe", seed=seed)
        return strategy

    monkeypatch.setattr(variants, "_run_strategy", fake_search)
    assert variants.bench.STRATEGIES["gp+hyperband"] == ("tpe", "hyperband", None)
    for label in ("gp+hyperband", "tpe+hyperband"):
        variants.run_strategy(label, 3, "cfg")
    gp = seen["gp+hyperband"]
    assert isinstance(gp, optuna.samplers.GPSampler)
    assert gp._n_startup_trials == strategies.DEFAULT_TPE_STARTUP_TRIALS
    assert isinstance(seen["tpe+hyperband"], strategies._TPESampler)
    assert isinstance(make_sampler("tpe", seed=0), strategies._TPESampler)

    with pytest.raises(RuntimeError), variants.sampler_instead_of_tpe(variants._gp):
        raise RuntimeError("the search crashed")
    assert isinstance(make_sampler("tpe", seed=0), strategies._TPESampler)


def _trial(x: float, history: dict[int, float], state: Any, value: float | None = None) -> Any:
    import optuna

    return optuna.trial.create_trial(
        params={"x": x},
        distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
        intermediate_values=history,
        state=state,
        value=value,
    )


def test_model_rung_is_the_largest_step_enough_trials_reached(variants):
    from optuna.trial import TrialState

    pruned = [_trial(0.5, {15: 1.0}, TrialState.PRUNED) for _ in range(6)]
    done = [_trial(0.5, {15: 1.0, 30: 1.0, 60: 1.0}, TrialState.COMPLETE, 1.0) for _ in range(3)]
    assert variants.model_rung([], 3) is None
    assert variants.model_rung(pruned + done, 3) == 60
    assert variants.model_rung(pruned + done, 4) == 15  # 9 reached 15, 3 reached 30 and 60
    assert variants.model_rung(done, float("inf")) == 15  # while none has enough: the first


def test_a_rung_model_values_every_finished_trial_at_that_rung(variants):
    from optuna.trial import TrialState

    trials = [
        _trial(0.1, {15: 0.9, 30: 0.5, 60: 0.2}, TrialState.COMPLETE, 0.2),
        _trial(0.8, {15: 0.3}, TrialState.PRUNED),
        _trial(0.4, {}, TrialState.RUNNING),
        _trial(0.3, {15: 0.7, 30: 0.6}, TrialState.PRUNED),
    ]
    seen = variants.at_model_rung(float("inf"))(trials)
    assert [(t.state, t.value) for t in seen] == [
        (TrialState.COMPLETE, 0.9),
        (TrialState.COMPLETE, 0.3),
        (TrialState.RUNNING, None),
        (TrialState.COMPLETE, 0.7),
    ]
    # at step 30 (two trials reached it) the trial pruned at 15 drops out
    assert [t.value for t in variants.at_model_rung(2)(trials)] == [0.5, None, 0.6]
    # the study's own trials are untouched
    assert trials[1].state == TrialState.PRUNED and trials[0].value == 0.2


def test_a_rung_model_tpe_follows_the_rung_where_gannass_tpe_follows_completed_trials(
    variants, monkeypatch
):
    import statistics

    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seen: dict[str, Any] = {}

    def fake_search(strategy: str, seed: int, *args: Any) -> str:
        seen[strategy] = make_sampler("tpe", seed=seed)
        return strategy

    monkeypatch.setattr(variants, "_run_strategy", fake_search)
    for label in (*variants.RUNG_MODELS, "tpe+hyperband"):
        assert variants.bench.STRATEGIES[label] == ("tpe", "hyperband", None)
        variants.run_strategy(label, 0, "cfg")
        assert isinstance(seen[label], strategies._TPESampler)
        assert seen[label]._constant_liar is True
    assert type(make_sampler("tpe", seed=0)) is strategies._TPESampler

    def proposals(sampler: Any) -> float:
        # Completed trials near x = 0.1 ended best; the many pruned near 0.8 were best at step 15.
        study = optuna.create_study(sampler=sampler)
        for i in range(4):
            x = 0.05 + 0.03 * i
            study.add_trial(_trial(x, {15: 0.9, 30: 0.5, 60: 0.1}, TrialState.COMPLETE, 0.1))
        for i in range(30):
            x = i / 29
            study.add_trial(_trial(x, {15: abs(x - 0.8)}, TrialState.PRUNED))
        xs = []
        for _ in range(15):
            trial = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
            xs.append(trial.params["x"])
            study.tell(trial, state=TrialState.FAIL)
        return statistics.median(xs)

    assert proposals(seen["tpe-rung15-model+hyperband"]) > 0.6
    assert proposals(seen["tpe+hyperband"]) < 0.3


def test_each_evolution_variant_runs_its_own_population_and_tournament(variants, monkeypatch):
    from nas.samplers import RegularizedEvolutionSampler

    seen: dict[str, Any] = {}

    def fake_search(strategy: str, seed: int, *args: Any) -> str:
        seen[strategy] = make_sampler("tpe", seed=seed)
        return strategy

    monkeypatch.setattr(variants, "_run_strategy", fake_search)
    for label, (population, tournament) in variants.EVOLUTION_VARIANTS.items():
        assert variants.bench.STRATEGIES[label] == ("tpe", "hyperband", None)
        variants.run_strategy(label, 5, "cfg")
        sampler = seen[label]
        assert isinstance(sampler, RegularizedEvolutionSampler)
        assert (sampler.population_size, sampler.sample_size) == (population, tournament)
    # gannas's own evolution is a strategy of the benchmark itself, with the sampler's defaults
    assert variants.bench.STRATEGIES["evolution+hyperband"] == ("evolution", "hyperband", None)
    default = make_sampler("evolution", seed=0)
    assert (default.population_size, default.sample_size) == (10, 3)
    assert isinstance(make_sampler("tpe", seed=0), strategies._TPESampler)
