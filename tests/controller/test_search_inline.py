"""The search controller end to end, with trials run in-process (fast, no Ray)."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState

from gannas.errors import GannasError
from nas import attrs
from nas.controller import run_search
from nas.settings import HowToSearch
from search_spaces import ArchConfig, build_generator, count_parameters
from storage.artifacts import latest_artifact


def _load(url: str, name: str = "quick") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def test_search_records_everything_needed_to_rebuild_and_compare(quick_search, storage_url):
    what, how, where = quick_search(trials=3)
    summary = run_search(what, how, where)

    assert summary.finished == 3
    study = _load(storage_url)
    assert study.metric_names == ["fid"]  # the dashboard's and the report's objective name
    trials = study.get_trials()
    assert len(trials) == 3
    for t in trials:
        assert t.state in (TrialState.COMPLETE, TrialState.FAIL), t.user_attrs
        ua = t.user_attrs
        arch = ArchConfig.model_validate(ua[attrs.ARCH])
        assert arch.resolution == 16 and arch.channels == 1
        # The architecture stored with the trial rebuilds the same generator.
        assert count_parameters(build_generator(arch)) == ua[attrs.PARAMS_G]
        assert ua[attrs.PARAMS_D] > 0
        protocol = ua[attrs.PROTOCOL]
        assert protocol["num_fake"] == 48 and protocol["num_real"] == 200
        assert protocol["resolution"] == 16 and "digits" in protocol["dataset"]
        assert ua[attrs.WALL_TIME] > 0
        assert ua[attrs.WORKER]
        if t.state == TrialState.COMPLETE:
            assert math.isfinite(t.value)
            assert ua[attrs.FID] == pytest.approx(t.value)
            # evaluated at two points, the last at the full budget
            assert sorted(t.intermediate_values) == [6, 12]
            assert t.intermediate_values[12] == pytest.approx(t.value)
        else:
            assert ua[attrs.FAIL_REASON]
    assert any(t.state == TrialState.COMPLETE for t in trials)


def test_running_again_continues_and_never_duplicates(quick_search, storage_url):
    what, how, where = quick_search(trials=2, budget=4)
    run_search(what, how, where)
    first = [(t.number, t.params) for t in _load(storage_url).get_trials()]

    again = run_search(what, how, where)  # same target: nothing to do
    assert again.trials_run_now == 0
    assert [(t.number, t.params) for t in _load(storage_url).get_trials()] == first

    more = HowToSearch(trials=4, study=how.study, sampler=how.sampler, pruner=how.pruner)
    summary = run_search(what, more, where)
    assert summary.trials_run_now == 2
    trials = _load(storage_url).get_trials()
    assert len(trials) == 4
    assert [(t.number, t.params) for t in trials[:2]] == first
    # The continuation draws new architectures; with the study's first seed again, random
    # search replayed its first draws and trained trials 0 and 1's architectures once more.
    earlier = [params for _, params in first]
    assert all(t.params not in earlier for t in trials[2:])


def test_a_new_study_with_the_same_seed_draws_the_same_architectures(quick_search, storage_url):
    what, how, where = quick_search(trials=2, study="a", budget=4)
    run_search(what, how, where)
    run_search(what, dataclasses.replace(how, study="b"), where)
    a, b = (optuna.load_study(study_name=n, storage=storage_url).get_trials() for n in "ab")
    assert [t.params for t in a] == [t.params for t in b]


def test_continuing_with_other_settings_is_refused(quick_search, storage_url):
    what, how, where = quick_search(trials=1)
    run_search(what, how, where)
    other = type(what)(**{**what.__dict__, "budget": 20})
    with pytest.raises(GannasError, match="budget"):
        run_search(other, how, where)
    assert len(_load(storage_url).get_trials()) == 1


def test_continuing_with_a_changed_feature_network_file_is_refused(
    quick_search, storage_url, tmp_path
):
    # The identity names the extractor by its path, which stays the same when the file is
    # replaced; the trials' recorded sha256 catches it before any trial is scored with it.
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    extractor = tmp_path / "network.pt"
    write_tiny_torchscript_extractor(extractor, dim=16, seed=0)
    what, how, where = quick_search(trials=1)
    what = dataclasses.replace(
        what, scoring=dataclasses.replace(what.scoring, feature_extractor=str(extractor))
    )
    run_search(what, how, where)
    recorded = _load(storage_url).trials[0].user_attrs[attrs.PROTOCOL]["weights_sha256"]

    write_tiny_torchscript_extractor(extractor, dim=16, seed=1)
    more = dataclasses.replace(how, trials=2)
    with pytest.raises(GannasError, match=f"trial 0 .*sha256 {recorded}.*another --study"):
        run_search(what, more, where)
    assert len(_load(storage_url).trials) == 1

    write_tiny_torchscript_extractor(extractor, dim=16, seed=0)  # the original network again
    assert run_search(what, more, where).trials_run_now == 1

    # The same network under another path is the same protocol (it was refused by its path);
    # another network under a new path is still refused by its content.
    def at(path: Path) -> Any:
        return dataclasses.replace(
            what, scoring=dataclasses.replace(what.scoring, feature_extractor=str(path))
        )

    copy = tmp_path / "moved" / "copy.pt"
    copy.parent.mkdir()
    shutil.copy(extractor, copy)
    assert run_search(at(copy), dataclasses.replace(how, trials=3), where).trials_run_now == 1
    other = tmp_path / "other.pt"
    write_tiny_torchscript_extractor(other, dim=16, seed=2)
    with pytest.raises(GannasError, match=f"sha256 {recorded}"):
        run_search(at(other), dataclasses.replace(how, trials=4), where)
    assert len(_load(storage_url).trials) == 3
    # The identity keeps the absolute path of the first file, where `gannas retrain` looks.
    identity = _load(storage_url).user_attrs[attrs.STUDY_IDENTITY]
    assert identity["feature_extractor"] == str(extractor.resolve())


def test_a_worker_whose_feature_network_file_differs_fails_its_trials_and_scores_nothing(
    quick_search, storage_url, tmp_path, monkeypatch
):
    # On a cluster each worker loads the network from its own disk. Here the controller computes
    # the reference statistics with one file, and the file at that path then changes before the
    # trials load it, as on a worker node holding another copy: every trial must fail, naming both
    # networks, rather than be scored with a network the reference was not computed with.
    from nas import scoring
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    extractor = tmp_path / "network.pt"
    controllers = write_tiny_torchscript_extractor(extractor, dim=16, seed=0)
    real_compute_reference = scoring.compute_reference
    workers: list[str] = []

    def reference_then_the_worker_copy(spec, device):
        reference = real_compute_reference(spec, device)
        workers.append(write_tiny_torchscript_extractor(extractor, dim=16, seed=1))
        return reference

    monkeypatch.setattr(scoring, "compute_reference", reference_then_the_worker_copy)
    what, how, where = quick_search(trials=2)
    what = dataclasses.replace(
        what, scoring=dataclasses.replace(what.scoring, feature_extractor=str(extractor))
    )
    run_search(what, how, where)

    assert workers and workers[0] != controllers
    trials = _load(storage_url).trials
    assert len(trials) == 2
    for t in trials:
        assert t.state == TrialState.FAIL
        reason = t.user_attrs[attrs.FAIL_REASON]
        assert controllers in reason and workers[0] in reason, reason
        assert not t.intermediate_values and attrs.PROTOCOL not in t.user_attrs


def test_pruned_trials_are_pruned_with_their_last_value(quick_search, storage_url):
    what, how, where = quick_search(trials=1, pruner="median")
    run_search(what, how, where)
    study = _load(storage_url)
    # Completed trials that were excellent at every step make any new trial look bad at its first
    # evaluation, so the median pruner must stop it there.
    for _ in range(6):
        study.add_trial(
            optuna.trial.create_trial(
                value=1e-6, intermediate_values={6: 1e-6, 12: 1e-6}, state=TrialState.COMPLETE
            )
        )
    how_more = HowToSearch(trials=9, study=how.study, sampler="random", pruner="median")
    run_search(what, how_more, where)
    study = _load(storage_url)
    new = study.get_trials()[7:]
    assert len(new) == 2
    for t in new:
        assert t.state == TrialState.PRUNED, (t.state, t.user_attrs.get(attrs.FAIL_REASON))
        assert list(t.intermediate_values) == [6]
        assert t.value == pytest.approx(t.intermediate_values[6])
        # Pruned before the loss log's first step (10): its curve still shows the 6 steps run.
        assert latest_artifact(study, t, prefix="loss_curve") is not None


def test_a_diverging_trial_fails_with_its_reason_and_the_search_goes_on(
    quick_search, storage_url, monkeypatch
):
    import trainers

    real_train = trainers.train_gan
    calls = {"n": 0}

    def train_that_diverges_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            generator = args[0]
            with torch.no_grad():
                for p in generator.parameters():
                    p.fill_(float("nan"))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(trainers, "train_gan", train_that_diverges_once)
    what, how, where = quick_search(trials=3)
    summary = run_search(what, how, where)
    assert summary.finished == 3
    trials = _load(storage_url).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [0]
    assert failed[0].user_attrs[attrs.FAIL_KIND] == attrs.FAIL_KIND_TRIAL
    assert "nan" in failed[0].user_attrs[attrs.FAIL_REASON].lower()
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2


def test_a_trial_enqueued_before_continuing_is_run_not_skipped(quick_search, storage_url):
    # The controller creates trials directly when its snapshot holds no WAITING trial; one that is
    # queued must still be popped and run (with exactly the queued parameters), not left WAITING.
    what, how, where = quick_search(trials=1)
    run_search(what, how, where)
    study = _load(storage_url)
    queued = dict(study.trials[0].params)
    study.enqueue_trial(queued, user_attrs={"queued_by": "test"})

    more = HowToSearch(trials=2, study=how.study, sampler=how.sampler, pruner=how.pruner)
    summary = run_search(what, more, where)
    assert summary.trials_run_now == 1
    trials = _load(storage_url).get_trials()
    assert len(trials) == 2
    assert trials[1].params == queued and trials[1].user_attrs["queued_by"] == "test"
    assert trials[1].state.is_finished()


def test_the_cost_exponent_comes_from_the_command_else_the_space_file(
    quick_search, storage_url, tmp_path, monkeypatch
):
    import dataclasses

    import yaml

    from nas import strategies
    from search_spaces import resolve_space

    seen: list[float | None] = []
    real = strategies.make_sampler

    def spy(name, **kwargs):
        seen.append(kwargs.get("cost_exponent"))
        return real(name, **kwargs)

    monkeypatch.setattr(strategies, "make_sampler", spy)
    data = yaml.safe_load(resolve_space("dcgan").to_yaml())
    data["search"] = {**(data.get("search") or {}), "cost_exponent": 0.25}
    space_file = tmp_path / "costly.yaml"
    space_file.write_text(yaml.safe_dump(data, sort_keys=False))

    what, how, where = quick_search(trials=1, space=str(space_file), sampler="tpe")
    run_search(what, how, where)
    assert seen == [0.25]
    run_search(what, dataclasses.replace(how, trials=2, cost_exponent=0.0), where)
    # continuing builds the sampler again with the continuation's seed: the same exponent
    assert seen[1:] == [0.0, 0.0]
    trials = _load(storage_url).get_trials()
    assert len(trials) == 2


def test_a_negative_cost_exponent_is_refused_before_anything_is_written(tmp_path, capsys):
    from nas.cli import main

    db = tmp_path / "never.db"
    code = main(["search", "--space", "dcgan", "--dataset", "digits", "--trials", "1",
                 "--storage", f"sqlite:///{db}", "--executor", "inline",
                 "--cost-exponent", "-1"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.splitlines() == ["error: --cost-exponent must be a non-negative number, got -1.0"]
    assert not db.exists()


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--sampler", "random"], "sampler 'random' with objectives fid"),
        (["--objectives", "fid,params"], "sampler 'tpe' with objectives fid,params"),
    ],
)
def test_a_cost_exponent_the_search_would_ignore_is_refused_before_anything_is_written(
    tmp_path, capsys, extra, named
):
    from nas.cli import main

    db = tmp_path / "never.db"
    code = main(["search", "--space", "dcgan", "--dataset", "digits", "--trials", "1",
                 "--storage", f"sqlite:///{db}", "--executor", "inline",
                 "--cost-exponent", "1", *extra])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert err.splitlines() == [
        f"error: --cost-exponent applies to the single-objective tpe sampler, but this search "
        f"uses {named}; drop --cost-exponent (or use --sampler tpe with one objective)"
    ]
    assert not db.exists()


def test_ctrl_c_during_an_inline_trial_marks_it_interrupted_not_running(
    quick_search, storage_url, monkeypatch
):
    from nas import trial_runner
    from nas.controller import SearchInterrupted

    real = trial_runner.execute_trial
    calls = []

    def interrupted_on_the_second(job, reference):
        calls.append(job.trial_number)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C while trial 1 trains
        return real(job, reference)

    monkeypatch.setattr(trial_runner, "execute_trial", interrupted_on_the_second)
    what, how, where = quick_search(trials=3)
    # No retries for lost workers: a Ctrl-C is not one, and must not use them up.
    how = dataclasses.replace(how, max_retries=0)
    with pytest.raises(SearchInterrupted):
        run_search(what, how, where)
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs[attrs.STATUS] == "interrupted"
    assert trials[1].user_attrs[attrs.FAIL_KIND] == attrs.FAIL_KIND_INFRA

    # Continued, and interrupted again while the retry trains (the first call of this run).
    calls[:] = [None]
    with pytest.raises(SearchInterrupted):
        run_search(what, how, where)
    # Continued to the end: the architecture of trial 1 is trained after all. Three Ctrl-Cs
    # once left it "lost more than 2 times" and never trained.
    monkeypatch.setattr(trial_runner, "execute_trial", real)
    run_search(what, how, where)
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    retries = [t for t in trials if t.user_attrs.get(attrs.RETRY_OF) is not None]
    assert [t.user_attrs[attrs.RETRY_OF] for t in retries] == [1, 2]
    assert [t.user_attrs[attrs.ATTEMPT] for t in retries] == [1, 1]
    assert retries[-1].state == TrialState.COMPLETE
    assert retries[-1].params == trials[1].params


def test_ctrl_c_while_a_trial_is_prepared_marks_it_interrupted_not_running(
    quick_search, storage_url, monkeypatch
):
    import search_spaces
    from nas.controller import SearchInterrupted

    real = search_spaces.sample_config
    calls = []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after trial 1 was created, before it was dispatched
        return real(*args, **kwargs)

    monkeypatch.setattr(search_spaces, "sample_config", interrupted_on_the_second)
    what, how, where = quick_search(trials=2, budget=4)
    with pytest.raises(SearchInterrupted):
        run_search(what, how, where)
    trials = optuna.load_study(study_name=how.study, storage=storage_url).get_trials()
    # Trial 1 stayed RUNNING (a Ray search left one so in 2 of 13 Ctrl-Cs); the next run waited
    # out the grace period and took it for a lost worker.
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs[attrs.STATUS] == "interrupted"


@pytest.mark.parametrize("keep", [0, 1])
def test_after_the_search_only_the_best_keep_checkpoints_trials_have_a_checkpoint(
    quick_search, storage_url, keep
):
    from storage.artifacts import (
        is_checkpoint_artifact,
        rank_completed_trials,
        trial_artifacts,
    )

    what, how, where = quick_search(trials=3, keep_checkpoints=keep, budget=4)
    run_search(what, how, where)
    study = _load(storage_url)
    ranked = rank_completed_trials(study)
    assert len(ranked) >= 2, [t.user_attrs.get(attrs.FAIL_REASON) for t in study.trials]
    with_checkpoint = {
        t.number
        for t in study.get_trials()
        if any(is_checkpoint_artifact(m) for m in trial_artifacts(study, t))
    }
    # The last trial is pruned as well: before, it pruned before its own state was written
    # and so kept its checkpoint however it ranked.
    assert with_checkpoint == {t.number for t in ranked[:keep]}


_CONDITIONAL_GRID = """\
name: g
family: dcgan
generator:
  depth: {type: int, low: 2, high: 3}
