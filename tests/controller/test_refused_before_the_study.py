"""A search that cannot work is refused before its study exists, and a search whose trials all
lose their worker stops instead of retrying forever.

A study records its protocol when it is created; a study left behind by a refused command would
refuse the corrected command as a different protocol. So every refusal here is checked to leave
no study."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from nas import attrs
from nas.cli import main
from nas.controller import LOST_STATE, SearchAborted, lost_in_a_row_limit, run_search
from nas.executors import Finished, Reference


def _search_args(db: Path, extractor: str, *extra: str) -> list[str]:
    return ["search", "--space", "dcgan", "--dataset", "digits", "--resolution", "16",
            "--budget", "4", "--eval-points", "1", "--fid-samples", "16", "--real-samples", "64",
            "--feature-extractor", extractor, "--executor", "inline", "--workers", "1",
            "--trials", "1", "--sampler", "random", "--pruner", "none",
            "--storage", f"sqlite:///{db}", "--artifacts", str(db.parent / "artifacts"),
            *extra]  # fmt: skip


def _studies(db: Path) -> list[str]:
    if not db.exists():
        return []
    return optuna.get_all_study_names(storage=f"sqlite:///{db}")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--pruner", "bar"], "unknown pruner 'bar'"),
        (["--resolution", "65536"], "--resolution must be a power of two from 8 to 1024"),
        (["--keep-checkpoints", "-1"], "--keep-checkpoints must be >= 0"),
        (["--real-samples", "1"], "--real-samples must be at least 2"),
        (["--heartbeat-interval", "0"], "--heartbeat-interval must be at least 1"),
        (["--grace-period", "0"], "--grace-period must be at least 1"),
        (["--device", "tpu"], "--device 'tpu' is not a torch device"),
        (["--artifacts", "/etc/hostname/art"], "'/etc/hostname' is not a directory"),
        (["--tensorboard", "/etc/hostname/tb"], "'/etc/hostname' is not a directory"),
        (["--artifacts", "gs://bucket/x"], "scheme 'gs' is not supported"),
        # Given but empty is refused, not taken for the default.
        (["--objectives", ""], "--objectives needs at least one objective"),
        (["--objectives", " , "], "--objectives needs at least one objective"),
        (["--metrics", ""], "the metrics must include 'fid'"),
        # Every trial failed on it, and the study kept 'is' in its protocol.
        (["--metrics", "fid,is"], "the Inception Score needs Inception-v3's class logits"),
        # os.access says yes to root there; a directory made and removed again says no.
        (["--artifacts", "/proc/gannas-art"], "--artifacts '/proc/gannas-art' cannot be created"),
        (["--tensorboard", "/proc/gannas-tb"], "--tensorboard '/proc/gannas-tb' cannot be created"),
        # The inline executor ignored it.
        (["--address", "ray://127.0.0.1:10001"], "but --executor inline runs every trial"),
    ],
)
def test_a_bad_option_is_refused_by_name_and_leaves_no_study(
    tmp_path, tiny_extractor, capsys, extra, named
):
    db = tmp_path / "study.db"
    assert main(_search_args(db, tiny_extractor, *extra)) == 2
    err = capsys.readouterr().err
    assert named in err and "internal error" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no database, no artifacts


def test_a_dataset_of_one_image_is_refused_by_name_and_leaves_no_study(
    tmp_path, tiny_extractor, capsys
):
    one = tmp_path / "data" / "one.npz"
    one.parent.mkdir()
    np.savez(one, images=np.zeros((1, 16, 16, 1), np.uint8))
    db = tmp_path / "study.db"
    # It was an "internal error" from the reference statistics.
    assert main([*_search_args(db, tiny_extractor), "--dataset", str(one)]) == 2
    err = capsys.readouterr().err
    assert f"dataset '{one}' holds 1 image; FID needs at least 2" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


@pytest.mark.parametrize(
    "generator",
    ["  depth: 5\n", "  depth: {type: int, low: 5, high: 5}\n"],
)
def test_a_space_no_trial_could_build_at_the_resolution_is_refused_and_leaves_no_study(
    tmp_path, tiny_extractor, capsys, generator
):
    space = tmp_path / "spaces" / "deep.yaml"
    space.parent.mkdir()
    space.write_text("name: deep\nfamily: dcgan\ngenerator:\n" + generator)
    db = tmp_path / "study.db"
    # Before, every trial failed "invalid architecture" and the search ended with exit code 0.
    assert main([*_search_args(db, tiny_extractor), "--space", str(space)]) == 2
    err = capsys.readouterr().err
    assert "none of 1000 random configurations of search space 'deep' can be built at " in err
    assert "generator depth 5 needs a resolution divisible by 2**5" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spaces"]
    # Depth 4 builds at 16x16: the same command searches.
    space.write_text("name: deep\nfamily: dcgan\ngenerator:\n  depth: 4\n")
    assert main([*_search_args(db, tiny_extractor), "--space", str(space)]) == 0


def test_an_s3_artifact_store_without_boto3_is_refused_before_any_trial(
    tmp_path, tiny_extractor, capsys, monkeypatch
):
    monkeypatch.setitem(sys.modules, "boto3", None)  # ``import boto3`` raises ImportError
    db = tmp_path / "study.db"
    assert main(_search_args(db, tiny_extractor, "--artifacts", "s3://bucket/x")) == 2
    assert "needs the boto3 package" in capsys.readouterr().err
    assert _studies(db) == []


def test_device_auto_is_accepted_as_the_default():
    from nas.settings import check_device

    check_device("auto", local=True)  # no error: the GPU when there is one, else the CPU
    check_device(None, local=True)


def test_cuda_on_a_machine_without_it_is_refused(tmp_path, tiny_extractor, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    db = tmp_path / "study.db"
    assert main(_search_args(db, tiny_extractor, "--device", "cuda")) == 2
    assert "--device 'cuda': this machine has no CUDA GPU" in capsys.readouterr().err
    assert _studies(db) == []


def test_a_missing_feature_network_leaves_no_study_and_the_corrected_command_runs(
    tmp_path, tiny_extractor, capsys
):
    db = tmp_path / "study.db"
    missing = str(tmp_path / "nowhere.pt")
    assert main(_search_args(db, missing)) == 2
    assert "nowhere.pt" in capsys.readouterr().err
    assert not db.exists() and not (tmp_path / "artifacts").exists()
    # Before the fix the first command had recorded the missing path as the study's protocol,
    # and this one was refused as "created with feature_extractor=...nowhere.pt".
    assert main(_search_args(db, tiny_extractor)) == 0
    (study,) = optuna.get_all_study_summaries(storage=f"sqlite:///{db}")
    assert study.n_trials == 1


class _DyingExecutor:
    """Every trial's worker dies; after ``heal_after`` deaths, trials complete."""

    def __init__(
        self, storage_url: str, heal_after: int | None = None, *, batch: int = 1
    ) -> None:
        from storage import open_storage

        self._storage = open_storage(storage_url)
        self._queue: list[Any] = []
        self._heal_after = heal_after
        self._batch = batch  # how many workers die in the same wait
        self.deaths = 0

    def compute_reference(self, spec: Any, device: str | None) -> Reference:
        return Reference(handle=None, extractor_identity=None)

    def submit(self, job: Any, reference: Any) -> None:
        self._queue.append(job)

    def wait(self, timeout: float) -> list[Finished]:
        if not self._queue:
            return []
        if self._batch > 1:
            jobs, self._queue = self._queue[: self._batch], self._queue[self._batch :]
            self.deaths += len(jobs)
            return [Finished(job, None, ConnectionError("node lost")) for job in jobs]
        job, self._queue = self._queue[0], self._queue[1:]
        if self._heal_after is not None and self.deaths >= self._heal_after:
            value = 1.0
            self._storage.set_trial_user_attr(job.trial_id, attrs.FID, value)
            self._storage.set_trial_state_values(
                job.trial_id, state=TrialState.COMPLETE, values=[value]
            )
            return [Finished(job, {"state": "COMPLETE", "fid": value, "worker": "t"}, None)]
        self.deaths += 1
        return [Finished(job, None, ImportError("No module named 'gannas_missing_dep'"))]

    def running(self) -> list[Any]:
        return list(self._queue)

    def cancel_all(self) -> list[Any]:
        jobs, self._queue = self._queue, []
        return jobs

    def shutdown(self) -> None:
        pass


