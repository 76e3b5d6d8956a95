"""``gannas retrain``: the final stage in a companion study, continued without duplicates, and
preferred by ``gannas export``."""

from __future__ import annotations

import json
import shutil

import optuna
import pytest
from optuna.trial import TrialState

from nas import attrs
from nas.cli import main
from nas.controller import run_search
from nas.retrain import (
    FINAL_STUDY,
    SEARCH_FID,
    SOURCE_STUDY,
    SOURCE_TRIAL,
    STAGE,
    retrain_top,
)
from nas.settings import WhereToRun


def _load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _retrain_cli(url: str, artifacts: str, *extra: str) -> int:
    return main(
        [
            "retrain", "tiny", "--budget", "16", "--fid-samples", "48", "--storage", url,
            "--artifacts", artifacts, "--executor", "inline", "--workers", "1", *extra,
        ]
    )  # fmt: skip


def test_retrain_top_k_is_the_final_stage_and_export_prefers_it(
    tiny_search, tiny_space, storage_url, artifacts_dir, tmp_path, capsys
):
    # Search from a copy of the space file, then remove it: retraining must use the space stored
    # with the study, not the file.
    space_copy = tmp_path / "moved.yaml"
    shutil.copy(tiny_space, space_copy)
    what, how, where = tiny_search(trials=4)
    run_search(type(what)(**{**what.__dict__, "space": str(space_copy)}), how, where)
    space_copy.unlink()

    main_study = _load(storage_url, "tiny")
    done = sorted(
        (t for t in main_study.get_trials() if t.state == TrialState.COMPLETE),
        key=lambda t: t.values[0],
    )
    assert len(done) >= 3

    assert _retrain_cli(storage_url, artifacts_dir, "--top", "2") == 0
    out = capsys.readouterr().out
    assert "final stage 'tiny.final'" in out

    main_study = _load(storage_url, "tiny")
    assert main_study.user_attrs[FINAL_STUDY] == "tiny.final"
    final = _load(storage_url, "tiny.final")
    assert final.user_attrs[STAGE] == "final" and final.user_attrs[SOURCE_STUDY] == "tiny"
    identity = final.user_attrs[attrs.STUDY_IDENTITY]
    assert identity["budget"] == 16 and identity["fid_samples"] == 48
    assert identity["eval_at"] == [8, 16]
    assert identity["dataset"] == "digits" and identity["resolution"] == 8

    def check_final_trials(expected_sources: list[int]) -> list[optuna.trial.FrozenTrial]:
        trials = _load(storage_url, "tiny.final").get_trials()
        assert [t.user_attrs[SOURCE_TRIAL] for t in trials] == expected_sources
        by_number = {t.number: t for t in main_study.get_trials()}
        for t in trials:
            source = by_number[t.user_attrs[SOURCE_TRIAL]]
            assert t.user_attrs[STAGE] == "final"
            # The enqueued trial trained exactly the source architecture, longer and scored
            # with more samples.
            assert t.params == source.params
            assert t.user_attrs[attrs.ARCH] == source.user_attrs[attrs.ARCH]
            assert t.user_attrs[SEARCH_FID] == pytest.approx(source.values[0])
            assert t.state in (TrialState.COMPLETE, TrialState.FAIL)
            assert t.user_attrs[attrs.PROTOCOL]["num_fake"] == 48
            if t.state == TrialState.COMPLETE:
                assert sorted(t.intermediate_values) == [8, 16]
        return trials

    check_final_trials([done[0].number, done[1].number])
    assert f"{done[0].number:>6}" in out

    # Running it again continues the stage: nothing is trained twice.
    assert _retrain_cli(storage_url, artifacts_dir, "--top", "2") == 0
    check_final_trials([done[0].number, done[1].number])
    # A larger --top adds only the next architecture.
    assert _retrain_cli(storage_url, artifacts_dir, "--top", "3") == 0
    trials = check_final_trials([done[0].number, done[1].number, done[2].number])
    capsys.readouterr()

    # Export prefers the best final-stage generator, and says where it came from.
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    assert completed
    best_final = min(completed, key=lambda t: t.values[0])
    out_dir = tmp_path / "export"
    assert main(
        ["export", "tiny", "--out", str(out_dir), "--storage", storage_url,
         "--artifacts", artifacts_dir]
    ) == 0  # fmt: skip
    metadata = json.loads((out_dir / "metadata.json").read_text())
    provenance = metadata["provenance"]
    assert provenance["study"] == "tiny.final"
    assert provenance["trial"] == best_final.number
    assert provenance["budget"] == 16
    assert metadata["score"]["fid"] == pytest.approx(best_final.values[0])
    arch = json.loads((out_dir / "arch.json").read_text())
    assert arch == best_final.user_attrs[attrs.ARCH]

    # The search's report shows the final stage and names the trial export took.
    report_dir = tmp_path / "report"
    assert main(
        ["report", "tiny", "--out", str(report_dir), "--storage", storage_url,
         "--artifacts", artifacts_dir]
    ) == 0  # fmt: skip
    section = (report_dir / "index.html").read_text().split('id="final-stage"', 1)[1]
    assert f"takes final-stage trial {best_final.number}," in section
    assert "16 steps, 48 FID samples" in section
    for t in trials:
        assert f'data-trial="{t.number}"' in section

    # An explicit --trial still means the search study's own trial.
    explicit = tmp_path / "explicit"
    number = done[0].number
    assert main(
        ["export", "tiny", "--out", str(explicit), "--trial", str(number), "--storage",
         storage_url, "--artifacts", artifacts_dir]
    ) == 0  # fmt: skip
    provenance = json.loads((explicit / "metadata.json").read_text())["provenance"]
    assert provenance["study"] == "tiny" and provenance["trial"] == number


