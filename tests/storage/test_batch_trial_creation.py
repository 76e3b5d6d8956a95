"""The controller creates the trials for several free workers in one transaction
(:func:`nas.controller._create_trials`); numbers must stay unique and consecutive, as Optuna's
``create_new_trial`` keeps them, also with another controller creating trials at the same time."""

from __future__ import annotations

import threading

import optuna
from optuna.trial import TrialState

from nas.controller import _create_trials
from storage import open_storage


def test_a_batch_gets_consecutive_numbers_after_existing_trials(storage_url):
    study = optuna.create_study(study_name="batch", storage=open_storage(storage_url))
    study.ask()  # number 0, created the usual way
    ids = _create_trials(study, 4)
    after = study.ask()  # the usual way again: numbering goes on after the batch

    trials = study.get_trials(deepcopy=False)
    by_id = {t._trial_id: t for t in trials}
    assert [by_id[i].number for i in ids] == [1, 2, 3, 4]
    assert after.number == 5
    assert all(by_id[i].state == TrialState.RUNNING and not by_id[i].params for i in ids)


def test_concurrent_batches_never_share_a_number(storage_url):
    optuna.create_study(study_name="batch", storage=open_storage(storage_url))
    errors: list[BaseException] = []

    def controller() -> None:
        try:
            # Each thread is its own controller: its own storage, engine and connections.
            study = optuna.load_study(study_name="batch", storage=open_storage(storage_url))
            for _ in range(4):
                _create_trials(study, 5)
                study.ask()
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=controller) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    trials = optuna.load_study(study_name="batch", storage=open_storage(storage_url)).get_trials()
    assert sorted(t.number for t in trials) == list(range(3 * 4 * 6))
