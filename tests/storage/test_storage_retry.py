from __future__ import annotations

import logging
import threading
import time

import optuna
import pytest
import sqlalchemy.exc
import sqlalchemy.orm

from gannas.errors import StorageError
from storage import call_with_retries, open_storage
from storage.testing import TcpForwarder


def _operational_error(text: str) -> sqlalchemy.exc.OperationalError:
    return sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception(text))


def test_fails_twice_then_succeeds(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[tuple[int, str]] = []

    def flaky(a: int, *, b: str) -> str:
        calls.append((a, b))
        if len(calls) < 3:
            raise _operational_error("server at postgresql://u:s3cret@db/x closed the connection")
        return f"{a}{b}"

    with caplog.at_level(logging.WARNING, logger="storage.retry"):
        assert call_with_retries(flaky, 1, b="x", initial_delay=0.01) == "1x"
    assert calls == [(1, "x")] * 3
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2
    assert "attempt 1/5" in retries[0].getMessage()
    assert all("s3cret" not in r.getMessage() for r in caplog.records)
    assert "u:***@db" in retries[0].getMessage()


def test_gives_up_after_the_last_attempt_with_storage_error() -> None:
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise sqlalchemy.exc.InterfaceError("SELECT 1", {}, Exception("connection already closed"))

    with pytest.raises(StorageError, match="failed after 3 attempts.*connection already closed"):
        call_with_retries(down, attempts=3, initial_delay=0.0)
    assert calls == 3


def test_optuna_wrapped_transient_error_is_retried() -> None:
    calls = 0

    def wrapped() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            try:
                raise _operational_error("could not connect")
            except sqlalchemy.exc.OperationalError as exc:
                raise optuna.exceptions.StorageInternalError("commit failed") from exc
        return 7

    assert call_with_retries(wrapped, initial_delay=0.0) == 7
    assert calls == 2


def test_a_connection_lost_inside_optunas_trial_query_is_retried(tmp_path) -> None:
    """The chain seen in a CI run of the PostgreSQL outage test: Optuna's ``_get_trials`` takes
    the dropped connection's ``OperationalError`` for "too many IN variables", re-queries in the
    same invalidated session, gets ``PendingRollbackError`` (the first error is only its
    context) and wraps that in ``StorageInternalError``. The call must be retried, not fatal."""
    from optuna.storages._rdb import models

    from storage.rdb_rows import rdb_backend

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    study = optuna.create_study(study_name="s", storage=storage)
    study.ask()
    rdb = rdb_backend(storage)
    real_all = sqlalchemy.orm.Query.all
    dropped: list[bool] = []

    def all_but_the_connection_drops_once(query):
        if not dropped and query.column_descriptions[0]["entity"] is models.TrialModel:
            dropped.append(True)
            query.session.connection().invalidate()
            raise sqlalchemy.exc.OperationalError(
                "SELECT trials", {}, Exception("server closed the connection unexpectedly")
            )
        return real_all(query)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sqlalchemy.orm.Query, "all", all_but_the_connection_drops_once)
        with pytest.raises(optuna.exceptions.StorageInternalError) as raised:
            rdb.get_all_trials(study._study_id)  # what Optuna itself does: a fatal-looking error
        assert isinstance(raised.value.__cause__, sqlalchemy.exc.PendingRollbackError)
        dropped.clear()
        trials = call_with_retries(rdb.get_all_trials, study._study_id, initial_delay=0.0)
    assert dropped and [t.number for t in trials] == [0]


def test_non_transient_errors_are_raised_at_once() -> None:
    calls = 0

    def bad() -> None:
        nonlocal calls
        calls += 1
        raise sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        call_with_retries(bad, initial_delay=0.0)
    assert calls == 1

    def value_error() -> None:
        raise ValueError("not a db problem")

    with pytest.raises(ValueError):
        call_with_retries(value_error, initial_delay=0.0)


def test_backoff_is_exponential_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    sleeps: list[float] = []
    monkeypatch.setattr("storage.retry.time.sleep", sleeps.append)
    monkeypatch.setattr("storage.retry.random.uniform", lambda a, b: 1.0)

    def down() -> None:
        raise _operational_error("down")

    with pytest.raises(StorageError):
        call_with_retries(down, attempts=6, initial_delay=0.5, max_delay=3.0)
    assert sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="attempts"):
        call_with_retries(lambda: None, attempts=0)


@pytest.mark.postgres
def test_calls_during_a_database_outage_are_retried(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy.engine import make_url

    real = make_url(postgres_url)
    proxy = TcpForwarder((real.host or "127.0.0.1", real.port or 5432))
    proxy.start()
    try:
        url = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        study = optuna.create_study(study_name="outage", storage=open_storage(url))
        trial = study.ask()

        proxy.stop()  # the database "goes away" with pooled connections open
        restart = threading.Timer(0.8, proxy.start)
        restart.start()
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="storage.retry"):
            call_with_retries(study.tell, trial, 1.5, attempts=8, initial_delay=0.1, max_delay=0.4)
        restart.join()
        assert time.monotonic() - t0 < 10
        assert any("retrying" in r.getMessage() for r in caplog.records)

        (frozen,) = optuna.load_study(
            study_name="outage", storage=open_storage(postgres_url)
        ).trials
        assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.value == 1.5
    finally:
        proxy.stop()


class _RayLikeTaskError(RuntimeError):
    """What ``ray.get`` raises for a failed task: the original error is its ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("task failed")
        self.cause = cause


def test_the_cause_chain_is_followed_through_from_ray_and_pending_rollback() -> None:
    from nas.executors import is_database_error
    from storage.retry import caused_by

    dropped = _operational_error("server closed the connection unexpectedly")
    try:
        try:
            raise dropped
        except sqlalchemy.exc.OperationalError:
            raise sqlalchemy.exc.PendingRollbackError("rollback first") from None
    except sqlalchemy.exc.PendingRollbackError as exc:
        rollback = exc
    wrapped = optuna.exceptions.StorageInternalError("query failed")
    wrapped.__cause__ = rollback
    from_ray = _RayLikeTaskError(wrapped)

    assert caused_by(from_ray, (sqlalchemy.exc.OperationalError,))
    assert is_database_error(from_ray)
    # A plain error raised while handling a database error is not about the database: only a
    # PendingRollbackError's context is followed.
    try:
        try:
            raise dropped
        except sqlalchemy.exc.OperationalError:
            raise ValueError("bad architecture") from None
    except ValueError as exc:
        unrelated = exc
    assert not caused_by(unrelated, (sqlalchemy.exc.OperationalError,))
    assert not is_database_error(_RayLikeTaskError(unrelated))
    # ``cause`` attributes that are not exceptions, and cycles, end the walk.
    odd = RuntimeError("x")
    odd.cause = "a string"  # type: ignore[attr-defined]
    assert not caused_by(odd, (sqlalchemy.exc.OperationalError,))
    loop_a, loop_b = RuntimeError("a"), RuntimeError("b")
    loop_a.__cause__, loop_b.__cause__ = loop_b, loop_a
    assert not caused_by(loop_a, (sqlalchemy.exc.OperationalError,))
    assert not is_database_error(None)