def test_export_without_a_final_stage_is_unchanged(
    tiny_search, storage_url, artifacts_dir, tmp_path
):
    what, how, where = tiny_search(trials=2)
    run_search(what, how, where)
    study = _load(storage_url, "tiny")
    best = min(
        (t for t in study.get_trials() if t.state == TrialState.COMPLETE), key=lambda t: t.values[0]
    )
    out_dir = tmp_path / "export"
    assert main(
        ["export", "tiny", "--out", str(out_dir), "--storage", storage_url,
         "--artifacts", artifacts_dir]
    ) == 0  # fmt: skip
    provenance = json.loads((out_dir / "metadata.json").read_text())["provenance"]
    assert provenance["study"] == "tiny" and provenance["trial"] == best.number


def test_export_says_which_trial_it_exported_and_why_not_the_best(
    tiny_search, storage_url, artifacts_dir, tmp_path, capsys
):
    from storage.artifacts import PRUNED_ATTR_PREFIX

    what, how, where = tiny_search(trials=3)
    run_search(what, how, where)
    study = _load(storage_url, "tiny")
    done = sorted(
        (t for t in study.get_trials() if t.state == TrialState.COMPLETE), key=lambda t: t.values[0]
    )
    if len(done) < 2:
        pytest.skip("needs two completed trials; a tiny trial diverged")
    best, second = done[0], done[1]
    capsys.readouterr()
    args = ["--storage", storage_url, "--artifacts", artifacts_dir]
    assert main(["export", "tiny", "--out", str(tmp_path / "a"), *args]) == 0
    out = capsys.readouterr().out
    assert f"exported trial {best.number} of study 'tiny', FID {best.values[0]:.4f}" in out
    assert "note:" not in out

    # the best trial's checkpoint was pruned (--keep-checkpoints): the next best is exported,
    # and the console says so
    study.set_user_attr(f"{PRUNED_ATTR_PREFIX}{best.number}", True)
    assert main(["export", "tiny", "--out", str(tmp_path / "b"), *args]) == 0
    out = capsys.readouterr().out
    assert f"exported trial {second.number} of study 'tiny'" in out
    assert f"note: the best completed trial, {best.number} (FID {best.values[0]:.4f}), has no " \
        "checkpoint left" in out
    # an explicit --trial is what the user asked for: no note
    assert main(["export", "tiny", "--out", str(tmp_path / "c"), "--trial", str(second.number),
                 *args]) == 0  # fmt: skip
    assert "note:" not in capsys.readouterr().out


def test_retrain_of_a_multi_objective_study_takes_the_front_by_fid(tiny_search, storage_url):
    from nas.pareto import rank_trials

    what, how, where = tiny_search(trials=4, objectives=("fid", "params"), artifacts=False)
    run_search(what, how, where)
    study = _load(storage_url, "tiny")
    ranked = rank_trials(study)
    summary = retrain_top(
        "tiny",
        top=1,
        budget=12,
        fid_samples=40,
        where=WhereToRun(storage=storage_url, executor="inline", workers=1),
    )
    assert [a.source_number for a in summary.architectures] == [ranked[0].number]
    assert summary.enqueued_now == [ranked[0].number]
    (arch,) = summary.architectures
    final = _load(storage_url, "tiny.final")
    assert len(final.directions) == 2
    (trial,) = final.get_trials()
    assert trial.user_attrs[SOURCE_TRIAL] == ranked[0].number
    assert trial.user_attrs[attrs.ARCH] == ranked[0].user_attrs[attrs.ARCH]
    assert trial.state in (TrialState.COMPLETE, TrialState.FAIL)
    if trial.state == TrialState.COMPLETE:
        assert arch.final_values == trial.values
        assert trial.values[1] == float(ranked[0].user_attrs[attrs.PARAMS_G])


