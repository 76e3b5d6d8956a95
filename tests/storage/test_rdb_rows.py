"""Several rows of a trial in one transaction (:mod:`storage.rdb_rows`): what ``tell`` and
``set_trial_user_attr`` would write, all or nothing, on SQLite and PostgreSQL, and the same
through the public calls on a storage without Optuna's row helpers."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from storage import open_storage
from storage.rdb_rows import finish_trial, rdb_backend, set_user_attrs


def _ask(storage, directions=("minimize",)):
    study = optuna.create_study(study_name="rows", storage=storage, directions=list(directions))
    return study, study.ask()


def test_user_attrs_are_upserted_together(storage_url):
    storage = open_storage(storage_url)
    _, trial = _ask(storage)
    set_user_attrs(storage, trial._trial_id, {"a": 1, "b": [1, 2], "c": {"x": 0.5}})
    set_user_attrs(storage, trial._trial_id, {"a": 2})  # an upsert, not a copy
    assert storage.get_trial(trial._trial_id).user_attrs == {"a": 2, "b": [1, 2], "c": {"x": 0.5}}


def test_a_finished_trial_takes_no_attribute(storage_url):
    storage = open_storage(storage_url)
    study, trial = _ask(storage)
    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):  # Optuna refuses updates of a finished trial
        set_user_attrs(storage, trial._trial_id, {"d": 1, "e": 2})
    done = storage.get_trial(trial._trial_id)
    assert done.state == TrialState.COMPLETE and "d" not in done.user_attrs


def test_finish_writes_attributes_values_and_state_in_one_go(storage_url):
    storage = open_storage(storage_url)
    study, trial = _ask(storage)
    assert finish_trial(storage, trial._trial_id, TrialState.COMPLETE, [3.5], {"fid": 3.5})
    done = study.get_trials()[0]
    assert (done.state, done.values, done.user_attrs) == (TrialState.COMPLETE, [3.5], {"fid": 3.5})
    assert done.datetime_complete is not None and done.datetime_complete >= done.datetime_start
    assert study.best_trial.number == trial.number


def test_a_second_finish_changes_nothing_and_says_so(storage_url):
    """A retry after a commit whose reply was lost, or a trial the controller already failed."""
    storage = open_storage(storage_url)
    study, trial = _ask(storage)
    assert finish_trial(storage, trial._trial_id, TrialState.FAIL, None, {"reason": "lost"})
    assert not finish_trial(storage, trial._trial_id, TrialState.COMPLETE, [1.0], {"fid": 1.0})
    done = study.get_trials()[0]
    assert done.state == TrialState.FAIL and done.values is None
    assert done.user_attrs == {"reason": "lost"}


def test_a_pruned_trial_keeps_its_last_intermediate_value_as_tell_does(storage_url):
    storage = open_storage(storage_url)
    study, trial = _ask(storage)
    trial.report(9.0, step=4)
    trial.report(7.0, step=2)  # reported out of order: the last *step* counts
    assert finish_trial(storage, trial._trial_id, TrialState.PRUNED)
    told = study.ask()
    told.report(9.0, step=4)
    told.report(7.0, step=2)
    study.tell(told, state=TrialState.PRUNED)
    ours, by_tell = study.get_trials()
    assert ours.state == by_tell.state == TrialState.PRUNED
    assert ours.values == by_tell.values == [9.0]


def test_a_pruned_multi_objective_trial_keeps_no_value(storage_url):
    storage = open_storage(storage_url)
    study, trial = _ask(storage, directions=("minimize", "minimize"))
    storage.set_trial_intermediate_value(trial._trial_id, 4, 9.0)  # Trial.report refuses
    assert finish_trial(storage, trial._trial_id, TrialState.PRUNED, n_objectives=2)
    done = study.get_trials()[0]
    assert done.state == TrialState.PRUNED and done.values is None


@pytest.mark.parametrize(
    ("state", "values"),
    [
        (TrialState.COMPLETE, None),
        (TrialState.COMPLETE, [float("nan")]),
        (TrialState.COMPLETE, [1.0, 2.0]),
        (TrialState.FAIL, [1.0]),
    ],
)
def test_values_that_tell_would_refuse_are_refused_before_anything_is_written(
    tmp_path, state, values
):
    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study, trial = _ask(storage)
    with pytest.raises(ValueError):
        finish_trial(storage, trial._trial_id, state, values, {"fid": 1.0})
    left = study.get_trials()[0]
    assert left.state == TrialState.RUNNING and left.user_attrs == {}


def test_storages_without_row_helpers_get_the_same_through_public_calls():
    storage = optuna.storages.InMemoryStorage()
    assert rdb_backend(storage) is None
    study, trial = _ask(storage)
    set_user_attrs(storage, trial._trial_id, {"a": 1, "b": "x"})
    trial.report(5.0, step=1)
    assert finish_trial(storage, trial._trial_id, TrialState.PRUNED, None, {"c": 2})
    assert not finish_trial(storage, trial._trial_id, TrialState.FAIL)
    done = study.get_trials()[0]
    assert done.state == TrialState.PRUNED and done.values == [5.0]
    assert done.user_attrs == {"a": 1, "b": "x", "c": 2}
