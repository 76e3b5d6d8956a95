"""What a trial will cost: seconds per generator step, predicted from its parameters.

GAN trials of one search differ several-fold in cost: batch size, discriminator steps, the
gradient penalty and the widths multiply the work of every step. A sampler that knows this can
prefer, among candidates it rates alike, the one that answers sooner (the "expected improvement
per second" of Snoek, Larochelle and Adams, 2012). The model here is deliberately small: a ridge
regression of log seconds per step on the parameters (one-hot categoricals, numerics scaled to
[0, 1], on a log scale where the distribution is), fitted on the study's finished trials. Costs
are multiplicative, so a linear model of the log fits them; ridge keeps it sane with fewer trials
than features.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import FrozenTrial

from nas import attrs

__all__ = ["MIN_TRIALS", "TrialCostModel", "seconds_per_step"]

MIN_TRIALS = 3
"""Fewer finished trials than this give no model: a regression through one or two points says
which trial was slower, not why."""

_RIDGE = 1.0
"""L2 penalty per coefficient, in units of squared (log seconds) per squared feature: with tens
of trials it shrinks a parameter's effect only when few trials have disagreed about it."""


def seconds_per_step(trial: FrozenTrial) -> float | None:
    """The trial's training wall time divided by the steps it trained (None when not recorded).

    The worker stores the wall time of training and evaluation (:data:`nas.attrs.WALL_TIME`); the
    steps trained are the last step at which it reported FID (the budget for a completed trial,
    the pruning step for a pruned one).
    """
    wall = trial.user_attrs.get(attrs.WALL_TIME)
    if not trial.intermediate_values or not isinstance(wall, (int, float)):
        return None
    steps = max(trial.intermediate_values)
    if steps <= 0 or not wall > 0 or not math.isfinite(wall):
        return None
    return float(wall) / steps


@dataclass(frozen=True)
class TrialCostModel:
    """log(seconds per step) = intercept + features(params) . coef, fitted by ridge regression."""

    search_space: Mapping[str, BaseDistribution]
    intercept: float
    coef: np.ndarray

    @classmethod
    def fit(
        cls, trials: Sequence[FrozenTrial], search_space: Mapping[str, BaseDistribution]
    ) -> TrialCostModel | None:
        """A model over ``search_space`` from the ``trials`` that have all of its parameters.

        Returns None with fewer than :data:`MIN_TRIALS` usable trials.
        """
        rows, costs = [], []
        for trial in trials:
            cost = seconds_per_step(trial)
            if cost is None or any(name not in trial.params for name in search_space):
                continue
            internal = {
                name: np.asarray([dist.to_internal_repr(trial.params[name])])
                for name, dist in search_space.items()
            }
            rows.append(_features(search_space, internal)[0])
            costs.append(math.log(cost))
        if len(rows) < MIN_TRIALS:
            return None
        x = np.asarray(rows)
        y = np.asarray(costs)
        x_mean, y_mean = x.mean(axis=0), y.mean()
        xc = x - x_mean
        coef = np.linalg.solve(xc.T @ xc + _RIDGE * np.eye(x.shape[1]), xc.T @ (y - y_mean))
        return cls(search_space, float(y_mean - x_mean @ coef), coef)

    def predict_log(self, internal: Mapping[str, np.ndarray]) -> np.ndarray:
        """Predicted log seconds per step of candidates given in Optuna's internal representation."""
        return self.intercept + _features(self.search_space, internal) @ self.coef


def _features(
    search_space: Mapping[str, BaseDistribution], internal: Mapping[str, np.ndarray]
) -> np.ndarray:
    columns: list[np.ndarray] = []
    for name, dist in search_space.items():
        values = np.asarray(internal[name], dtype=float)
        if isinstance(dist, CategoricalDistribution):
            index = values.astype(int)
            columns.extend((index == i).astype(float) for i in range(len(dist.choices)))
        elif isinstance(dist, (IntDistribution, FloatDistribution)):
            low, high = float(dist.low), float(dist.high)
            if dist.log:
                values, low, high = np.log(values), math.log(low), math.log(high)
            columns.append((values - low) / (high - low) if high > low else values * 0.0)
        else:  # a distribution Optuna adds later: no opinion about its cost
            continue
    if not columns:
        return np.zeros((len(next(iter(internal.values()), [])), 0))
    return np.stack(columns, axis=1)
