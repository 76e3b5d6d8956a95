"""Regularized (aging) evolution as an Optuna sampler.

Real et al., "Regularized Evolution for Image Classifier Architecture Search" (AAAI 2019), the
search behind AmoebaNet. The population is the ``P`` most recently finished trials; each new
trial takes ``S`` members at random, copies the best of them and mutates exactly one parameter.
Because the population holds the *newest* trials rather than the best ones, a lucky architecture
dies of old age instead of dominating forever: a good fit for GAN trials, whose FID is noisy.

Everything the sampler decides for a trial (which parent, which parameter mutates) is written to
the trial's system attributes before any value is returned, and every random draw comes from a
generator seeded by ``(seed, trial number, parameter name)``. The study database is therefore the
only state: a second process that suggests parameters of the same trial, or a controller resumed
with a fresh sampler object, makes exactly the same choices.
"""

from __future__ import annotations

import math
import secrets
import zlib
from collections.abc import Sequence
from typing import Any, TypedDict

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = ["DECISION_ATTR", "RegularizedEvolutionSampler"]

DECISION_ATTR = "gannas.evolution"
"""Trial system attribute holding the sampler's decision: ``{"parent": number | None,
"parent_trial_id": id | None, "mutated": name | None}``. ``parent`` is ``None`` for the random
trials that fill the first population."""

# Half the mutations move a numeric parameter to a nearby value, half redraw it uniformly.
# AmoebaNet only redraws (its operations are categorical); for widths, depths and learning rates a
# nearby value keeps most of what made the parent good, while the uniform half still lets the
# search jump out of a basin.
_LOCAL_MOVE_PROB = 0.5
# Standard deviation of a local move as a fraction of the (log-)range: about two grid steps on a
# 0..20 integer range.
_LOCAL_MOVE_SCALE = 0.1

# Stream tags so that the draws for one trial's decision, random values and mutation never share a
# random generator (and so never depend on the order in which parameters are suggested).
_STREAM_DECISION = 0
_STREAM_RANDOM = 1
_STREAM_MUTATION = 2


class _Decision(TypedDict):
    parent: int | None
    parent_trial_id: int | None
    mutated: str | None


