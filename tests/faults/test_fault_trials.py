"""Faults inside one trial: its worker process killed, out of memory, divergence."""

from __future__ import annotations

import os
import signal
import threading
import time

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from nas import attrs
from nas.controller import run_search
from nas.study_state import count_finished
from storage import open_storage


def _trials(url: str, study: str = "faults") -> list[FrozenTrial]:
    return optuna.load_study(study_name=study, storage=url).get_trials()


def _assert_nothing_left_running(trials: list[FrozenTrial]) -> None:
    unfinished = (TrialState.RUNNING, TrialState.WAITING)
    left = [(t.number, t.state.name) for t in trials if t.state in unfinished]
    assert not left, f"trials left unfinished: {left}"


class _WorkerKiller(threading.Thread):
    """Polls the study until a trial RUNS on a worker, then SIGKILLs that worker's process."""

    def __init__(self, url: str, *, timeout_s: float = 120.0) -> None:
        super().__init__(daemon=True)
        self._url = url
        self._timeout_s = timeout_s
        self.killed: tuple[int, int] | None = None  # (trial number, pid)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc

    def _run(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        storage = open_storage(self._url)
        while True:
            try:
                study = optuna.load_study(study_name="faults", storage=storage)
                break
            except KeyError:  # not created yet
                assert time.monotonic() < deadline, "the study was never created"
                time.sleep(0.2)
        while time.monotonic() < deadline:
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                worker = trial.user_attrs.get(attrs.WORKER)
                # A trial that has reported one FID is well inside its training.
                if worker and trial.intermediate_values:
                    pid = int(worker.rsplit(":", 1)[1])
                    os.kill(pid, signal.SIGKILL)
                    self.killed = (trial.number, pid)
                    return
            time.sleep(0.1)


@pytest.mark.slow
def test_a_killed_worker_fails_its_trial_as_infra_and_the_architecture_is_retried(
    fault_search, storage_url
):
    # 200 steps: a few seconds per trial, so the killer finds one mid-training.
    what, how, where = fault_search(
        trials=3, executor="ray", workers=2, budget=200, heartbeat_interval=1, grace_period=10
    )
    # The schema first: a process opening a new database while another creates its tables
    # races in Optuna's RDBStorage (a storage issue, reported).
    open_storage(storage_url)
    killer = _WorkerKiller(storage_url)
    killer.start()
    summary = run_search(what, how, where)
    killer.join(timeout=5)
    assert killer.error is None, killer.error
    assert killer.killed is not None, "no trial was seen running on a worker"
    number, pid = killer.killed

    assert summary.finished == 3
    trials = _trials(storage_url)
    by_number = {t.number: t for t in trials}
    killed = by_number[number]
    assert killed.state == TrialState.FAIL
    assert killed.user_attrs[attrs.FAIL_KIND] == attrs.FAIL_KIND_INFRA
    assert killed.user_attrs[attrs.STATUS] == "lost"
    assert killed.user_attrs[attrs.WORKER].endswith(f":{pid}")
    reason = killed.user_attrs[attrs.FAIL_REASON]
    assert "worker died" in reason and "Worker" in reason, reason

    retries = [t for t in trials if t.user_attrs.get(attrs.RETRY_OF) == number]
    assert len(retries) == 1, [(t.number, t.user_attrs) for t in trials]
    retry = retries[0]
    assert retry.number > number
    assert retry.params == killed.params and retry.params
    assert retry.user_attrs[attrs.ATTEMPT] == 2
    assert retry.user_attrs[attrs.ARCH] == killed.user_attrs[attrs.ARCH]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    assert retry.user_attrs.get(attrs.FAIL_KIND) != attrs.FAIL_KIND_INFRA

    _assert_nothing_left_running(trials)
    assert count_finished(trials) == 3
    assert len(trials) == 4  # three verdicts plus the lost attempt


def test_out_of_memory_and_divergence_fail_the_trial_and_the_search_goes_on(
    fault_search, storage_url, monkeypatch
):
    import search_spaces

    real_build = search_spaces.build_generator
    built = {"n": 0}

    def build_with_faults(cfg):
        generator = real_build(cfg)
        built["n"] += 1
        if built["n"] == 1:  # the first trial's generator runs out of memory in its forward

            def forward(z: torch.Tensor) -> torch.Tensor:
                raise torch.OutOfMemoryError(
                    "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 15.78 GiB total)"
                )

            generator.forward = forward
        elif built["n"] == 2:  # the second one diverges at its first step
            with torch.no_grad():
                for p in generator.parameters():
                    p.fill_(float("nan"))
        return generator

    monkeypatch.setattr(search_spaces, "build_generator", build_with_faults)
    what, how, where = fault_search(trials=4)
    summary = run_search(what, how, where)

    assert summary.finished == 4
    trials = _trials(storage_url)
    assert len(trials) == 4  # trial failures are verdicts: nothing retried
    oom, diverged = trials[0], trials[1]
    for t in (oom, diverged):
        assert t.state == TrialState.FAIL
        assert t.user_attrs[attrs.FAIL_KIND] == attrs.FAIL_KIND_TRIAL
        assert attrs.RETRY_OF not in t.user_attrs
    assert oom.user_attrs[attrs.STATUS] == "out_of_memory"
    assert oom.user_attrs[attrs.FAIL_REASON].startswith("out of memory at step 1")
    assert "Tried to allocate 20.00 GiB" in oom.user_attrs[attrs.FAIL_REASON]
    assert diverged.user_attrs[attrs.STATUS] == "diverged"
    assert "nan" in diverged.user_attrs[attrs.FAIL_REASON].lower()
    assert [t.state for t in trials[2:]] == [TrialState.COMPLETE] * 2
    assert all(attrs.RETRY_OF not in t.user_attrs for t in trials)
    _assert_nothing_left_running(trials)


def test_a_trial_that_fails_while_its_models_are_built_still_names_its_worker(
    fault_search, storage_url, monkeypatch
):
    # The worker writes its identity with what it built; a trial that fails before that gets it
    # with its verdict.
    import search_spaces

    real_build = search_spaces.build_discriminator
    built = {"n": 0}

    def build_failing_once(cfg):
        built["n"] += 1
        if built["n"] == 1:
            raise RuntimeError("no discriminator today")
        return real_build(cfg)

    monkeypatch.setattr(search_spaces, "build_discriminator", build_failing_once)
    what, how, where = fault_search(trials=2)
    summary = run_search(what, how, where)

    assert summary.finished == 2
    failed, completed = _trials(storage_url)
    assert failed.state == TrialState.FAIL and failed.user_attrs[attrs.STATUS] == "error"
    assert failed.user_attrs[attrs.FAIL_REASON] == "RuntimeError: no discriminator today"
    assert attrs.PARAMS_G not in failed.user_attrs  # it failed before its first write
    assert completed.state == TrialState.COMPLETE
    for t in (failed, completed):
        assert t.user_attrs[attrs.WORKER].endswith(f":{os.getpid()}")  # the inline worker: us
    _assert_nothing_left_running([failed, completed])
