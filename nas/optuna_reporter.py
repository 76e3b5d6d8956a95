"""The adapter that lets a Ray worker's training loop talk to the Optuna study.

``trainers`` knows only the narrow ``Reporter`` protocol (``report``/``should_stop``). This adapter
writes each evaluation straight into the study database as an intermediate value and asks the
study's pruner, so Optuna's pruners work while trials run on Ray workers (Ray Tune's
``OptunaSearch`` turns them off).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import optuna

log = logging.getLogger(__name__)


class OptunaReporter:
    def __init__(
        self,
        study: optuna.Study,
        trial_id: int,
        *,
        pruner: optuna.pruners.BasePruner,
        on_report: Callable[[int, Mapping[str, float]], None] | None = None,
    ) -> None:
        self._study = study
        self._trial_id = trial_id
        self._pruner = pruner
        self._on_report = on_report
        self._last_step: int | None = None

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        from storage import call_with_retries

        value = float(metrics["fid"])
        # Written through the storage, not Trial.report: Optuna refuses Trial.report in
        # multi-objective studies, but the pruners only need FID as the intermediate value.
        call_with_retries(
            self._study._storage.set_trial_intermediate_value, self._trial_id, step, value
        )
        self._last_step = step
        if self._on_report is not None:
            try:
                self._on_report(step, metrics)
            except Exception:  # artifacts are a convenience; never fail a trial over them
                log.exception("could not store artifacts of step %d", step)

    def should_stop(self) -> bool:
        if self._last_step is None:
            return False
        from nas.strategies import should_prune

        return bool(should_prune(self._study, self._trial_id, self._pruner))
