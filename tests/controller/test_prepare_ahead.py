"""With several concurrent workers the controller keeps trials prepared (asked, sampled and
written) while every worker is busy, and hands them to the next workers that free up."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from nas import attrs
from nas.controller import SearchInterrupted, run_search, trials_prepared_ahead
from nas.executors import Finished, Reference


class _InstantExecutor:
    """Concurrent executor whose trials finish, one per wait(), in submission order; it records
    how many trials the study holds (in any state) each time trials finish.
    ``finish_on_poll=False``: a wait with timeout 0 (a poll) finishes nothing.
    ``finish_all=True``: every running trial finishes at each wait (they all end together)."""

    def __init__(
        self,
        storage_url: str,
        *,
        interrupt_on_wait: int | None = None,
        finish_on_poll: bool = True,
        finish_all: bool = False,
    ) -> None:
        from storage import open_storage

        self._storage = open_storage(storage_url)
        self._queue: list[Any] = []
        self._waits = 0
        self._interrupt_on_wait = interrupt_on_wait
        self._finish_on_poll = finish_on_poll
        self._finish_all = finish_all
        self.trials_at_wait: list[int] = []
        self.submitted: list[int] = []
        self._study_id: int | None = None

    def compute_reference(self, spec: Any, device: str | None) -> Reference:
        return Reference(handle=None, extractor_identity=None)

    def submit(self, job: Any, reference: Any) -> None:
        self._study_id = self._storage.get_study_id_from_name(job.study_name)
        self.submitted.append(job.trial_number)
        self._queue.append(job)

    def wait(self, timeout: float) -> list[Finished]:
        self._waits += 1
        if self._waits == self._interrupt_on_wait:
            raise KeyboardInterrupt
        if not self._queue or (timeout == 0 and not self._finish_on_poll):
            return []
        self.trials_at_wait.append(len(self._storage.get_all_trials(self._study_id, deepcopy=False)))
        ending = self._queue if self._finish_all else self._queue[:1]
        self._queue = self._queue[len(ending):]
        done = []
        for job in ending:
            value = 10.0 + job.trial_number
            self._storage.set_trial_user_attr(job.trial_id, attrs.FID, value)
            self._storage.set_trial_state_values(
                job.trial_id, state=TrialState.COMPLETE, values=[value]
            )
            done.append(Finished(job, {"state": "COMPLETE", "fid": value, "worker": "test"}, None))
        return done

    def running(self) -> list[Any]:
        return list(self._queue)

    def cancel_all(self) -> list[Any]:
        jobs, self._queue = self._queue, []
        return jobs

    def shutdown(self) -> None:
        pass


def test_one_trial_is_prepared_ahead_and_the_target_is_exact(quick_search, storage_url):
    what, how, where = quick_search(trials=7, workers=2)
    executor = _InstantExecutor(storage_url)
    summary = run_search(what, how, where, executor=executor)

    assert summary.finished == 7 and summary.trials_run_now == 7
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 7  # nothing extra, nothing left
    assert sorted(executor.submitted) == list(range(7))
    # While trial k runs, trial k+2 already exists (prepared ahead) when two workers are busy:
    # the first wait sees trials 0 and 1 running and 2 prepared, and never more than that.
    assert executor.trials_at_wait[0] == 3
    assert all(n <= k + 3 for k, n in enumerate(executor.trials_at_wait)), executor.trials_at_wait
    for t in trials:
        assert attrs.ARCH in t.user_attrs


def test_ctrl_c_fails_the_prepared_trial_too(quick_search, storage_url):
    what, how, where = quick_search(trials=6, workers=2)
    # First wait: both workers busy and one trial prepared ahead; the user presses Ctrl-C.
    executor = _InstantExecutor(storage_url, interrupt_on_wait=1)
    with pytest.raises(SearchInterrupted):
        run_search(what, how, where, executor=executor)

    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    assert len(trials) == 3  # two submitted + one prepared
    assert [t.state for t in trials] == [TrialState.FAIL] * 3
    assert {t.user_attrs[attrs.STATUS] for t in trials} == {"interrupted"}


def test_a_sequential_search_does_not_sample_ahead(quick_search, storage_url):
    # One worker: trial n+1 must be sampled after trial n has finished (TPE sees every result).
    what, how, where = quick_search(trials=3, workers=1)
    executor = _InstantExecutor(storage_url)
    run_search(what, how, where, executor=executor)
    assert executor.trials_at_wait == [1, 2, 3]


def test_with_eight_workers_two_trials_are_prepared_and_the_target_is_exact(
    quick_search, storage_url
):
    what, how, where = quick_search(trials=21, workers=8)
    executor = _InstantExecutor(storage_url, finish_on_poll=False)
    summary = run_search(what, how, where, executor=executor)

    assert trials_prepared_ahead(8) == 2
    assert summary.finished == 21 and summary.trials_run_now == 21
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    assert [t.number for t in trials] == list(range(21))
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 21
    assert sorted(executor.submitted) == list(range(21))
    # Before the k-th trial ends, k trials have ended: the study never holds more than those, 8
    # running and 2 prepared. The first turn fills the 8 workers (their trials created in one
    # transaction) and prepares 2 more, so the first trial ends with exactly 10 in the study.
    at_wait = executor.trials_at_wait
    assert at_wait[0] == 10
    assert all(n <= k + 8 + 2 for k, n in enumerate(at_wait)), at_wait
    assert all(attrs.ARCH in t.user_attrs for t in trials)


def test_prepared_ahead_is_a_quarter_of_the_workers_capped():
    assert [trials_prepared_ahead(w) for w in (1, 2, 4, 8, 16, 64)] == [0, 1, 1, 2, 4, 8]


def test_trials_created_together_near_the_target_are_all_dispatched(quick_search, storage_url):
    # 8 workers, 12 trials, all running trials end together. After the first round, 8 trials are
    # finished and the 2 prepared ones run; the next turn creates the last 2 trials in one
    # transaction for two free workers. Each must be prepared and run: none left RUNNING without
    # an architecture (which the search would wait on, then fail as orphaned).
    what, how, where = quick_search(trials=12, workers=8)
    executor = _InstantExecutor(storage_url, finish_on_poll=False, finish_all=True)
    summary = run_search(what, how, where, executor=executor)

    assert summary.finished == 12 and summary.trials_run_now == 12
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 12
    assert sorted(executor.submitted) == list(range(12))
    assert executor.trials_at_wait == [10, 12]