class RegularizedEvolutionSampler(BaseSampler):
    """Aging evolution: copy the best of ``sample_size`` random members, mutate one parameter.

    * While fewer than ``population_size`` trials have completed, parameters are drawn at random
      (Optuna's :class:`~optuna.samplers.RandomSampler`): that is the initial population.
    * Afterwards the population is the ``population_size`` most recently completed trials (ordered
      by completion time: the oldest die). ``sample_size`` of them are picked at random, the best
      becomes the parent and exactly one of its parameters (one with more than one possible
      value) is mutated: a categorical takes a different choice; a number moves to a nearby value
      or is redrawn from its range, and always changes. Every other parameter is copied.
    * Conditional spaces: the sampler works parameter by parameter (``sample_independent``), so a
      child asks only for the parameters its own branch activates. A parameter the parent lacks
      (newly activated by the mutation) or whose parent value is outside the child's distribution
      is drawn at random; parameters of the parent the child never asks for are simply dropped.
    * Multi-objective studies: the parent is the best member by the *first* objective (FID in
      gannas), in that objective's direction. Evolution has no notion of a Pareto front; use
      NSGA-II or TPE when the trade-off itself is the goal.
    * Only COMPLETE trials form the population: pruned and failed trials never become parents.

    Args:
        population_size: ``P``, the number of random trials before evolution starts and the
            number of recent trials that form the population. 20 is small next to AmoebaNet's 100
            because a GAN search runs tens, not thousands, of trials.
        sample_size: ``S``, the tournament size. ``S/P = 1/4`` as in AmoebaNet (25 of 100); a
            larger ``S`` exploits harder, a smaller one explores more.
        seed: Base seed; ``None`` draws a fresh one. The draws for a trial depend only on the
            seed, the trial number and the parameter name, so with a fixed seed the results do
            not depend on which process suggests a parameter, nor on a restart.
    """

    def __init__(
        self,
        *,
        population_size: int = 20,
        sample_size: int = 5,
        seed: int | None = None,
    ) -> None:
        if population_size < 2:
            raise ValueError(
                f"population_size must be at least 2, but got population_size={population_size}."
            )
        if not 1 <= sample_size <= population_size:
            raise ValueError(
                "sample_size must be between 1 and population_size, but got "
                f"sample_size={sample_size}, population_size={population_size}."
            )
        if seed is not None and seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, but got seed={seed}.")
        self._population_size = population_size
        self._sample_size = sample_size
        self._seed = secrets.randbits(32) if seed is None else int(seed)

    @property
    def population_size(self) -> int:
        return self._population_size

    @property
    def sample_size(self) -> int:
        return self._sample_size

    # --- BaseSampler API -------------------------------------------------------------------

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        # Nothing is sampled jointly: a joint (relative) space is the intersection of all trials'
        # parameters, which loses conditional parameters. The parent is copied per parameter.
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        decision = self._decision(study, trial)
        parent_id = decision["parent_trial_id"]
        if parent_id is None:
            return self._random_value(study, trial, param_name, param_distribution)

        parent = study._storage.get_trial(parent_id)
        parent_value = parent.params.get(param_name)
        if param_name not in parent.params or not _contains(param_distribution, parent_value):
            # A parameter the parent lacks (activated by the mutation of a parent parameter),
            # or one whose range changed: nothing to copy.
            return self._random_value(study, trial, param_name, param_distribution)
        if param_name != decision["mutated"]:
            return parent_value
        rng = self._rng(trial.number, _STREAM_MUTATION, param_name)
        return _mutate(param_distribution, parent_value, rng)

    def reseed_rng(self) -> None:
        # Draws are derived from (seed, trial number, parameter name), never from a shared
        # generator, so threads sharing this sampler (``n_jobs > 1``) already differ by trial.
        pass

    # --- the decision, stored on the trial --------------------------------------------------

    def _decision(self, study: Study, trial: FrozenTrial) -> _Decision:
        stored = trial.system_attrs.get(DECISION_ATTR)
        if stored is None:
            # The FrozenTrial may be a snapshot taken before another process decided.
            stored = study._storage.get_trial_system_attrs(trial._trial_id).get(DECISION_ATTR)
        if stored is not None:
            return _Decision(
                parent=stored["parent"],
                parent_trial_id=stored["parent_trial_id"],
                mutated=stored["mutated"],
            )
        decision = self._decide(study, trial)
        # Written before any value is returned, so parallel workers and a resumed controller
        # continue from the same parent and mutate the same parameter.
        payload: dict[str, Any] = {**decision}
        study._storage.set_trial_system_attr(trial._trial_id, DECISION_ATTR, payload)
        return decision

    def _decide(self, study: Study, trial: FrozenTrial) -> _Decision:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(completed) < self._population_size:
            return _Decision(parent=None, parent_trial_id=None, mutated=None)

        # Aging: the population is the P most recently completed trials.
        completed.sort(key=lambda t: (t.datetime_complete is None, t.datetime_complete, t.number))
        population = completed[-self._population_size :]
        rng = self._rng(trial.number, _STREAM_DECISION, "")
        picked = rng.choice(len(population), size=self._sample_size, replace=False)
        contestants = [population[int(i)] for i in sorted(picked)]
        parent = _best(contestants, study.directions)

        mutable = sorted(name for name, d in parent.distributions.items() if not d.single())
        mutated = mutable[int(rng.integers(len(mutable)))] if mutable else None
        return _Decision(parent=parent.number, parent_trial_id=parent._trial_id, mutated=mutated)

    # --- random draws -------------------------------------------------------------------------

    def _rng(self, trial_number: int, stream: int, param_name: str) -> np.random.Generator:
        key = zlib.crc32(param_name.encode("utf-8"))
        return np.random.default_rng([self._seed, trial_number, stream, key])

    def _random_value(
        self, study: Study, trial: FrozenTrial, param_name: str, distribution: BaseDistribution
    ) -> Any:
        # Optuna's RandomSampler knows every distribution (log, step, categorical); a fresh one
        # seeded per (trial, parameter) keeps the draw independent of any in-memory state.
        seed = int(self._rng(trial.number, _STREAM_RANDOM, param_name).integers(2**32))
        return RandomSampler(seed=seed).sample_independent(study, trial, param_name, distribution)


