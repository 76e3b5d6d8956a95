"""``--tensorboard DIR``: per-trial losses and metrics, read back with TensorBoard's own reader."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas import attrs
from nas.cli import main
from nas.tensorboard import LOSS_D_TAG, LOSS_G_TAG, trial_log_dir

from .conftest import SEARCH_BUDGET, SearchedStudy, ci, tensorboard_available


def _scalars(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {
        tag: [(event.step, event.value) for event in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


def test_each_trial_writes_losses_and_every_evaluation(searched_study: SearchedStudy) -> None:
    if not tensorboard_available():
        message = "the optional 'tensorboard' package is not installed"
        if ci():
            pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)")
        pytest.skip(message)
    study = optuna.load_study(
        study_name=searched_study.study_name, storage=searched_study.storage_url
    )
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2
    for trial in trials:
        directory = trial_log_dir(
            searched_study.tensorboard, study_name=study.study_name, trial_number=trial.number
        )
        assert directory == searched_study.tensorboard / study.study_name / f"trial_{trial.number}"
        assert list(directory.glob("events.out.tfevents.*")), f"no event file in {directory}"
        scalars = _scalars(directory)
        assert {LOSS_D_TAG, LOSS_G_TAG, "eval/fid", "eval/kid"} <= set(scalars), sorted(scalars)

        # Every evaluation the study recorded, at the same steps and with the same values
        # (TensorBoard stores float32).
        history = trial.user_attrs[attrs.HISTORY]
        for name in ("fid", "kid"):
            logged = scalars[f"eval/{name}"]
            assert [step for step, _ in logged] == [step for step, _ in history]
            for (_, value), (_, metrics) in zip(logged, history, strict=True):
                assert value == pytest.approx(metrics[name], rel=1e-6)
        if trial.state == TrialState.COMPLETE:
            assert scalars["eval/fid"][-1][1] == pytest.approx(trial.value, rel=1e-6)

        # Losses at every log step (every 10 steps and the last one), finite.
        for tag in (LOSS_D_TAG, LOSS_G_TAG):
            assert [step for step, _ in scalars[tag]] == [10, SEARCH_BUDGET]
            assert all(math.isfinite(value) for _, value in scalars[tag])


def test_missing_tensorboard_fails_before_the_search_starts(
    tmp_path: Path,
    tiny_space: str,
    tiny_extractor: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` now fails
    db = tmp_path / "study.db"
    code = main(
        [
            "search",
            "--space", tiny_space,
            "--dataset", "digits",
            "--resolution", "16",
            "--budget", "4",
            "--fid-samples", "8",
            "--feature-extractor", tiny_extractor,
            "--executor", "inline",
            "--trials", "1",
            "--storage", f"sqlite:///{db}",
            "--artifacts", str(tmp_path / "artifacts"),
            "--tensorboard", str(tmp_path / "tb"),
        ]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "pip install tensorboard" in err[0]
    assert not db.exists() and not (tmp_path / "tb").exists()  # nothing was started