def test_a_search_whose_every_trial_loses_its_worker_stops_with_the_error(
    quick_search, storage_url
):
    what, how, where = quick_search(trials=3, workers=1)
    executor = _DyingExecutor(storage_url)
    with pytest.raises(SearchAborted) as raised:
        run_search(what, how, where, executor=executor)

    limit = lost_in_a_row_limit(1)
    assert executor.deaths == limit
    message = str(raised.value)
    assert f"{limit} trials in a row lost their worker" in message
    assert "gannas_missing_dep" in message
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    assert len(trials) == limit
    assert all(t.state == TrialState.FAIL for t in trials)
    assert {t.user_attrs[attrs.FAIL_KIND] for t in trials} == {attrs.FAIL_KIND_INFRA}
    # the lost architectures were retried, as any lost trial is, before the search gave up
    assert any(attrs.RETRY_OF in t.user_attrs for t in trials)


def test_trials_lost_together_past_the_limit_are_all_marked_before_the_search_stops(
    quick_search, storage_url
):
    # 4 workers: the limit is 8; three die per wait, so the 8th loss is not the last of its wait
    what, how, where = quick_search(trials=20, workers=4)
    executor = _DyingExecutor(storage_url, batch=3)
    with pytest.raises(SearchAborted, match="9 trials in a row lost their worker"):
        run_search(what, how, where, executor=executor)
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    assert executor.deaths == 9
    # none is left RUNNING, to be found lost only after the grace period of the next run
    assert {t.state for t in trials} == {TrialState.FAIL}


