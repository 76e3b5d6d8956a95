"""The controller machine dies (SIGKILL of the CLI and its local Ray) and the search is resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas import attrs
from nas.study_state import count_finished, is_finished
from storage import open_storage


def _search_command(url: str, tiny_space: str, tiny_extractor: str, artifacts: Path) -> list[str]:
    return [
        sys.executable, "-m", "nas.cli", "search",
        "--space", tiny_space, "--dataset", "digits", "--resolution", "16",
        "--trials", "3", "--study", "faults", "--storage", url, "--artifacts", str(artifacts),
        "--budget", "120", "--eval-points", "2",
        "--fid-samples", "48", "--real-samples", "200", "--metrics", "fid",
        "--feature-extractor", tiny_extractor,
        "--sampler", "random", "--pruner", "none", "--workers", "2",
        "--heartbeat-interval", "1", "--grace-period", "4",
    ]  # fmt: skip


def _snapshot(url: str) -> list[optuna.trial.FrozenTrial]:
    try:
        return optuna.load_study(study_name="faults", storage=url).get_trials()
    except KeyError:  # the study is not created yet
        return []


@pytest.mark.slow
def test_a_search_whose_controller_was_killed_is_finished_by_running_it_again(
    storage_url, tiny_space, tiny_extractor, tmp_path, kill_ray_processes
):
    # The schema first: a process opening a new database while another creates its tables
    # races in Optuna's RDBStorage (a storage issue, reported); the polling below opens it.
    open_storage(storage_url)
    cmd = _search_command(storage_url, tiny_space, tiny_extractor, tmp_path / "artifacts")
    log = (tmp_path / "first.log").open("wb")
    # Its own session: the kill below takes the CLI and every process it started, like a machine
    # that loses power, and nothing else.
    first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            trials = _snapshot(storage_url)
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if count_finished(trials) >= 1 and running:
                break
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no finished + running trial within 120 s"
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        log.close()
    # Ray's own daemons may have left the process group; the machine "died", so they go too.
    kill_ray_processes()

    before = {t.number: t for t in _snapshot(storage_url)}
    done_before = {n: t for n, t in before.items() if is_finished(t)}
    running_before = [n for n, t in before.items() if t.state == TrialState.RUNNING]
    assert done_before and running_before

    second = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]

    trials = _snapshot(storage_url)
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers))
    assert count_finished(trials) == 3  # exactly the target, not one more
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    after = {t.number: t for t in trials}
    for number, old in done_before.items():  # verdicts from before the kill are untouched
        new = after[number]
        assert (new.state, new.values, new.params) == (old.state, old.values, old.params)
        assert new.user_attrs == old.user_attrs
    for number in running_before:  # the trials the kill interrupted were lost and retried
        lost = after[number]
        if lost.state in (TrialState.COMPLETE, TrialState.PRUNED):
            # A Ray worker process can outlive the kill of the process group by a moment (it
            # is started by the raylet); it then writes its own result, which must be kept,
            # not retried: a finished trial is never lost nor duplicated.
            assert not [t for t in trials if t.user_attrs.get(attrs.RETRY_OF) == number]
            continue
        assert lost.state == TrialState.FAIL, (number, lost.state)
        assert lost.user_attrs[attrs.FAIL_KIND] == attrs.FAIL_KIND_INFRA
        if lost.user_attrs[attrs.STATUS] == "orphaned":  # killed between ask and dispatch
            continue
        assert lost.user_attrs[attrs.STATUS] == "lost"
        assert "no heartbeat" in lost.user_attrs[attrs.FAIL_REASON]
        retries = [t for t in trials if t.user_attrs.get(attrs.RETRY_OF) == number]
        assert len(retries) == 1 and retries[0].params == lost.params
        assert is_finished(retries[0])
    assert "3/3 finished" in second.stdout
