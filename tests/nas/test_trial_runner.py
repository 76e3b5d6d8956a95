"""The worker side of a trial: its storage is opened once per process, its attributes written in
one transaction, and a broken or replaced database is never reused."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
from optuna.trial import TrialState

from nas import trial_runner
from storage import open_storage


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    trial_runner._STORAGES.clear()


def _url(tmp_path: Path, name: str = "study.db") -> str:
    return f"sqlite:///{tmp_path / name}"


def test_one_storage_per_process_and_url(tmp_path: Path) -> None:
    url = _url(tmp_path)
    first = trial_runner._worker_storage(url, 5)
    assert trial_runner._worker_storage(url, 5) is first
    # Another URL or heartbeat interval is another storage.
    assert trial_runner._worker_storage(_url(tmp_path, "other.db"), 5) is not first
    assert trial_runner._worker_storage(url, 7) is not first


def test_a_replaced_sqlite_file_is_reopened_and_written_to(tmp_path: Path) -> None:
    url = _url(tmp_path)
    old = trial_runner._worker_storage(url, 5)
    optuna.create_study(study_name="s", storage=old)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'study.db'}{suffix}").unlink(missing_ok=True)
    optuna.create_study(study_name="s", storage=open_storage(url))  # a new file, same URL

    new = trial_runner._worker_storage(url, 5)
    assert new is not old
    study = optuna.load_study(study_name="s", storage=new)
    study.add_trial(optuna.trial.create_trial(value=1.0))
    # The write reached the file that is there now, not the deleted one.
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 1


def test_a_database_error_drops_the_cached_storage(tmp_path: Path, monkeypatch) -> None:
    url = _url(tmp_path)
    cached = trial_runner._worker_storage(url, 5)

    def broken(job, reference):
        raise sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("database is gone"))

    monkeypatch.setattr(trial_runner, "_execute_trial", broken)
    job = type("Job", (), {"storage_url": url, "heartbeat_interval": 5})()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        trial_runner.execute_trial(job, None)
    assert trial_runner._worker_storage(url, 5) is not cached


def test_an_error_of_the_trial_keeps_the_storage(tmp_path: Path, monkeypatch) -> None:
    url = _url(tmp_path)
    cached = trial_runner._worker_storage(url, 5)
    monkeypatch.setattr(
        trial_runner, "_execute_trial", lambda job, ref: (_ for _ in ()).throw(KeyError("x"))
    )
    job = type("Job", (), {"storage_url": url, "heartbeat_interval": 5})()
    with pytest.raises(KeyError):
        trial_runner.execute_trial(job, None)
    assert trial_runner._worker_storage(url, 5) is cached


def test_user_attrs_are_written_together_or_not_at_all(tmp_path: Path) -> None:
    storage = open_storage(_url(tmp_path))
    study = optuna.create_study(study_name="s", storage=storage)
    trial = study.ask()
    trial_runner._set_user_attrs(storage, trial._trial_id, {"a": 1, "b": [1, 2], "c": {"x": 0.5}})
    trial_runner._set_user_attrs(storage, trial._trial_id, {"a": 2})  # an upsert, not a copy
    assert storage.get_trial(trial._trial_id).user_attrs == {"a": 2, "b": [1, 2], "c": {"x": 0.5}}

    study.tell(trial, 1.0)
    with pytest.raises(RuntimeError):  # Optuna refuses updates of a finished trial
        trial_runner._set_user_attrs(storage, trial._trial_id, {"d": 1, "e": 2})
    done = storage.get_trial(trial._trial_id)
    assert done.state == TrialState.COMPLETE and "d" not in done.user_attrs


def test_user_attrs_fall_back_to_one_call_each_on_other_storages() -> None:
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    trial_runner._set_user_attrs(storage, trial._trial_id, {"a": 1, "b": "x"})
    assert storage.get_trial(trial._trial_id).user_attrs == {"a": 1, "b": "x"}
