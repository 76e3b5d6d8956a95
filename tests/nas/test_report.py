"""The HTML study report: contents, robustness, self-containment, and how it renders in chromium."""

from __future__ import annotations

import base64
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState
from PIL import Image

from gannas.errors import GannasError
from nas.report import write_report
from storage.artifacts import (
    make_artifact_store,
    sample_filename,
    upload_trial_dir,
    upload_trial_file,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

EVIL = '<script>alert("x")</script>&'
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _ask(study: optuna.Study, i: int) -> optuna.Trial:
    trial = study.ask()
    trial.suggest_int("generator.depth", 2, 4)
    trial.suggest_float("training.lr_g", 1e-5, 1e-3, log=True)
    trial.suggest_categorical("training.loss", ["bce", "hinge", "<wgan_gp>"])
    trial.set_user_attr("gannas.params_g", 1_000_000 + 10_000 * i)
    trial.set_user_attr("gannas.params_d", 2_500 + i)
    trial.set_user_attr("gannas.wall_time_s", 30.0 + 45.0 * i)
    return trial


def _upload_samples(
    study: optuna.Study, trial: optuna.Trial, store: Any, work: Path, seed: int
) -> None:
    # PIL directly rather than trainers.images.save_image_grid: importing torch and torchvision
    # would double this module's run time, and the report only needs some PNG.
    rng = np.random.default_rng(seed)
    for step in (10, 20):  # the report must pick the later grid
        pixels = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
        if step == 20:
            pixels[..., 0] = 255  # reddish: distinguishable from the step-10 grid
        path = work / f"t{trial.number}" / sample_filename(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format="PNG")
        upload_trial_file(study, trial._trial_id, path, store)


@pytest.fixture(scope="module")
def single_study(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[optuna.Study, FileSystemArtifactStore, Path]:
    """8 completed trials (FID 80, 70, ..., 10: later is better), 2 pruned, 1 failed, 1 running;
    trials 7 and 6 (the two best) store sample grids, trial 7 a checkpoint too."""
    root = tmp_path_factory.mktemp("single")
    study = optuna.create_study(
        storage=f"sqlite:///{root / 'study.db'}",
        study_name=f"dcgan {EVIL}",
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    store = make_artifact_store(str(root / "artifacts"))
    for i in range(8):
        trial = _ask(study, i)
        if i >= 6:
            _upload_samples(study, trial, store, root / "work", seed=i)
        if i == 7:
            (root / "ckpt").mkdir()
            (root / "ckpt" / "generator.safetensors").write_bytes(b"w")
            upload_trial_dir(study, trial._trial_id, root / "ckpt", store)
        study.tell(trial, 80.0 - 10.0 * i)
    for i in range(8, 10):
        trial = _ask(study, i)
        trial.report(150.0 + i, step=100)
        study.tell(trial, state=TrialState.PRUNED)
    failed = _ask(study, 10)
    failed.set_user_attr("gannas.fail_reason", f"diverged: {EVIL}")
    study.tell(failed, state=TrialState.FAIL)
    _ask(study, 11)  # left RUNNING
    return study, store, root


def _rows(text: str, table_class: str = "trials") -> list[int]:
    table = text.split(f'<table class="{table_class}">', 1)[1].split("</table>", 1)[0]
    return [int(n) for n in re.findall(r'<tr class="trial-row" data-trial="(\d+)">', table)]


def _images(text: str) -> list[bytes]:
    return [
        base64.b64decode(b)
        for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    ]


def _assert_self_contained(text: str) -> None:
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", text, re.I)
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text.lower() and "<link" not in text.lower()
    # Every src is an inline image.
    assert all(s.startswith("data:image/") for s in re.findall(r'src="([^"]*)"', text))


def test_single_objective_report(
    single_study: tuple[optuna.Study, Any, Path], tmp_path: Path
) -> None:
    study, store, _ = single_study
    path = write_report(study, tmp_path / "out", artifact_store=store, top_k=3)
    assert path == tmp_path / "out" / "index.html"
    text = path.read_text(encoding="utf-8")

    assert _rows(text) == [7, 6, 5]  # lowest FID first
    row7 = text.split('data-trial="7">', 1)[1].split("</tr>", 1)[0]
    assert ">10<" in row7 and "1.07 M" in row7 and "2,507" in row7 and "5 min 45 s" in row7
    assert "stored" in row7  # trial 7 uploaded generator.safetensors
    assert "generator.depth = " in row7 and "training.lr_g = " in row7
    assert "<h2>Parameter importances</h2>" in text and "could not be computed" not in text
    assert 'id="pareto"' not in text

    images = _images(text)
    # 2 history plots + 1 importance plot + the latest sample grid of trials 7 and 6.
    assert len(images) == 5 and all(img.startswith(PNG_MAGIC) for img in images)
    assert text.count(sample_filename(20)) >= 2 and sample_filename(10) not in text
    samples = text.split("Samples of the best trials", 1)[1]
    assert samples.count("no samples stored") == 1  # trial 5

    # Failure reasons and names from the database are escaped, never markup.
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "diverged: &lt;script&gt;" in text
    assert "&lt;wgan_gp&gt;" in text or "hinge" in text or "bce" in text
    _assert_self_contained(text)


def test_report_without_artifact_store_says_so(
    single_study: tuple[optuna.Study, Any, Path], tmp_path: Path
) -> None:
    study, _, _ = single_study
    text = write_report(study, tmp_path, top_k=2).read_text(encoding="utf-8")
    assert _rows(text) == [7, 6]
    assert "No artifact store was given" in text
    assert len(_images(text)) == 3  # plots only


def test_multi_objective_report_has_a_pareto_section(tmp_path: Path) -> None:
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 'mo.db'}",
        directions=["minimize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(["fid", "params_g"])
    # Front: 0 (10, 5e5), 1 (30, 1e5), 3 (20, 2e5); 2 (40, 6e5) and 4 (25, 3e5) are dominated.
    for i, values in enumerate([(10, 5e5), (30, 1e5), (40, 6e5), (20, 2e5), (25, 3e5)]):
        trial = _ask(study, i)
        study.tell(trial, list(values))
    pruned = _ask(study, 5)
    study.tell(pruned, state=TrialState.FAIL)
    text = write_report(study, tmp_path / "r", top_k=10).read_text(encoding="utf-8")

    assert 'id="pareto"' in text and "3 of 5 completed trials" in text
    assert _rows(text) == [0, 3, 1, 4, 2]  # best-trials table: front first, by FID
    pareto_table = text.split('id="pareto"', 1)[1]
    assert _rows(pareto_table) == [0, 3, 1]
    assert "<th>fid</th><th>params_g</th>" in text
    assert text.count("<h3>fid</h3>") == 1 and text.count("<h3>params_g</h3>") == 1
    # history (2) + importances for each objective (2) + Pareto plot (1)
    assert len(_images(text)) == 5
    _assert_self_contained(text)


def test_study_without_completed_trials_gets_a_clear_page(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'e.db'}", study_name="empty")
    empty = write_report(study, tmp_path / "a").read_text(encoding="utf-8")
    assert "No completed trials yet" in empty and "0 trials: no trials" in empty

    failed = _ask(study, 0)
    failed.set_user_attr("gannas.fail_reason", "out of memory")
    study.tell(failed, state=TrialState.FAIL)
    pruned = _ask(study, 1)
    study.tell(pruned, state=TrialState.PRUNED)
    _ask(study, 2)
    text = write_report(study, tmp_path / "b").read_text(encoding="utf-8")
    assert "No completed trials yet" in text
    assert "1 fail, 1 pruned, 1 running" in text
    assert "out of memory" in text
    assert _images(text) == []
    _assert_self_contained(text)


def test_one_completed_trial_explains_missing_importances(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}")
    trial = _ask(study, 0)
    study.tell(trial, float("inf"))  # a diverged trial scored as inf must not break the plots
    trial = _ask(study, 1)
    study.tell(trial, 12.5)
    one = optuna.create_study(storage=f"sqlite:///{tmp_path / 'o.db'}", study_name="one")
    t = _ask(one, 0)
    one.tell(t, 3.0)

    text = write_report(one, tmp_path / "one").read_text(encoding="utf-8")
    assert "need at least 2 completed trials" in text and _rows(text) == [0]
    text2 = write_report(study, tmp_path / "two").read_text(encoding="utf-8")
    assert _rows(text2) == [1, 0] and "non-finite value are not plotted" in text2
    with pytest.raises(ValueError, match="top_k"):
        write_report(study, tmp_path, top_k=0)


def test_unwritable_output_is_a_clear_error_and_leaves_nothing(
    single_study: tuple[optuna.Study, Any, Path], tmp_path: Path
) -> None:
    study, _, _ = single_study
    plain = tmp_path / "samples.png"
    plain.write_bytes(b"not a directory")
    with pytest.raises(GannasError, match=r"cannot write the report to .*samples\.png: it is a file"):
        write_report(study, plain, top_k=2)
    # Under a file: the reason names the file that is in the way; no directory is left behind.
    with pytest.raises(GannasError) as info:
        write_report(study, plain / "new" / "r", top_k=2)
    assert str(info.value) == (
        f"cannot write the report to {plain / 'new' / 'r'}: Not a directory: {str(plain)!r}"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.png"]
    assert plain.read_bytes() == b"not a directory"


def test_failed_write_removes_the_directories_it_created(
    single_study: tuple[optuna.Study, Any, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study, _, _ = single_study
    real_replace = os.replace

    def no_space(src: Any, dst: Any) -> None:
        if str(dst).endswith("index.html"):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(GannasError, match="No space left on device"):
        write_report(study, tmp_path / "new" / "r", top_k=2)
    assert list(tmp_path.iterdir()) == []  # no index.html, no temp file, no directories


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_report_file_gets_the_umasks_mode(
    single_study: tuple[optuna.Study, Any, Path], tmp_path: Path, mask: int, set_umask: Any
) -> None:
    study, _, _ = single_study
    set_umask(mask)
    path = write_report(study, tmp_path / "r", top_k=1)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_report_renders_in_headless_chromium(
    single_study: tuple[optuna.Study, Any, Path], tmp_path: Path, browser_page: Any
) -> None:
    study, store, _ = single_study
    path = write_report(study, tmp_path / "html", artifact_store=store, top_k=5)
    browser_page.goto(path.resolve().as_uri())
    page = browser_page.page

    assert page.title() == f"gannas report: dcgan {EVIL}"
    assert page.locator("table.trials tr.trial-row").count() == 5
    assert page.locator("h1").inner_text() == f"Study dcgan {EVIL}"
    images = page.evaluate(
        "() => Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])"
    )
    assert len(images) == 5
    assert all(complete and width > 0 for _, complete, width in images), images
    # The inlined failure reason is text, not a live element.
    assert page.locator("script").count() == 0
    shot = browser_page.screenshot("report.png")
    assert shot.read_bytes().startswith(PNG_MAGIC)
    assert browser_page.problems() == []


def test_browser_harness_reports_errors_and_external_loads(
    tmp_path: Path, browser_page: Any
) -> None:
    """The harness itself: a page that breaks the rules must show up in ``problems()``."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body>"
        '<img src="https://example.invalid/x.png">'
        "<script>console.error('logged'); throw new Error('boom');</script></body></html>",
        encoding="utf-8",
    )
    browser_page.goto(bad.resolve().as_uri())
    problems = browser_page.problems()
    assert any("logged" in p for p in problems)
    assert any(p.startswith("page error:") and "boom" in p for p in problems)
    assert browser_page.blocked_requests == ["https://example.invalid/x.png"]


def test_the_final_stage_is_reported_best_first_with_the_trial_export_takes(
    tmp_path: Path,
) -> None:
    from nas.attrs import CHECKPOINT, STUDY_IDENTITY
    from nas.export import best_final_stage_trial
    from nas.retrain import FINAL_STUDY, SEARCH_FID, SOURCE_TRIAL, final_study_name

    url = f"sqlite:///{tmp_path / 'study.db'}"
    store = make_artifact_store(str(tmp_path / "artifacts"))
    study = optuna.create_study(storage=url, study_name="s")
    study.set_user_attr(STUDY_IDENTITY, {"budget": 60, "fid_samples": 128})
    for i in range(4):
        study.tell(_ask(study, i), 40.0 - i)
    write_report(study, tmp_path / "before", artifact_store=store)
    assert 'id="final-stage"' not in (tmp_path / "before" / "index.html").read_text()

    final = optuna.create_study(storage=url, study_name=final_study_name("s"))
    final.set_user_attr(STUDY_IDENTITY, {"budget": 600, "fid_samples": 1000})
    study.set_user_attr(FINAL_STUDY, final.study_name)
    # Sources 3, 2 and 1 (search FIDs 37, 38, 39) end at 30 (with a checkpoint), 25 (without)
    # and failed: 25 ranks first, but export can only take the one with a checkpoint.
    for source, outcome in ((3, 30.0), (2, 25.0), (1, None)):
        final.enqueue_trial(
            study.trials[source].params,
            user_attrs={SOURCE_TRIAL: source, SEARCH_FID: study.trials[source].values[0]},
        )
        trial = _ask(final, 0)
        if outcome == 30.0:
            (tmp_path / "ckpt").mkdir()
            (tmp_path / "ckpt" / "generator.safetensors").write_bytes(b"w")
            ids = upload_trial_dir(final, trial._trial_id, tmp_path / "ckpt", store)
            trial.set_user_attr(CHECKPOINT, ids["generator.safetensors"])
        if outcome is None:
            final.tell(trial, state=TrialState.FAIL)
        else:
            final.tell(trial, outcome)
    exported = best_final_stage_trial(study)
    assert exported is not None and exported.number == 0

    text = write_report(study, tmp_path / "after", artifact_store=store).read_text()
    section = text.split('<h2 id="final-stage">', 1)[1]
    assert "s.final" in section
    assert "600 steps, 1000 FID samples (the search: 60 steps, 128 FID samples)" in section
    assert "takes final-stage trial 0" in section
    assert _rows(section, "final") == [1, 0, 2]  # final FID 25, 30, then the failed one
    table = section.split('<table class="final">', 1)[1].split("</table>", 1)[0]
    rows = table.split('<tr class="trial-row"')[1:]
    assert [re.findall(r'<td class="num">([^<]*)</td>', r)[1:3] for r in rows] == [
        ["2", "38"],
        ["3", "37"],
        ["1", "39"],
    ]
    assert "COMPLETE" in rows[0] and "FAIL" in rows[2]
    assert "stored" in rows[1] and "stored" not in rows[0]
    _assert_self_contained(text)