training:
  loss: {type: categorical, choices: [hinge, wgan_gp]}
  gp_weight: {type: float, low: 5.0, high: 10.0, step: 5.0, when: {loss: wgan_gp}}
"""


def test_a_continued_grid_search_visits_every_point_of_a_conditional_space_once(
    quick_search, storage_url, tmp_path
):
    space = tmp_path / "grid.yaml"
    space.write_text(_CONDITIONAL_GRID)
    what, how, where = quick_search(trials=4, sampler="grid", space=str(space), budget=4)
    run_search(what, how, where)
    # Continued: the same seed keeps the grid's order (it was reseeded, and visited points
    # again), and gp_weight counts only with wgan_gp: 2 depths x (hinge | wgan_gp x 2) = 6.
    run_search(what, dataclasses.replace(how, trials=6), where)
    params = [t.params for t in _load(storage_url).get_trials()]
    expected = [
        {"generator.depth": d, "training.loss": "hinge"} for d in (2, 3)
    ] + [
        {"generator.depth": d, "training.loss": "wgan_gp", "training.gp_weight": w}
        for d in (2, 3)
        for w in (5.0, 10.0)
    ]
    assert sorted(params, key=str) == sorted(expected, key=str)

    with pytest.raises(GannasError, match="--trials 7 is more than the 6 points of the grid"):
        run_search(what, dataclasses.replace(how, trials=7), where)
    assert len(_load(storage_url).get_trials()) == 6


def test_a_search_whose_trials_all_fail_early_can_be_reported_and_keeps_reasons_to_one_line(
    quick_search, storage_url, tmp_path, monkeypatch
):
    import trainers
    from nas.cli import main

    def train_that_cannot_allocate(*args, **kwargs):
        # As torch's C++ errors read: the first line, then the native stack.
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory\n"
            + "".join(f"frame #{i}: <unknown function> + 0x{i:x} (libc10.so)\n" for i in range(50))
        )

    monkeypatch.setattr(trainers, "train_gan", train_that_cannot_allocate)
    what, how, where = quick_search(trials=2)
    assert run_search(what, how, where).finished == 2
    trials = _load(storage_url).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    for t in trials:
        assert t.user_attrs[attrs.FAIL_REASON] == (
            "RuntimeError: [enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not "
            "enough memory"
        )
    # No trial wrote a file, yet the store exists: `report` refused "no artifact store at".
    assert Path(where.artifacts).is_dir()
    out = tmp_path / "report"
    code = main(["report", "quick", "--storage", storage_url, "--artifacts", where.artifacts,
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    page = (out / "index.html").read_text()
    assert "not enough memory" in page
    assert "Objectives: fid (minimize)" in page  # "value (minimize)" before


def test_the_metrics_are_one_protocol_whatever_their_order_or_repeats(quick_search, storage_url):
    what, how, where = quick_search(trials=1)

    def with_metrics(*names: str) -> Any:
        return dataclasses.replace(
            what, scoring=dataclasses.replace(what.scoring, metrics=tuple(names))
        )

    run_search(with_metrics("fid", "fid", "kid"), how, where)
    identity = _load(storage_url).user_attrs[attrs.STUDY_IDENTITY]
    assert identity["metrics"] == ["fid", "kid"]  # it stored ['fid', 'fid', 'kid']
    # The same protocol: continuing was refused for the order alone.
    more = dataclasses.replace(how, trials=2)
    assert run_search(with_metrics("kid", "fid"), more, where).trials_run_now == 1
    with pytest.raises(GannasError, match="metrics="):
        run_search(with_metrics("fid"), dataclasses.replace(how, trials=3), where)
