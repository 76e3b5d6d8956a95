"""Sampler and pruner factories, and pruning in single- and multi-objective studies."""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.pruners import HyperbandPruner, MedianPruner, NopPruner, SuccessiveHalvingPruner
from optuna.samplers import GridSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from gannas.errors import GannasError
from nas.samplers import RegularizedEvolutionSampler
from nas.settings import eval_steps
from nas.strategies import (
    DEFAULT_TPE_STARTUP_TRIALS,
    PRUNER_NAMES,
    SAMPLER_NAMES,
    FirstObjectivePruner,
    hyperband_last_rung,
    make_pruner,
    make_sampler,
    report_intermediate,
    should_prune,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

EVAL_AT = (100, 300, 900)
"""Generator steps at which the simulated trials report FID; the budget is the last."""


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty Optuna SQLite database in WAL mode, built once: creating the schema and
    committing in rollback-journal mode take seconds on a busy machine."""
    path = tmp_path_factory.mktemp("template") / "empty.db"
    optuna.storages.RDBStorage(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    return path


@pytest.fixture
def sqlite_url(empty_db: Path, tmp_path: Path) -> str:
    path = tmp_path / "study.db"
    shutil.copy(empty_db, path)
    return f"sqlite:///{path}"


def conditional_space(trial: optuna.trial.BaseTrial) -> list[float]:
    loss = trial.suggest_categorical("training.loss", ["hinge", "wgan_gp"])
    depth = trial.suggest_int("generator.depth", 2, 5)
    lr = trial.suggest_float("training.lr_g", 1e-5, 1e-3, log=True)
    gp = trial.suggest_float("training.gp_weight", 1.0, 20.0, log=True) if loss == "wgan_gp" else 0
    fid = (depth - 4) ** 2 + abs(lr - 2e-4) * 1e3 + gp / 10
    return [fid, float(depth * 1000)]


# --- samplers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("tpe", TPESampler),
        ("random", RandomSampler),
        ("nsga2", NSGAIISampler),
        ("evolution", RegularizedEvolutionSampler),
    ],
)
@pytest.mark.parametrize("n_objectives", [1, 2])
def test_samplers_search_a_conditional_space(name: str, kind: type, n_objectives: int) -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        sampler = make_sampler(name, seed=seed, n_objectives=n_objectives, n_startup_trials=4)
        assert isinstance(sampler, kind)
        study = optuna.create_study(directions=["minimize"] * n_objectives, sampler=sampler)
        if n_objectives == 1:
            study.optimize(lambda t: conditional_space(t)[0], n_trials=12)
        else:
            study.optimize(conditional_space, n_trials=12)
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 12
        return [t.params for t in study.trials]

    first = run(0)
    assert first == run(0)  # seeded
    assert any("training.gp_weight" in p for p in first)
    assert any("training.gp_weight" not in p for p in first)


def test_tpe_is_multivariate_grouped_and_constant_liar() -> None:
    sampler = make_sampler("tpe", seed=0)
    assert isinstance(sampler, TPESampler)
    assert sampler._multivariate is True
    assert sampler._group is True
    assert sampler._constant_liar is True
    assert sampler._n_startup_trials == 3  # DEFAULT_TPE_STARTUP_TRIALS, not Optuna's 10
    longer = make_sampler("tpe", seed=0, n_startup_trials=10)
    assert isinstance(longer, TPESampler)
    assert longer._n_startup_trials == 10


def test_tpe_models_once_its_start_up_trials_are_done() -> None:
    # The first DEFAULT_TPE_STARTUP_TRIALS trials are random draws (the same as random search
    # with the same seed); from the next one on TPE proposes near the best trial so far.
    space = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    startup = DEFAULT_TPE_STARTUP_TRIALS

    def run(name: str) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(name, seed=3))
        for _ in range(startup + 3):
            trial = study.ask(space)
            study.tell(trial, abs(trial.params["x"] - 0.5))
        return [t.params["x"] for t in study.trials]

    tpe, rnd = run("tpe"), run("random")
    assert tpe[:startup] == rnd[:startup]
    assert all(a != b for a, b in zip(tpe[startup:], rnd[startup:], strict=True))


def test_population_sizes_follow_startup_trials() -> None:
    evolution = make_sampler("evolution", seed=0, n_startup_trials=12)
    assert isinstance(evolution, RegularizedEvolutionSampler)
    assert (evolution.population_size, evolution.sample_size) == (12, 3)
    nsga2 = make_sampler("nsga2", seed=0, n_objectives=2)
    assert isinstance(nsga2, NSGAIISampler)
    assert nsga2._population_size == 10


def test_tpe_samples_after_pruned_trials_in_a_multi_objective_study() -> None:
    # Optuna's TPE ranks pruned trials with study.direction, which multi-objective studies refuse;
    # gannas prunes those studies on FID, so its TPE must cope.
    study = optuna.create_study(
        directions=["minimize", "minimize"],
        sampler=make_sampler("tpe", seed=0, n_objectives=2, n_startup_trials=2),
    )
    for i in range(8):
        trial = study.ask()
        x = trial.suggest_float("x", 0.0, 1.0)
        report_intermediate(study, trial, 100, x + i)
        if i % 2:
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, [x, 1 - x])
    trial = study.ask()
    assert 0.0 <= trial.suggest_float("x", 0.0, 1.0) <= 1.0


def test_grid_enumerates_every_point_once() -> None:
    grid = {
        "generator.depth": [2, 3, 4],
        "training.loss": ["hinge", "bce"],
        "generator.width": IntDistribution(32, 64, step=32),
        "discriminator.sn": {"type": "categorical", "choices": [True, False]},
    }
    sampler = make_sampler("grid", seed=0, grid=grid)
    assert isinstance(sampler, GridSampler)
    study = optuna.create_study(sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("generator.depth", 2, 4)
        trial.suggest_categorical("training.loss", ["hinge", "bce"])
        trial.suggest_int("generator.width", 32, 64, step=32)
        trial.suggest_categorical("discriminator.sn", [True, False])
        return 0.0

    study.optimize(objective, n_trials=100)  # the grid sampler stops the study when done
    seen = [tuple(sorted(t.params.items())) for t in study.trials]
    names = ["generator.depth", "training.loss", "generator.width", "discriminator.sn"]
    combos = itertools.product([2, 3, 4], ["hinge", "bce"], [32, 64], [True, False])
    expected = {tuple(sorted(zip(names, combo, strict=True))) for combo in combos}
    assert len(seen) == len(expected) == 24
    assert set(seen) == expected


def _grid_objective(trial: optuna.Trial) -> float:
    loss = trial.suggest_categorical("training.loss", ["hinge", "wgan_gp"])
    if loss == "wgan_gp":
        trial.suggest_categorical("training.gp_weight", [5.0, 10.0])
    return 0.0


_POINTS = [
    {"training.loss": "hinge"},
    {"training.loss": "wgan_gp", "training.gp_weight": 5.0},
    {"training.loss": "wgan_gp", "training.gp_weight": 10.0},
]


def test_a_grid_of_points_visits_each_once_and_continues_where_it_stopped() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, sampler=make_sampler("grid", seed=3, grid=_POINTS))
    study.optimize(_grid_objective, n_trials=2)
    # Continued by a new sampler (a new process) with the same seed: the third point, then stop.
    again = optuna.load_study(
        study_name=study.study_name, storage=storage, sampler=make_sampler("grid", seed=3, grid=_POINTS)
    )
    again.optimize(_grid_objective, n_trials=100)
    assert sorted((t.params for t in again.trials), key=str) == sorted(_POINTS, key=str)


def test_a_grid_of_points_matches_an_enqueued_retry_to_its_point() -> None:
    study = optuna.create_study(sampler=make_sampler("grid", seed=0, grid=_POINTS))
    study.enqueue_trial(_POINTS[2])  # as the controller retries a trial whose worker was lost
    study.optimize(_grid_objective, n_trials=100)
    assert study.trials[0].params == _POINTS[2]
    assert sorted((t.params for t in study.trials), key=str) == sorted(_POINTS, key=str)


def test_grid_enumerates_stepped_floats() -> None:
    grid = {"training.beta1": FloatDistribution(0.0, 0.5, step=0.25)}
    sampler = make_sampler("grid", seed=None, grid=grid)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("training.beta1", 0.0, 0.5, step=0.25), n_trials=10)
    assert sorted(t.params["training.beta1"] for t in study.trials) == [0.0, 0.25, 0.5]


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (None, "needs a grid"),
        ({}, "needs a grid"),
        ({"training.lr_g": FloatDistribution(1e-5, 1e-3, log=True)}, "continuous float range"),
        ({"training.lr_g": {"type": "float", "low": 1e-5, "high": 1e-3}}, "continuous float"),
        ({"training.lr_g": {"low": 1e-5, "high": 1e-3}}, "spec with type"),
        ({"generator.depth": []}, "empty list"),
        ({"training.loss": "hinge"}, "must be a list"),
        ({"generator.depth": [2, [3]]}, "grid values must be"),
        ({"a": list(range(1000)), "b": list(range(1000))}, "more than"),
        # a grid given as its points
        ([], "needs a grid, but got an empty list of points"),
        (["hinge"], "must list points"),
        ([{"generator.depth": [2]}], "grid values must be"),
        ([{"a": i} for i in range(100_001)], "more than"),
    ],
)
def test_grid_errors_name_the_problem(grid: Any, message: str) -> None:
    with pytest.raises(GannasError, match=message):
        make_sampler("grid", seed=0, grid=grid)


def test_unknown_sampler_lists_the_known_ones() -> None:
    with pytest.raises(GannasError) as excinfo:
        make_sampler("bayes", seed=0)
    for name in SAMPLER_NAMES:
        assert name in str(excinfo.value)
    assert "'bayes'" in str(excinfo.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_startup_trials": 0}, "n_startup_trials"),
        ({"n_objectives": 0}, "n_objectives"),
        ({"seed": -3}, "seed"),
        ({"grid": {"a": [1, 2]}}, "use sampler 'grid'"),
    ],
)
def test_sampler_argument_errors(kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"seed": 0, **kwargs}
    with pytest.raises(GannasError, match=message):
        make_sampler("tpe", **options)


# --- pruners ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("median", MedianPruner),
        ("successive_halving", SuccessiveHalvingPruner),
        ("hyperband", HyperbandPruner),
    ],
)
@pytest.mark.parametrize("n_objectives", [1, 2])
def test_make_pruner_wraps_the_named_pruner(name: str, kind: type, n_objectives: int) -> None:
    pruner = make_pruner(name, min_resource=100, max_resource=900, n_objectives=n_objectives)
    assert isinstance(pruner, FirstObjectivePruner)
    assert isinstance(pruner.inner, kind)
    assert pruner.max_resource == 900


def test_none_never_prunes() -> None:
    assert isinstance(make_pruner("none", min_resource=0, max_resource=0), NopPruner)
    assert set(PRUNER_NAMES) == {"none", "median", "successive_halving", "hyperband"}


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("asha", {}, "expected one of none, median, successive_halving, hyperband"),
        ("hyperband", {"min_resource": 0}, "min_resource"),
        ("hyperband", {"min_resource": 500, "max_resource": 300}, "max_resource"),
        ("successive_halving", {"reduction_factor": 1}, "reduction_factor"),
        ("median", {"n_objectives": 0}, "n_objectives"),
    ],
)
def test_pruner_errors(name: str, kwargs: dict[str, Any], message: str) -> None:
    options: dict[str, Any] = {"min_resource": 100, "max_resource": 900, **kwargs}
    with pytest.raises(GannasError, match=message):
        make_pruner(name, **options)


def test_optuna_refuses_report_in_multi_objective_studies() -> None:
    # The reason report_intermediate and should_prune exist: if Optuna ever lifts this, the
    # workaround can go.
    study = optuna.create_study(directions=["minimize", "minimize"])
    trial = study.ask()
    with pytest.raises(NotImplementedError):
        trial.report(1.0, 0)
    with pytest.raises(NotImplementedError):
        trial.should_prune()


def run_trial(
    study: optuna.Study, pruner: optuna.pruners.BasePruner, final_fid: float, n_objectives: int
) -> TrialState:
    """A simulated trial: FID decays towards ``final_fid``; the worker asks after each report."""
    trial = study.ask()
    trial.suggest_int("generator.depth", 2, 5)
    for step in EVAL_AT:
        report_intermediate(study, trial._trial_id, step, final_fid * (EVAL_AT[-1] / step) ** 0.3)
        if should_prune(study, trial._trial_id, pruner):
            study.tell(trial, state=TrialState.PRUNED)
            return TrialState.PRUNED
    study.tell(trial, [final_fid] + [1.0] * (n_objectives - 1))
    return TrialState.COMPLETE


def history(
    study: optuna.Study, pruner: optuna.pruners.BasePruner, n_objectives: int, n: int = 12
) -> None:
    """``n`` ordinary trials with FIDs between 50 and 61."""
    for i in range(n):
        run_trial(study, pruner, 50.0 + i % 12, n_objectives)


@pytest.mark.parametrize("name", ["median", "successive_halving", "hyperband"])
@pytest.mark.parametrize("n_objectives", [1, 2])
def test_clearly_bad_trials_are_pruned_and_good_ones_are_not(name: str, n_objectives: int) -> None:
    pruner = make_pruner(
        name, min_resource=EVAL_AT[0], max_resource=EVAL_AT[-1], n_objectives=n_objectives
    )
    study = optuna.create_study(
        study_name=f"{name}-{n_objectives}",
        directions=["minimize"] * n_objectives,
        sampler=RandomSampler(seed=0),
        pruner=pruner,
    )
    history(study, pruner, n_objectives)
    bad = [run_trial(study, pruner, 500.0, n_objectives) for _ in range(6)]
    good = [run_trial(study, pruner, 20.0, n_objectives) for _ in range(3)]
    assert all(state == TrialState.COMPLETE for state in good)
    if name == "hyperband":
        # These evaluation steps (100, 300, 900) are not the controller's budget / 2**k: the
        # most conservative bracket's first rung (400) falls between the last two evaluations,
        # so its trials train to the budget, where pruning is disabled; the other brackets prune.
        assert bad.count(TrialState.PRUNED) >= 3
    else:
        assert all(state == TrialState.PRUNED for state in bad)
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert all(max(t.intermediate_values) < EVAL_AT[-1] for t in pruned)


def _worse_and_worse(
    pruner: optuna.pruners.BasePruner, eval_at: Sequence[int]
) -> list[TrialState]:
    """30 trials, each with a worse FID at every step than every trial before it."""
    # Optuna's Hyperband puts a trial in a bracket by a hash of the study's name and the trial's
    # number; an unnamed study gets a random name, which made the brackets' sizes random too.
    study = optuna.create_study(
        study_name="worse-and-worse", sampler=RandomSampler(seed=0), pruner=pruner
    )
    states = []
    for i in range(30):
        trial = study.ask()
        trial.suggest_int("generator.depth", 2, 5)
        state = TrialState.COMPLETE
        for step in eval_at:
            report_intermediate(study, trial._trial_id, step, 10.0 + i)
            if should_prune(study, trial._trial_id, pruner):
                state = TrialState.PRUNED
                break
        study.tell(trial, 10.0 + i if state == TrialState.COMPLETE else None, state=state)
        states.append(state)
    return states


def test_every_hyperband_bracket_prunes_at_the_controllers_evaluation_steps() -> None:
    eval_at = eval_steps(60, 3)  # what the controller uses: (15, 30, 60)
    assert eval_at == (15, 30, 60)
    ours = _worse_and_worse(
        make_pruner("hyperband", min_resource=eval_at[0], max_resource=eval_at[-1]), eval_at
    )
    # Only the first trial of each of the two brackets (nothing to compare it with yet) trains
    # to the budget; every later one is worse than a trial of its bracket at 15 or 30 steps.
    assert ours.count(TrialState.COMPLETE) == 2
    assert hyperband_last_rung(15, 60, 2) == 30
    # Optuna's Hyperband over the full range has a bracket whose first rung is the budget, where
    # nothing is pruned: its trials all train to the end, however bad.
    full_range = FirstObjectivePruner(
        HyperbandPruner(min_resource=15, max_resource=60, reduction_factor=2), max_resource=60
    )
    assert _worse_and_worse(full_range, eval_at).count(TrialState.COMPLETE) >= 6


def test_multi_objective_pruning_on_sqlite(sqlite_url: str) -> None:
    pruner = make_pruner(
        "hyperband", min_resource=EVAL_AT[0], max_resource=EVAL_AT[-1], n_objectives=2
    )
    study = optuna.create_study(
        study_name="mo",
        storage=sqlite_url,
        directions=["minimize", "minimize"],
        sampler=make_sampler("tpe", seed=0, n_objectives=2, n_startup_trials=3),
        pruner=pruner,
    )
    history(study, pruner, 2, n=8)
    bad = [run_trial(study, pruner, 500.0, 2) for _ in range(4)]
    good = run_trial(study, pruner, 20.0, 2)
    assert good == TrialState.COMPLETE
    assert TrialState.PRUNED in bad
    # Hyperband's rung bookkeeping went through the real storage.
    reloaded = optuna.load_study(study_name="mo", storage=sqlite_url)
    assert any("completed_rung_0" in t.system_attrs for t in reloaded.trials)


def test_plain_pruner_is_viewed_on_the_first_objective() -> None:
    # A caller may hand should_prune an unwrapped Optuna pruner; it must still work.
    pruner = MedianPruner(n_startup_trials=3, n_warmup_steps=0, n_min_trials=3)
    study = optuna.create_study(directions=["minimize", "maximize"])
    history(study, pruner, 2, n=5)
    assert run_trial(study, pruner, 500.0, 2) == TrialState.PRUNED
    assert run_trial(study, pruner, 10.0, 2) == TrialState.COMPLETE


def test_no_pruning_at_the_budget_or_before_min_resource() -> None:
    pruner = make_pruner("median", min_resource=300, max_resource=900)
    study = optuna.create_study(pruner=pruner)
    history(study, pruner, 1, n=5)
    trial = study.ask()
    report_intermediate(study, trial, 100, 1e4)  # before min_resource: too early to judge
    assert should_prune(study, trial, pruner) is False
    report_intermediate(study, trial, 900, 1e4)  # at the budget: the training is already paid
    assert should_prune(study, trial, pruner) is False
    late = study.ask()
    report_intermediate(study, late, 300, 1e4)
    assert should_prune(study, late, pruner) is True


def test_should_prune_reads_the_latest_values_for_any_trial_handle() -> None:
    pruner = make_pruner("median", min_resource=100, max_resource=900, n_objectives=2)
    study = optuna.create_study(directions=["minimize", "minimize"], pruner=pruner)
    history(study, pruner, 2, n=4)
    trial = study.ask()
    stale = study._storage.get_trial(trial._trial_id)
    assert should_prune(study, stale, pruner) is False  # nothing reported yet
    report_intermediate(study, trial, 100, 1e4)
    handles: Sequence[Any] = (trial._trial_id, stale, trial)
    assert [should_prune(study, h, pruner) for h in handles] == [True, True, True]
    assert should_prune(study, trial) is True  # the study's own pruner


def test_report_intermediate_keeps_the_first_value_per_step() -> None:
    study = optuna.create_study(directions=["minimize", "minimize"])
    trial = study.ask()
    report_intermediate(study, trial, 100, 80.0)
    report_intermediate(study, trial, 100, 10.0)
    report_intermediate(study, trial._trial_id, 300, 40.0)
    assert study._storage.get_trial(trial._trial_id).intermediate_values == {100: 80.0, 300: 40.0}
    with pytest.raises(ValueError, match="non-negative"):
        report_intermediate(study, trial, -1, 1.0)