def _best(trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]) -> FrozenTrial:
    """The best trial by the first objective; ties go to the earlier trial number."""
    sign = -1.0 if directions[0] == StudyDirection.MAXIMIZE else 1.0
    return min(trials, key=lambda t: (sign * _first_value(t), t.number))


def _first_value(trial: FrozenTrial) -> float:
    values = trial.values
    if not values:
        return math.inf
    return float(values[0])


def _contains(distribution: BaseDistribution, value: Any) -> bool:
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _mutate(distribution: BaseDistribution, value: Any, rng: np.random.Generator) -> Any:
    """A value of ``distribution`` different from ``value`` (which it contains)."""
    if distribution.single():
        return value
    if isinstance(distribution, CategoricalDistribution):
        current = int(distribution.to_internal_repr(value))
        other = int(rng.integers(len(distribution.choices) - 1))
        return distribution.choices[other + (other >= current)]
    if isinstance(distribution, IntDistribution):
        if distribution.log:
            return int(_mutate_log_int(distribution, int(value), rng))
        return int(_mutate_grid(distribution.low, distribution.high, distribution.step, value, rng))
    if isinstance(distribution, FloatDistribution):
        if distribution.step is not None:
            step = distribution.step
            return float(_mutate_grid(distribution.low, distribution.high, step, value, rng))
        return _mutate_continuous(distribution, float(value), rng)
    raise TypeError(f"cannot mutate a parameter of distribution {distribution!r}")


def _mutate_grid(
    low: float, high: float, step: float, value: float, rng: np.random.Generator
) -> float:
    """Move to another point of the grid ``low, low + step, ..., <= high``."""
    n = int(math.floor((high - low) / step + 1e-9)) + 1
    index = int(round((value - low) / step))
    if rng.random() < _LOCAL_MOVE_PROB:
        distance = max(1, int(round(abs(rng.normal(0.0, _LOCAL_MOVE_SCALE * n)))))
        direction = 1 if rng.random() < 0.5 else -1
        target = min(max(index + direction * distance, 0), n - 1)
        if target == index:  # at the edge: go the other way
            target = min(max(index - direction * distance, 0), n - 1)
    else:
        other = int(rng.integers(n - 1))
        target = other + (other >= index)
    point = low + target * step
    if isinstance(step, int) and isinstance(low, int):
        return point
    # Snap away float error so the value stays on Optuna's grid.
    return float(round(point, 12))


def _mutate_log_int(distribution: IntDistribution, value: int, rng: np.random.Generator) -> int:
    """Move a log-scaled integer, multiplicatively, to a different integer."""
    log_low, log_high = math.log(distribution.low), math.log(distribution.high)
    if rng.random() < _LOCAL_MOVE_PROB:
        moved = math.log(value) + rng.normal(0.0, _LOCAL_MOVE_SCALE * (log_high - log_low))
    else:
        moved = rng.uniform(log_low, log_high)
    target = int(round(math.exp(min(max(moved, log_low), log_high))))
    target = min(max(target, distribution.low), distribution.high)
    if target == value:  # rounding landed back on the parent: take the neighbouring integer
        going_up = moved >= math.log(value)
        if (going_up and value < distribution.high) or value == distribution.low:
            target = value + 1
        else:
            target = value - 1
    return target


def _mutate_continuous(
    distribution: FloatDistribution, value: float, rng: np.random.Generator
) -> float:
    """Move an unstepped float, in log space when the distribution is log-scaled."""
    forward, backward = (math.log, math.exp) if distribution.log else (float, float)
    low, high, current = forward(distribution.low), forward(distribution.high), forward(value)
    for _ in range(100):
        if rng.random() < _LOCAL_MOVE_PROB:
            moved = current + rng.normal(0.0, _LOCAL_MOVE_SCALE * (high - low))
            if moved > high:  # reflect rather than pile up on the bounds
                moved = 2 * high - moved
            if moved < low:
                moved = 2 * low - moved
        else:
            moved = rng.uniform(low, high)
        candidate = min(
            max(float(backward(min(max(moved, low), high))), distribution.low), distribution.high
        )
        if candidate != value:
            return candidate
    return distribution.high if value != distribution.high else distribution.low
