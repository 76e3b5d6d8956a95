"""Grid search over a list of points, each a complete assignment of a trial's parameters.

Optuna's ``GridSampler`` walks the product of every parameter's values. In a conditional space
(``gp_weight`` only ``when: {loss: wgan_gp}``) that product counts a point for each value of a
parameter the trial never uses, so a grid over such a space trained the same architecture again
under another grid id (a QA run: 18 distinct architectures in 24 trials, then, once continued,
up to 4 copies of one while another was never visited). Here a point is one valid assignment of
the *active* parameters only (:func:`search_spaces.space_grid_points` enumerates them), and each
is visited once.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

__all__ = ["POINT_ATTR", "GridPointsSampler"]

POINT_ATTR = "gannas.grid_point"
"""Trial system attribute: the index of the point the trial evaluates."""

_log = optuna.logging.get_logger(__name__)


class GridPointsSampler(BaseSampler):
    """Visit each of ``points`` once, in an order shuffled by ``seed``.

    The order depends on ``points`` and ``seed`` alone, and the points already visited are read
    from the study (:data:`POINT_ATTR`), so continuing a study with the same seed continues the
    same walk; no state lives in the sampler. An enqueued trial (a retry of a trial whose worker
    was lost) keeps its parameters and is matched to its point.
    """

    def __init__(self, points: Sequence[Mapping[str, Any]], seed: int | None = None) -> None:
        if not points:
            raise ValueError("a grid needs at least one point")
        self._points = [dict(p) for p in points]
        self._order = list(range(len(self._points)))
        random.Random(seed or 0).shuffle(self._order)

    @property
    def n_points(self) -> int:
        return len(self._points)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return {}

    def _visited(self, study: Study, *, but: int) -> set[int]:
        return {
            t.system_attrs[POINT_ATTR]
            for t in study._storage.get_all_trials(study._study_id, deepcopy=False)
            if t.number != but and POINT_ATTR in t.system_attrs
        }

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        fixed = trial.system_attrs.get("fixed_params")
        if fixed is not None:
            index = next((i for i, p in enumerate(self._points) if p == fixed), None)
            if index is not None:
                study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, index)
            return  # a trial enqueued with parameters off the grid is run as given
        visited = self._visited(study, but=trial.number)
        index = next((i for i in self._order if i not in visited), None)
        if index is None:
            # As Optuna's GridSampler does: revisit rather than fail. A gannas search never gets
            # here, since it refuses more trials than points.
            index = self._order[trial.number % len(self._order)]
            _log.warning(
                f"all {len(self._points)} grid points were visited; trial {trial.number} "
                "evaluates one again"
            )
        study._storage.set_trial_system_attr(trial._trial_id, POINT_ATTR, index)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        index = trial.system_attrs.get(POINT_ATTR)
        if index is None or param_name not in self._points[index]:
            raise ValueError(
                f"parameter {param_name!r} is not in the grid point of trial {trial.number}; "
                "a grid is built from the space the trials sample"
            )
        return self._points[index][param_name]

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # Stops study.optimize once every point was visited, as GridSampler does (stop() raises
        # outside optimize, e.g. for the ask-and-tell of a gannas search).
        in_optimize = getattr(study._thread_local, "in_optimize_loop", False)
        if in_optimize and len(self._visited(study, but=-1)) >= len(self._points):
            study.stop()