def test_losses_below_the_limit_are_retried_and_the_search_finishes(quick_search, storage_url):
    what, how, where = quick_search(trials=3, workers=1)
    executor = _DyingExecutor(storage_url, heal_after=lost_in_a_row_limit(1) - 1)
    summary = run_search(what, how, where, executor=executor)
    assert summary.finished == 3
    # The lost trials are named apart; "3/3 finished (COMPLETE 3, FAIL 4)" did not add up.
    lost = lost_in_a_row_limit(1) - 1
    assert summary.states == {"COMPLETE": 3, LOST_STATE: lost}


def test_the_limit_grows_with_the_workers():
    assert lost_in_a_row_limit(1) == 5
    assert lost_in_a_row_limit(16) == 32


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("resolution", "sixteen", "--resolution must be an integer, got 'sixteen'"),
        ("budget", 4.5, "--budget must be an integer, got 4.5"),
        ("trials", True, "--trials must be an integer, got True"),
        ("cpus_per_trial", "2", "--cpus-per-trial must be a number, got '2'"),
    ],
)
def test_the_python_api_names_a_setting_of_the_wrong_type(
    quick_search, storage_url, field, value, named
):
    import dataclasses

    from gannas.errors import GannasError

    what, how, where = quick_search(trials=1)
    for settings in (what, how, where):
        if field in {f.name for f in dataclasses.fields(settings)}:
            # (a frozen dataclass takes any value; it was a TypeError from a comparison)
            object.__setattr__(settings, field, value)
    with pytest.raises(GannasError, match=named):
        run_search(what, how, where)
    assert optuna.get_all_study_names(storage=storage_url) == []


def test_ctrl_c_during_start_up_exits_130_and_says_so(
    tmp_path, tiny_extractor, capsys, monkeypatch
):
    from nas import executors

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt  # as a Ctrl-C while the reference statistics are computed

    monkeypatch.setattr(executors.InlineExecutor, "compute_reference", interrupted)
    db = tmp_path / "study.db"
    # It exited 0 with nothing printed: typer returned its 130, which main ignored, so
    # `gannas search ... && gannas export ...` went on after the user aborted.
    assert main(_search_args(db, tiny_extractor)) == 130
    assert "interrupted" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_more_workers_than_the_cluster_runs_at_once_is_said_before_the_search(
    quick_search, storage_url
):
    from nas.controller import SearchProgress
    from nas.executors import InlineExecutor

    class TwoSlots(InlineExecutor):
        def capacity(self) -> int:
            return 2

    messages: list[str] = []
    what, how, where = quick_search(trials=1, workers=4, budget=4)
    run_search(
        what, how, where, executor=TwoSlots(), progress=SearchProgress(on_message=messages.append)
    )
    # The progress said "running 4" while two trials waited in Ray's queue, with no word why.
    assert any(
        m.startswith("warning: --workers 4, but the Ray cluster runs 2 trial(s) at once")
        for m in messages
    ), messages


def test_the_ray_executor_counts_the_trials_its_cluster_runs_at_once():
    from nas.executors import RayExecutor

    executor = object.__new__(RayExecutor)  # no cluster: only its resources are read

    class Cluster:
        @staticmethod
        def cluster_resources() -> dict[str, float]:
            return {"CPU": 16.0, "GPU": 2.0}

    executor._ray = Cluster()
    for per_trial, expected in (((1.0, 0.0), 16), ((3.0, 0.0), 5), ((1.0, 0.5), 4), ((0.5, 1.0), 2)):
        executor._per_trial = per_trial
        assert executor.capacity() == expected, per_trial


def test_continuing_with_fewer_trials_than_run_says_so_instead_of_a_fraction_above_one(
    tmp_path, tiny_extractor, capsys
):
    db = tmp_path / "study.db"
    assert main(_search_args(db, tiny_extractor, "--trials", "2")) == 0
    capsys.readouterr()
    assert main(_search_args(db, tiny_extractor, "--trials", "1")) == 0
    out = capsys.readouterr().out
    # It printed "2/1 finished".
    assert "2 (--trials 1) finished (" in out and "2/1" not in out
