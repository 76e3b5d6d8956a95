"""RegularizedEvolutionSampler on real Optuna studies (in memory and SQLite), cheap objectives."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial, TrialState

from nas.samplers import RegularizedEvolutionSampler
from nas.samplers.evolution import DECISION_ATTR, _mutate

optuna.logging.set_verbosity(optuna.logging.WARNING)

TARGET = (3, 17, 8, 12)


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


def squared_distance(trial: optuna.trial.BaseTrial) -> float:
    xs = [trial.suggest_int(f"x{i}", 0, 20) for i in range(len(TARGET))]
    return float(sum((x - t) ** 2 for x, t in zip(xs, TARGET, strict=True)))


def conditional_objective(trial: optuna.trial.BaseTrial) -> float:
    op = trial.suggest_categorical("op", ["conv", "pool", "skip"])
    width = trial.suggest_int("width", 8, 64, step=8)
    if op == "conv":
        kernel = trial.suggest_int("kernel", 1, 7, step=2)
        return abs(width - 32) + abs(kernel - 3)
    if op == "pool":
        kind = trial.suggest_categorical("pool_kind", ["max", "avg"])
        return abs(width - 16) + (0.5 if kind == "max" else 1.0)
    return 40.0 + abs(width - 8)


def decision(trial: FrozenTrial) -> dict[str, Any]:
    return trial.system_attrs[DECISION_ATTR]


def by_number(study: optuna.Study) -> dict[int, FrozenTrial]:
    return {t.number: t for t in study.get_trials(deepcopy=False)}


def test_first_population_is_random_and_seeded() -> None:
    def run(seed: int) -> list[dict[str, Any]]:
        sampler = RegularizedEvolutionSampler(population_size=10, sample_size=3, seed=seed)
        study = optuna.create_study(sampler=sampler)
        study.optimize(squared_distance, n_trials=10)
        assert all(decision(t)["parent"] is None for t in study.trials)
        return [t.params for t in study.trials]

    first = run(0)
    assert first == run(0)
    assert first != run(1)
    # Random, not copies: ten draws of four 21-valued ints are all different.
    assert len({tuple(p.values()) for p in first}) == 10
    # Every value of the range is reachable: x0 takes several different values.
    assert len({p["x0"] for p in first}) >= 5


def test_children_differ_from_their_parent_in_exactly_one_parameter() -> None:
    population = 10
    sampler = RegularizedEvolutionSampler(population_size=population, sample_size=3, seed=3)
    study = optuna.create_study(sampler=sampler)
    study.optimize(squared_distance, n_trials=60)
    trials = by_number(study)
    for number in range(population, 60):
        child = trials[number]
        chosen = decision(child)
        assert chosen["parent"] is not None
        # Sequential run: the population is exactly the previous `population` trials.
        assert number - population <= chosen["parent"] < number
        parent = trials[chosen["parent"]]
        changed = [k for k in child.params if child.params[k] != parent.params[k]]
        assert changed == [chosen["mutated"]]


def test_beats_random_search_on_average() -> None:
    evolution, random = [], []
    for seed in range(3):
        study = optuna.create_study(sampler=RegularizedEvolutionSampler(seed=seed))
        study.optimize(squared_distance, n_trials=150)
        evolution.append(study.best_value)
        baseline = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        baseline.optimize(squared_distance, n_trials=150)
        random.append(baseline.best_value)
    assert np.mean(evolution) < np.mean(random)
    assert max(evolution) < np.mean(random)


def test_parent_is_the_tournament_winner_and_old_members_die() -> None:
    # With sample_size == population_size the tournament is the whole population, so the parent
    # must be the best of the last P completed trials; the old champion ages out after P more.
    population = 4
    sampler = RegularizedEvolutionSampler(
        population_size=population, sample_size=population, seed=0
    )
    study = optuna.create_study(sampler=sampler)
    values = {0: 0.0}  # trial 0 is far better than anything after it

    for number in range(12):
        trial = study.ask()
        trial.suggest_int("a", 0, 100)
        trial.suggest_int("b", 0, 100)
        study.tell(trial, values.get(number, 100.0 + number))
    trials = by_number(study)
    for number in range(population, 12):
        window = [trials[n] for n in range(number - population, number)]
        best = min(window, key=lambda t: (t.value, t.number))
        assert decision(trials[number])["parent"] == best.number
    assert decision(trials[population])["parent"] == 0
    assert all(decision(trials[n])["parent"] != 0 for n in range(population + 1, 12))


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_multi_objective_parent_is_best_by_first_objective(direction: str) -> None:
    population = 5
    sampler = RegularizedEvolutionSampler(
        population_size=population, sample_size=population, seed=1
    )
    study = optuna.create_study(directions=[direction, "minimize"], sampler=sampler)
    first = [5.0, 1.0, 9.0, 3.0, 7.0]
    for value in first:
        trial = study.ask()
        trial.suggest_float("lr", 1e-5, 1e-2, log=True)
        trial.suggest_categorical("norm", ["batch", "instance", "none"])
        # The second objective disagrees with the first, so only the first can explain the pick.
        study.tell(trial, [value, -value])
    child = study.ask()
    child.suggest_float("lr", 1e-5, 1e-2, log=True)
    chosen = study._storage.get_trial_system_attrs(child._trial_id)[DECISION_ATTR]
    expected = int(np.argmin(first)) if direction == "minimize" else int(np.argmax(first))
    assert chosen["parent"] == expected


def test_conditional_space_copies_shared_and_samples_new_parameters() -> None:
    population = 8
    sampler = RegularizedEvolutionSampler(population_size=population, sample_size=3, seed=5)
    study = optuna.create_study(sampler=sampler)
    study.optimize(conditional_objective, n_trials=80)
    trials = by_number(study)
    branch_switches = 0
    for number in range(population, 80):
        child = trials[number]
        chosen = decision(child)
        parent = trials[chosen["parent"]]
        shared = set(child.params) & set(parent.params)
        changed = sorted(k for k in shared if child.params[k] != parent.params[k])
        assert changed == [chosen["mutated"]]
        if set(child.params) != set(parent.params):
            # Only mutating the branch parameter can activate or drop parameters.
            assert chosen["mutated"] == "op"
            branch_switches += 1
    assert branch_switches > 0
    assert study.best_value <= 1.0  # conv, width 32, kernel 3 or pool, width 16, max: 0 / 0.5


def test_ask_tell_with_outstanding_trials() -> None:
    population = 6
    sampler = RegularizedEvolutionSampler(population_size=population, sample_size=2, seed=2)
    study = optuna.create_study(sampler=sampler)
    pending: list[optuna.Trial] = []
    for _ in range(30):
        trial = study.ask()
        trial.suggest_int("x", -10, 10)
        trial.suggest_categorical("act", ["relu", "gelu", "silu"])
        pending.append(trial)
        if len(pending) == 3:  # three parallel "workers", told oldest first
            finished = pending.pop(0)
            study.tell(finished, float(finished.params["x"] ** 2))
    for trial in pending:
        study.tell(trial, float(trial.params["x"] ** 2))

    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 30
    numbers = by_number(study)
    evolved = [t for t in trials if decision(t)["parent"] is not None]
    assert evolved, "evolution never started"
    for child in evolved:
        parent = numbers[decision(child)["parent"]]
        assert parent.state == TrialState.COMPLETE
        assert parent.number < child.number
        changed = [k for k in child.params if child.params[k] != parent.params[k]]
        assert changed == [decision(child)["mutated"]]


def test_another_process_continues_a_trial_with_the_same_decision(sqlite_url: str) -> None:
    url = sqlite_url
    population = 3
    names = [f"p{i}" for i in range(6)]
    controller = optuna.create_study(
        study_name="evo",
        storage=url,
        sampler=RegularizedEvolutionSampler(population_size=population, sample_size=2, seed=7),
    )
    for _ in range(population):
        trial = controller.ask()
        controller.tell(trial, float(sum(trial.suggest_int(n, 0, 9) for n in names)))

    trial = controller.ask()
    trial.suggest_int(names[0], 0, 9)  # decides parent and mutated parameter
    # A worker process with its own sampler object (another seed, even) suggests the rest.
    worker = optuna.load_study(
        study_name="evo",
        storage=url,
        sampler=RegularizedEvolutionSampler(population_size=population, sample_size=2, seed=99),
    )
    worker.get_trials(deepcopy=False)  # let the worker's storage cache learn the running trial
    remote = optuna.trial.Trial(worker, trial._trial_id)
    for name in names[1:]:
        remote.suggest_int(name, 0, 9)
    child = worker._storage.get_trial(trial._trial_id)
    chosen = decision(child)
    parent = worker._storage.get_trial(chosen["parent_trial_id"])
    changed = [n for n in names if child.params[n] != parent.params[n]]
    assert changed == [chosen["mutated"]]


def test_resumed_study_continues_exactly(sqlite_url: str) -> None:
    # SQLite commits are slow on a busy box: a small population keeps this to 16 trials.
    def sampler() -> RegularizedEvolutionSampler:
        return RegularizedEvolutionSampler(population_size=4, sample_size=2, seed=11)

    straight = optuna.create_study(sampler=sampler())
    straight.optimize(squared_distance, n_trials=16)

    url = sqlite_url
    first = optuna.create_study(study_name="resume", storage=url, sampler=sampler())
    first.optimize(squared_distance, n_trials=9)
    del first
    resumed = optuna.load_study(study_name="resume", storage=url, sampler=sampler())
    resumed.optimize(squared_distance, n_trials=7)

    after = resumed.get_trials(deepcopy=False)
    assert [t.params for t in after] == [t.params for t in straight.trials]
    lineage = [(decision(t)["parent"], decision(t)["mutated"]) for t in after]
    assert lineage == [(decision(t)["parent"], decision(t)["mutated"]) for t in straight.trials]
    assert all(decision(t)["parent"] is not None for t in after[9:])


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="population_size"):
        RegularizedEvolutionSampler(population_size=1)
    with pytest.raises(ValueError, match="sample_size"):
        RegularizedEvolutionSampler(population_size=4, sample_size=5)
    with pytest.raises(ValueError, match="seed"):
        RegularizedEvolutionSampler(seed=-1)


@pytest.mark.parametrize(
    ("distribution", "value"),
    [
        (CategoricalDistribution(["a", "b", "c"]), "b"),
        (CategoricalDistribution([True, False]), True),
        (IntDistribution(0, 20), 0),
        (IntDistribution(0, 20), 20),
        (IntDistribution(8, 64, step=8), 32),
        (IntDistribution(16, 512, log=True), 16),
        (IntDistribution(16, 512, log=True), 512),
        (IntDistribution(1, 2, log=True), 1),
        (FloatDistribution(0.0, 1.0), 0.5),
        (FloatDistribution(1e-5, 1e-2, log=True), 1e-2),
        (FloatDistribution(0.0, 0.9, step=0.1), 0.3),
    ],
)
def test_mutation_always_changes_and_stays_in_range(
    distribution: BaseDistribution, value: Any
) -> None:
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        mutated = _mutate(distribution, value, rng)
        assert mutated != value
        assert distribution._contains(distribution.to_internal_repr(mutated))
        seen.add(mutated)
    if isinstance(distribution, CategoricalDistribution):
        alternatives = len(distribution.choices) - 1
    elif isinstance(distribution, IntDistribution):
        alternatives = (distribution.high - distribution.low) // distribution.step
    else:
        alternatives = 3
    assert len(seen) >= min(3, alternatives)
