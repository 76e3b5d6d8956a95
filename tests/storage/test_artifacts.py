"""Per-trial artifacts: store selection, uploads from a worker's view, checkpoint pruning, plots."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta
from optuna.trial import TrialState

from gannas.errors import StorageError
from storage.artifacts import (
    PRUNED_ATTR_PREFIX,
    PrefixedArtifactStore,
    default_artifact_dir,
    is_checkpoint_pruned,
    latest_artifact,
    loss_curve_png,
    make_artifact_store,
    parse_s3_spec,
    prune_checkpoints,
    rank_completed_trials,
    read_artifact_bytes,
    sample_filename,
    trial_artifacts,
    upload_trial_dir,
    upload_trial_file,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# -- make_artifact_store -------------------------------------------------------------------


def test_directory_spec_gives_a_filesystem_store_that_round_trips(tmp_path: Path) -> None:
    store = make_artifact_store(str(tmp_path / "arts"))
    assert isinstance(store, FileSystemArtifactStore)
    assert (tmp_path / "arts").is_dir()
    import io

    store.write("abc", io.BytesIO(b"payload"))
    assert read_artifact_bytes(store, "abc") == b"payload"


def test_default_store_lives_next_to_the_sqlite_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GANNAS_ARTIFACTS", raising=False)
    db_dir = tmp_path / "dbdir"
    db_dir.mkdir()
    url = f"sqlite:///{db_dir / 'g.db'}"
    assert default_artifact_dir(url) == (db_dir / "gannas_artifacts").resolve()
    make_artifact_store(None, storage_url=url)
    assert (db_dir / "gannas_artifacts").is_dir()

    monkeypatch.chdir(tmp_path)
    assert default_artifact_dir(None) == (tmp_path / "gannas_artifacts").resolve()
    monkeypatch.setenv("GANNAS_ARTIFACTS", str(tmp_path / "from_env"))
    assert default_artifact_dir(url) == (tmp_path / "from_env").resolve()
    assert isinstance(make_artifact_store(""), FileSystemArtifactStore)
    assert (tmp_path / "from_env").is_dir()


def test_file_url_and_bad_specs(tmp_path: Path) -> None:
    make_artifact_store(f"file://{tmp_path / 'f'}")
    assert (tmp_path / "f").is_dir()
    (tmp_path / "plain").write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        make_artifact_store(str(tmp_path / "plain"))
    with pytest.raises(StorageError, match="scheme 'gs'"):
        make_artifact_store("gs://bucket/x")


def test_reading_never_creates_a_store(tmp_path: Path) -> None:
    # Commands that only read (report, export, dashboard) pass create=False: a mistyped
    # --artifacts must be an error naming the path, not a new empty directory.
    missing = tmp_path / "no" / "such"
    with pytest.raises(StorageError, match=r"no artifact store at '.*no/such' \(no such directory\)"):
        make_artifact_store(str(missing), create=False)
    with pytest.raises(StorageError, match="--artifacts"):
        make_artifact_store(f"file://{missing}", create=False)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "plain").write_text("x")
    with pytest.raises(StorageError, match="is a file; expected a directory$"):
        make_artifact_store(str(tmp_path / "plain"), create=False)
    (tmp_path / "arts").mkdir()
    assert isinstance(make_artifact_store(str(tmp_path / "arts"), create=False), FileSystemArtifactStore)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("s3://my-bucket", ("my-bucket", "")),
        ("s3://my-bucket/", ("my-bucket", "")),
        ("s3://my.bucket-1/runs/exp 1/", ("my.bucket-1", "runs/exp 1")),
    ],
)
def test_parse_s3_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_s3_spec(spec) == expected


@pytest.mark.parametrize("spec", ["s3://", "s3://A_Bucket/x", "s3://ab", "/not/s3"])
def test_parse_s3_spec_rejects_bad_buckets(spec: str) -> None:
    with pytest.raises(StorageError, match="s3://bucket"):
        parse_s3_spec(spec)


def test_s3_spec_builds_a_prefixed_boto3_store_without_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: dict[str, object] = {}

    class FakeClient:
        def upload_fileobj(self, fileobj: object, bucket: str, key: str) -> None:
            calls["upload"] = (bucket, key, fileobj.read())  # type: ignore[attr-defined]

        def delete_object(self, *, Bucket: str, Key: str) -> None:  # noqa: N803 - boto3 names
            calls["delete"] = (Bucket, Key)

    fake_boto3 = types.ModuleType("boto3")
    fake_boto3.client = lambda service: calls.setdefault("service", service) and FakeClient()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", fake_boto3)
    import optuna.artifacts._boto3 as optuna_boto3

    # optuna checks at construction that its own `import boto3` succeeded at import time.
    monkeypatch.setattr(optuna_boto3._imports, "check", lambda: None)

    store = make_artifact_store("s3://bucket-a/runs/one")
    assert isinstance(store, PrefixedArtifactStore)
    assert calls["service"] == "s3"
    import io

    store.write("id-1", io.BytesIO(b"bytes"))
    assert calls["upload"] == ("bucket-a", "runs/one/id-1", b"bytes")
    store.remove("id-1")
    assert calls["delete"] == ("bucket-a", "runs/one/id-1")

    unprefixed = make_artifact_store("s3://bucket-a")
    assert not isinstance(unprefixed, PrefixedArtifactStore)


def test_s3_spec_without_boto3_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` raise ImportError
    with pytest.raises(StorageError, match="pip install boto3"):
        make_artifact_store("s3://bucket-a/prefix")


# -- uploads ------------------------------------------------------------------------------


def test_worker_upload_with_only_url_and_trial_id(storage_url: str, tmp_path: Path) -> None:
    study = optuna.create_study(storage=storage_url, study_name="s")
    trial = study.ask()
    store = make_artifact_store(str(tmp_path / "arts"))
    png = _write(tmp_path / "w" / sample_filename(5), PNG_MAGIC + b"5")

    # What a Ray worker has: the URL string and the trial id, nothing else.
    artifact_id = upload_trial_file(storage_url, trial._trial_id, png, store)

    metas = get_all_artifact_meta(study.trials[0], storage=study._storage)
    assert [(m.artifact_id, m.filename, m.mimetype) for m in metas] == [
        (artifact_id, "samples_step00000005.png", "image/png")
    ]
    assert read_artifact_bytes(store, artifact_id) == PNG_MAGIC + b"5"

    ckpt = tmp_path / "ckpt"
    _write(ckpt / "generator.safetensors", b"w")
    _write(ckpt / "arch.json", b"{}")
    ids = upload_trial_dir(study, trial._trial_id, ckpt, store)
    assert sorted(ids) == ["arch.json", "generator.safetensors"]

    study.tell(trial, 1.0)
    with pytest.raises(StorageError, match="already COMPLETE"):
        upload_trial_file(storage_url, trial._trial_id, png, store)


def test_upload_errors_name_the_problem(tmp_path: Path) -> None:
    url = _sqlite(tmp_path)
    study = optuna.create_study(storage=url)
    study.ask()
    store = make_artifact_store(str(tmp_path / "arts"))
    with pytest.raises(StorageError, match="expected a file"):
        upload_trial_file(url, 0, tmp_path / "missing.png", store)
    f = _write(tmp_path / "x.png", b"x")
    with pytest.raises(StorageError, match="no trial with id 999"):
        upload_trial_file(study, 999, f, store)


def test_latest_artifact_uses_the_step_in_the_filename(tmp_path: Path) -> None:
    study = optuna.create_study(storage=_sqlite(tmp_path))
    trial = study.ask()
    store = make_artifact_store(str(tmp_path / "arts"))
    # Uploaded out of order on purpose: step 20 first, then 3, then 100, then a loss curve.
    for step in (20, 3, 100):
        upload_trial_file(
            study, trial._trial_id, _write(tmp_path / sample_filename(step), b"%d" % step), store
        )
    upload_trial_file(study, trial._trial_id, _write(tmp_path / "loss_curve.png", b"l"), store)
    frozen = study.trials[0]
    latest = latest_artifact(study, frozen, prefix="samples")
    assert latest is not None and latest.filename == sample_filename(100)
    assert read_artifact_bytes(store, latest.artifact_id) == b"100"
    assert latest_artifact(study, frozen, prefix="nothing") is None


# -- ranking and pruning ------------------------------------------------------------------


def _run_trials_with_checkpoints(
    study: optuna.Study, store: FileSystemArtifactStore, tmp_path: Path, outcomes: list[object]
) -> None:
    """One trial per outcome: a value (or tuple) completes it, "prune"/"fail" ends it so; every
    trial uploads a checkpoint + metadata + a sample while RUNNING, like a worker does."""
    for i, outcome in enumerate(outcomes):
        trial = study.ask()
        work = tmp_path / f"t{i}"
        _write(work / "generator.safetensors", b"W" * 1000)
        _write(work / "metadata.json", json.dumps({"trial": i}).encode())
        upload_trial_dir(study, trial._trial_id, work, store)
        upload_trial_file(
            study, trial._trial_id, _write(work / "s" / sample_filename(1), b"s"), store
        )
        if outcome == "prune":
            study.tell(trial, state=TrialState.PRUNED)
        elif outcome == "fail":
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, outcome)  # type: ignore[arg-type]


def _checkpoint_owners(study: optuna.Study, store_dir: Path) -> set[int]:
    """Trial numbers whose generator.safetensors bytes are still on disk."""
    on_disk = {p.name for p in store_dir.iterdir()}
    owners = set()
    for t in study.trials:
        for m in get_all_artifact_meta(t, storage=study._storage):
            if m.filename == "generator.safetensors" and m.artifact_id in on_disk:
                owners.add(t.number)
    return owners


def test_prune_keeps_only_the_best_n_checkpoints_single_objective(tmp_path: Path) -> None:
    study = optuna.create_study(storage=_sqlite(tmp_path), direction="minimize")
    store_dir = tmp_path / "arts"
    store = make_artifact_store(str(store_dir))
    _run_trials_with_checkpoints(study, store, tmp_path, [30.0, 10.0, "prune", 20.0, "fail", 5.0])
    running = study.ask()  # never touched: its worker may still be writing
    _write(tmp_path / "r" / "generator.safetensors", b"W" * 1000)
    upload_trial_file(study, running._trial_id, tmp_path / "r" / "generator.safetensors", store)

    assert [t.number for t in rank_completed_trials(study)] == [5, 1, 3, 0]
    pruned = prune_checkpoints(study, store, keep_best=2)

    assert sorted(pruned) == [0, 2, 3, 4]
    assert _checkpoint_owners(study, store_dir) == {5, 1, running.number}
    assert all(is_checkpoint_pruned(study, n) for n in pruned)
    assert not is_checkpoint_pruned(study, 5)
    record = study.user_attrs[f"{PRUNED_ATTR_PREFIX}0"]
    assert record["filenames"] == ["generator.safetensors"]
    # Metadata and samples are kept; the deleted checkpoint no longer lists as an artifact.
    names = sorted(m.filename for m in trial_artifacts(study, study.trials[0]))
    assert names == ["metadata.json", sample_filename(1)]
    assert prune_checkpoints(study, store, keep_best=2) == []  # idempotent
    # Read afresh, as optuna-dashboard does: the deleted checkpoints are no longer listed (it
    # listed them and answered their download with HTTP 500).
    fresh = optuna.load_study(study_name=study.study_name, storage=_sqlite(tmp_path))
    for trial in fresh.trials:
        listed = {m.filename for m in get_all_artifact_meta(trial, storage=fresh._storage)}
        assert ("generator.safetensors" in listed) == (trial.number in {5, 1, running.number})

    # Disk stays bounded as the search goes on: a new best pushes trial 1 out.
    study.tell(running, 1.0)
    _run_trials_with_checkpoints(study, store, tmp_path / "more", [50.0, 0.5])
    prune_checkpoints(study, store, keep_best=2)
    assert _checkpoint_owners(study, store_dir) == {running.number, 8}
    assert sum(1 for p in store_dir.iterdir() if p.stat().st_size == 1000) == 2


def test_prune_maximize_direction_and_keep_zero(tmp_path: Path) -> None:
    study = optuna.create_study(storage=_sqlite(tmp_path), direction="maximize")
    store_dir = tmp_path / "arts"
    store = make_artifact_store(str(store_dir))
    _run_trials_with_checkpoints(study, store, tmp_path, [1.0, 3.0, 2.0])
    prune_checkpoints(study, store, keep_best=1)
    assert _checkpoint_owners(study, store_dir) == {1}
    prune_checkpoints(study, store, keep_best=0)
    assert _checkpoint_owners(study, store_dir) == set()
    with pytest.raises(StorageError, match="keep_best"):
        prune_checkpoints(study, store, keep_best=-1)


def test_prune_multi_objective_keeps_the_pareto_front_first(tmp_path: Path) -> None:
    study = optuna.create_study(storage=_sqlite(tmp_path), directions=["minimize", "minimize"])
    store_dir = tmp_path / "arts"
    store = make_artifact_store(str(store_dir))
    # Front: 0 (1,5), 1 (5,1), 3 (3,3). Dominated: 2 (6,6) by all; 4 (4,4) by 3 only.
    _run_trials_with_checkpoints(study, store, tmp_path, [(1, 5), (5, 1), (6, 6), (3, 3), (4, 4)])
    assert {t.number for t in study.best_trials} == {0, 1, 3}
    assert [t.number for t in rank_completed_trials(study)] == [0, 3, 1, 4, 2]
    prune_checkpoints(study, store, keep_best=4)
    assert _checkpoint_owners(study, store_dir) == {0, 1, 3, 4}
    prune_checkpoints(study, store, keep_best=2)
    assert _checkpoint_owners(study, store_dir) == {0, 3}


def test_prune_tolerates_files_already_gone(tmp_path: Path) -> None:
    study = optuna.create_study(storage=_sqlite(tmp_path))
    store_dir = tmp_path / "arts"
    store = make_artifact_store(str(store_dir))
    _run_trials_with_checkpoints(study, store, tmp_path, [2.0, 1.0])
    for m in get_all_artifact_meta(study.trials[0], storage=study._storage):
        (store_dir / m.artifact_id).unlink()
    assert prune_checkpoints(study, store, keep_best=1) == [0]


# -- plots --------------------------------------------------------------------------------


def test_loss_curve_png_is_a_png_also_when_empty_or_non_finite(tmp_path: Path) -> None:
    from PIL import Image

    out = loss_curve_png(
        [(0, 1.0, 2.0), (10, 0.5, float("nan")), (20, 0.4, 1.5)], tmp_path / "a" / "l.png"
    )
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (500, 300)
        # Not blank: a plot has many colours.
        assert len(img.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 10
    empty = loss_curve_png([], tmp_path / "e.png")
    assert empty.read_bytes().startswith(PNG_MAGIC)
    assert not list(tmp_path.glob("**/.*.tmp"))
