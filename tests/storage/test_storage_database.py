from __future__ import annotations

import multiprocessing as mp
import sqlite3
import warnings
from pathlib import Path

import optuna
import pytest

from gannas.errors import StorageError
from storage import check_reachable, is_local_only, open_storage
from storage.urls import sqlite_path

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_open_storage_creates_schema_and_round_trips_a_study(storage_url: str) -> None:
    storage = open_storage(storage_url)
    study = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    trial = study.ask()
    trial.report(12.5, step=1)
    trial.set_user_attr("gannas.fid", 12.5)
    study.tell(trial, 12.5)

    # A second, independent storage object sees the same data: the database is the truth.
    again = optuna.load_study(study_name="s", storage=open_storage(storage_url))
    (frozen,) = again.get_trials()
    assert frozen.state == optuna.trial.TrialState.COMPLETE
    assert frozen.value == 12.5
    assert frozen.intermediate_values == {1: 12.5}
    assert frozen.user_attrs == {"gannas.fid": 12.5}
    check_reachable(storage_url)


def test_sqlite_is_in_wal_mode_with_busy_timeout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wal.db'}"
    storage = open_storage(url)
    optuna.create_study(study_name="w", storage=storage)
    path = sqlite_path(url)
    assert path is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # Connections made by the storage's own engine wait for locks instead of failing at once.
    with storage.engine.connect() as conn:
        busy_ms = conn.exec_driver_sql("PRAGMA busy_timeout").fetchone()[0]
    assert busy_ms >= 30_000


def test_postgres_engine_pings_pooled_connections(postgres_url: str) -> None:
    storage = open_storage(postgres_url)
    assert storage.engine.pool._pre_ping is True


# Spawned children import their target by module name; test modules are not importable by name
# under --import-mode=importlib, so the worker is written as a small module on a temp sys.path.
_WORKER_SOURCE = """
import optuna

from storage import open_storage


def run(url, study_name, n_trials, barrier):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=open_storage(url))
    barrier.wait()  # start together: maximise lock contention
    for i in range(n_trials):
        trial = study.ask()
        x = trial.suggest_float("x", -1.0, 1.0)
        trial.report(x * x + 1.0, step=0)
        trial.set_user_attr("worker_step", i)
        study.tell(trial, x * x)
"""


@pytest.mark.slow
def test_parallel_processes_share_one_sqlite_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gannas_sqlite_worker.py").write_text(_WORKER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import gannas_sqlite_worker

    url = f"sqlite:///{tmp_path / 'parallel.db'}"
    optuna.create_study(study_name="par", storage=open_storage(url))
    n_procs, n_trials = 4, 15
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n_procs)
    procs = [
        ctx.Process(target=gannas_sqlite_worker.run, args=(url, "par", n_trials, barrier))
        for _ in range(n_procs)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * n_procs

    trials = optuna.load_study(study_name="par", storage=open_storage(url)).get_trials()
    assert len(trials) == n_procs * n_trials
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(n_procs * n_trials))
    assert all(len(t.intermediate_values) == 1 for t in trials)


def test_unreachable_postgres_raises_redacted_storage_error() -> None:
    url = "postgresql://u:s3cret@127.0.0.1:1/db"
    with pytest.raises(StorageError) as err:
        open_storage(url)
    msg = str(err.value)
    assert "s3cret" not in msg and "u:***@127.0.0.1:1/db" in msg
    assert "\n" not in msg
    with pytest.raises(StorageError) as err:
        check_reachable(url)
    assert "s3cret" not in str(err.value)
    assert is_local_only(url) is False


@pytest.mark.postgres
def test_wrong_postgres_password_is_redacted(postgres_url: str) -> None:
    # Trust auth accepts any password; a missing database is still a server-side refusal.
    url = postgres_url.replace("postgres@", "postgres:s3cret@").rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(StorageError, match="no_such_db") as err:
        open_storage(url)
    assert "s3cret" not in str(err.value)


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.db"
    bogus.write_text("this is not sqlite " * 100)
    url = f"sqlite:///{bogus}"
    with pytest.raises(StorageError, match="expected a SQLite file"):
        check_reachable(url)
    with pytest.raises(StorageError, match="notes.db"):
        open_storage(url)


def test_check_reachable_does_not_create_sqlite_file(tmp_path: Path) -> None:
    check_reachable(f"sqlite:///{tmp_path / 'later.db'}")
    assert not (tmp_path / "later.db").exists()


def test_heartbeat_and_failed_trial_callback_are_passed_through(tmp_path: Path) -> None:
    seen: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = open_storage(
            f"sqlite:///{tmp_path / 'hb.db'}",
            heartbeat_interval=1,
            grace_period=2,
            failed_trial_callback=lambda study, trial: seen.append(trial.number),
        )
    assert storage.heartbeat_interval == 1
    assert storage.grace_period == 2
    assert storage.failed_trial_callback is not None
    with pytest.raises(StorageError, match="heartbeat_interval"):
        open_storage(f"sqlite:///{tmp_path / 'hb2.db'}", heartbeat_interval=0)


@pytest.mark.postgres
def test_bare_postgresql_url_uses_an_installed_driver(postgres_url: str) -> None:
    # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the image may only ship psycopg2.
    from sqlalchemy.engine import make_url

    bare = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    storage = open_storage(bare)
    optuna.create_study(study_name="bare", storage=storage)
    assert [s.study_name for s in optuna.get_all_study_summaries(storage)] == ["bare"]
    check_reachable(bare)


def test_storage_survives_pickling_for_ray_workers(storage_url: str) -> None:
    import pickle

    storage = open_storage(storage_url)
    optuna.create_study(study_name="p", storage=storage)
    clone = pickle.loads(pickle.dumps(storage))
    assert clone.engine_kwargs == storage.engine_kwargs
    assert [s.study_name for s in optuna.get_all_study_summaries(clone)] == ["p"]



def test_processes_creating_the_same_new_database_at_once_all_succeed(tmp_path):
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    go = tmp_path / "go"
    # Each process imports everything first, then waits for the same instant to open the new
    # database, so their schema creations overlap.
    script = (
        "import pathlib, sys, time\n"
        "from storage import open_storage\n"
        "import optuna, os\n"
        f"go = pathlib.Path({str(go)!r})\n"
        f"pathlib.Path({str(tmp_path)!r}, f'ready.{{os.getpid()}}').touch()\n"
        "while not go.exists(): time.sleep(0.001)\n"
        f"open_storage({url!r})\n"
        "print('ok')\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    deadline = time.time() + 60
    while len(list(tmp_path.glob("ready.*"))) < len(procs) and time.time() < deadline:
        time.sleep(0.01)  # every process has finished its imports
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip() == "ok"