def test_retrain_errors_are_one_line(storage_url, capsys):
    def retrain(study: str, *extra: str) -> tuple[int, str]:
        code = main(
            ["retrain", study, "--budget", "5", "--fid-samples", "8", "--storage", storage_url,
             *extra]
        )  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return code, err

    optuna.create_study(storage=storage_url, study_name="empty")
    code, err = retrain("nope")
    assert code == 2 and "no study named 'nope'" in err

    code, err = retrain("empty")
    assert code == 2 and "no stored gannas identity" in err

    final = optuna.create_study(storage=storage_url, study_name="x.final")
    final.set_user_attr(STAGE, "final")
    final.set_user_attr(SOURCE_STUDY, "x")
    code, err = retrain("x.final")
    assert code == 2 and "already a final stage" in err

    code, err = retrain("empty", "--top", "0")
    assert code == 2 and "--top must be at least 1" in err


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--budget", "0"], "--budget must be at least 1"),
        (["--fid-samples", "1"], "--fid-samples must be at least 2"),
        (["--feature-extractor", "/nonexistent/fx.pt"], "--feature-extractor '/nonexistent/fx.pt'"),
        (["--device", "tpu"], "--device 'tpu' is not a torch device"),
        (["--max-retries", "-1"], "--max-retries must be >= 0"),
        (["--dataset", "/nonexistent/images"], "unknown dataset '/nonexistent/images'"),
        # The search ran 10 steps with 32 FID samples: the final stage never does less.
        (["--budget", "9"], "--budget 9 is less than the search's 10"),
        (["--fid-samples", "16"], "--fid-samples 16 is less than the search's 32"),
        # Another network's final FIDs would be set beside the search's (it was accepted).
        (["--feature-extractor", "OTHER_NETWORK"], "Pass --feature-extractor with the file"),
        (["--artifacts", "/proc/gannas-art"], "--artifacts '/proc/gannas-art' cannot be created"),
    ],
)
def test_a_refused_retrain_creates_no_final_stage_and_the_corrected_one_runs(
    tiny_search, storage_url, tmp_path, capsys, extra, named
):
    from trainers.metrics.testing import write_tiny_torchscript_extractor

    what, how, where = tiny_search(trials=2, artifacts=False)
    run_search(what, how, where)
    artifacts = str(tmp_path / "art")
    if "OTHER_NETWORK" in extra:
        other = tmp_path / "other.pt"
        write_tiny_torchscript_extractor(other, dim=16, seed=1)
        extra = [str(other) if e == "OTHER_NETWORK" else e for e in extra]
    assert _retrain_cli(storage_url, artifacts, *extra) == 2
    err = capsys.readouterr().err
    assert named in err and "internal error" not in err
    assert "tiny.final" not in optuna.get_all_study_names(storage=storage_url)
    assert FINAL_STUDY not in _load(storage_url, "tiny").user_attrs
    # nothing recorded by the refused command stands in the corrected one's way
    assert _retrain_cli(storage_url, artifacts, "--top", "1") == 0
    (trial,) = _load(storage_url, "tiny.final").get_trials()
    assert trial.state in (TrialState.COMPLETE, TrialState.FAIL)


def test_retrain_on_a_missing_database_file_refuses_and_creates_nothing(tmp_path, capsys):
    db = tmp_path / "typo.db"
    assert main(["retrain", "tiny", "--budget", "5", "--fid-samples", "8",
                 "--storage", f"sqlite:///{db}"]) == 2  # fmt: skip
    assert "no study database at" in capsys.readouterr().err
    assert not db.exists()


def test_a_repeated_retrain_keeps_its_stages_reference_and_other_changes_are_refused(
    tiny_search, storage_url, tmp_path, capsys
):
    what, how, where = tiny_search(trials=2, artifacts=False)
    run_search(what, how, where)
    artifacts = str(tmp_path / "art")
    assert _retrain_cli(storage_url, artifacts, "--top", "1", "--real-samples", "100") == 0
    assert _load(storage_url, "tiny.final").user_attrs[attrs.STUDY_IDENTITY]["real_samples"] == 100
    # The same command without --real-samples continues the stage (it was refused as another
    # protocol: the default then was 1000, whatever the stage had used).
    assert _retrain_cli(storage_url, artifacts, "--top", "1") == 0
    capsys.readouterr()
    # A real change is refused, with a remedy that retrain has (it named --study, which it lacks).
    assert _retrain_cli(storage_url, artifacts, "--top", "1", "--budget", "17") == 2
    err = capsys.readouterr().err
    assert "budget=16" in err and "but this retrain has budget=17" in err
    assert "A final stage has one protocol: retrain with the options it was started with" in err
    assert "--study" not in err
    assert len(_load(storage_url, "tiny.final").get_trials()) == 1
