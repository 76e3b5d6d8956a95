"""Writing several rows of a trial in one transaction, through Optuna's RDBStorage internals.

Optuna commits every ``set_trial_param`` / ``set_trial_user_attr`` / ``set_trial_state_values`` on
its own: a few ms each through SQLAlchemy, and on SQLite each waits for the file's write lock
when 16 workers write at once. The controller's dispatch and the worker's first and last writes
hold several rows each, so they use the storage's own per-row helpers inside one of its
sessions. Those helpers are private to Optuna: :func:`rdb_backend` checks they exist, and the
functions here fall back to one public call per value when they do not (another storage, or
another Optuna).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = ["delete_trial_system_attrs", "finish_trial", "rdb_backend", "set_user_attrs"]

_HELPERS = (
    "_set_trial_attr_without_commit",
    "_set_trial_value_without_commit",
    "check_trial_is_updatable",
    "scoped_session",
)


def rdb_backend(storage: Any) -> optuna.storages.RDBStorage | None:
    """The ``RDBStorage`` under ``storage`` (through Optuna's cache wrapper), or ``None`` when it is
    another storage or an Optuna without the per-row helpers."""
    rdb = storage
    while not isinstance(rdb, optuna.storages.RDBStorage) and hasattr(rdb, "_backend"):
        rdb = rdb._backend
    if isinstance(rdb, optuna.storages.RDBStorage) and all(hasattr(rdb, h) for h in _HELPERS):
        return rdb
    return None


def set_user_attrs(storage: Any, trial_id: int, values: Mapping[str, Any]) -> None:
    """Write several user attributes of a trial at once: all or nothing, retried through hiccups.

    Each attribute is an upsert, so a retry after a commit whose reply was lost rewrites the same
    values.
    """
    from storage.retry import call_with_retries

    rdb = rdb_backend(storage)
    if rdb is None:
        for key, value in values.items():
            call_with_retries(storage.set_trial_user_attr, trial_id, key, value)
        return
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def write() -> None:
        with _create_scoped_session(rdb.scoped_session, True) as session:
            for key, value in values.items():
                rdb._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, key, value
                )

    call_with_retries(write)


def delete_trial_system_attrs(storage: Any, trial_id: int, keys: Sequence[str]) -> bool:
    """Delete system attributes of a trial, also of a finished one; False where the storage is
    not an RDB (Optuna has no public call for this: a finished trial's attributes are fixed).

    Used for the metadata of deleted artifacts, which optuna-dashboard would otherwise list and
    fail to serve (HTTP 500).
    """
    from storage.retry import call_with_retries

    rdb = rdb_backend(storage)
    if rdb is None or not keys:
        return False
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def delete() -> None:
        with _create_scoped_session(rdb.scoped_session, True) as session:
            model = models.TrialSystemAttributeModel
            session.query(model).filter(
                model.trial_id == trial_id, model.key.in_(list(keys))
            ).delete(synchronize_session=False)

    call_with_retries(delete)
    return True


def finish_trial(
    storage: Any,
    trial_id: int,
    state: TrialState,
    values: Sequence[float] | None = None,
    user_attrs: Mapping[str, Any] | None = None,
    *,
    n_objectives: int = 1,
) -> bool:
    """Write a trial's last attributes and its final state in one transaction.

    What ``study.tell`` writes, without its extra read of the trial and its second commit: a
    trial is never seen finished without its results, nor with results but unfinished. As in
    ``tell``, a PRUNED trial of a single-objective study takes its last finite intermediate
    value as its value (``n_objectives``: the study's; a multi-objective PRUNED trial keeps no
    value, as in Optuna). Pass ``values`` for COMPLETE.

    Returns ``False`` when the trial was already finished (by someone else, or by an earlier
    attempt of this call whose reply was lost); nothing is written then.
    """
    from storage.retry import call_with_retries

    if state == TrialState.COMPLETE and (
        not values or len(values) != n_objectives or any(math.isnan(v) for v in values)
    ):
        raise ValueError(f"a COMPLETE trial needs {n_objectives} non-NaN value(s), got {values}")
    if state != TrialState.COMPLETE and values is not None:
        raise ValueError(f"only a COMPLETE trial has values, not a {state.name} one")
    attrs = dict(user_attrs or {})
    rdb = rdb_backend(storage)
    if rdb is None:
        return _finish_with_public_calls(storage, trial_id, state, values, attrs, n_objectives)
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    def write() -> bool:
        with _create_scoped_session(rdb.scoped_session) as session:
            row = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
            if row.state.is_finished():
                return False
            final = list(values) if values is not None else None
            if final is None and state == TrialState.PRUNED and n_objectives == 1:
                final = _last_intermediate(session, trial_id)
            for key, value in attrs.items():
                rdb._set_trial_attr_without_commit(
                    session, models.TrialUserAttributeModel, trial_id, key, value
                )
            for objective, value in enumerate(final or ()):
                rdb._set_trial_value_without_commit(session, row, objective, float(value))
            row.state = state
            row.datetime_complete = datetime.now()  # what Optuna stores: naive local time
            return True

    return call_with_retries(write)


def _last_intermediate(session: Any, trial_id: int) -> list[float] | None:
    """``[value]`` of the trial's last step, as ``tell`` gives a PRUNED trial; ``None`` if it has
    none, or if that value is NaN."""
    from optuna.storages._rdb import models

    steps = models.TrialIntermediateValueModel.where_trial_id(trial_id, session)
    if not steps:
        return None
    last = max(steps, key=lambda s: s.step)
    value = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value(
        last.intermediate_value, last.intermediate_value_type
    )
    return None if math.isnan(value) else [value]


def _finish_with_public_calls(
    storage: Any,
    trial_id: int,
    state: TrialState,
    values: Sequence[float] | None,
    attrs: Mapping[str, Any],
    n_objectives: int,
) -> bool:
    from storage.retry import call_with_retries

    trial = call_with_retries(storage.get_trial, trial_id)
    if trial.state.is_finished():
        return False
    for key, value in attrs.items():
        call_with_retries(storage.set_trial_user_attr, trial_id, key, value)
    final = list(values) if values is not None else None
    steps = trial.intermediate_values
    if final is None and state == TrialState.PRUNED and n_objectives == 1 and steps:
        last = steps[max(steps)]
        final = None if math.isnan(last) else [last]
    try:
        return bool(call_with_retries(storage.set_trial_state_values, trial_id, state, final))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
