"""The worker side of a trial: its storage is opened once per process, and a broken or replaced
database is never reused (its writes of several rows at once: tests/storage/test_rdb_rows.py)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc

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
