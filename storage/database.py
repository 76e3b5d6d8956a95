"""Open the study database as an Optuna ``RDBStorage``, tuned per backend.

Optuna creates and migrates the schema itself; this module only chooses engine options:

* SQLite: WAL journal mode (readers do not block the writer) and a 60 s busy timeout, so several
  worker processes on one machine wait for the write lock instead of failing with
  "database is locked" (optuna#820). WAL is a property of the database file, so it is set once
  here and holds for every later connection, including those of unpickled storages in Ray workers.
* PostgreSQL/MySQL: ``pool_pre_ping`` so connections dropped by a database restart or an idle
  timeout are replaced instead of failing the next query; a bounded connect timeout.

Every failure becomes a :class:`~gannas.errors.StorageError` with the password redacted.
"""

from __future__ import annotations

import inspect
import sqlite3
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gannas.errors import StorageError
from storage.urls import (
    is_local_only,
    redact_text,
    redact_url,
    sqlite_path,
    storage_kind,
    url_password,
    validate_storage_url,
    with_installed_driver,
)

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    from optuna.storages import RDBStorage
    from optuna.trial import FrozenTrial

__all__ = ["SQLITE_BUSY_TIMEOUT_S", "check_reachable", "is_local_only", "open_storage"]

SQLITE_BUSY_TIMEOUT_S = 60.0
"""How long a SQLite connection waits for another process's write lock before failing."""
CONNECT_TIMEOUT_S = 10
"""How long a PostgreSQL/MySQL connection attempt may take before it counts as unreachable."""


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    failed_trial_callback: Callable[[optuna.study.Study, FrozenTrial], None] | None = None,
) -> RDBStorage:
    """An Optuna ``RDBStorage`` for ``url``, creating the schema on first use.

    ``heartbeat_interval``/``grace_period`` enable Optuna's heartbeat so trials of a crashed worker
    are marked FAIL; ``failed_trial_callback`` (e.g. ``optuna.storages.RetryFailedTrialCallback``)
    runs for each such trial.
    """
    import optuna
    import sqlalchemy.exc

    url = with_installed_driver(validate_storage_url(url))
    kind = storage_kind(url)
    if kind == "sqlite":
        _enable_sqlite_wal(url)
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    else:
        engine_kwargs = {"pool_pre_ping": True, "connect_args": _connect_timeout_args(kind)}

    kwargs: dict[str, Any] = {
        "heartbeat_interval": heartbeat_interval,
        "grace_period": grace_period,
    }
    if failed_trial_callback is not None:
        # Optuna >= 4.9 renamed the argument and warns on the old name; use whichever exists.
        params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
        name = (
            "heartbeat_stale_trial_callback"
            if "heartbeat_stale_trial_callback" in params
            else "failed_trial_callback"
        )
        kwargs[name] = failed_trial_callback

    try:
        return _create_rdb_storage(url, engine_kwargs, kwargs)
    except ImportError as exc:
        raise StorageError(
            f"cannot open study database {redact_url(url)!r}: the database driver for {kind} is "
            f"not installed ({_first_line(exc, url)}); install e.g. psycopg2-binary for PostgreSQL"
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot open study database {redact_url(url)!r}: {_first_line(exc, url)}; expected a "
            "reachable database that accepts these credentials"
        ) from None
    except RuntimeError as exc:
        # Optuna's schema-version check: the database was written by another Optuna version.
        raise StorageError(
            f"cannot use study database {redact_url(url)!r}: {_first_line(exc, url)}"
        ) from None
    except ValueError as exc:  # bad heartbeat_interval / grace_period
        raise StorageError(
            f"invalid storage options for {redact_url(url)!r}: {_first_line(exc, url)}"
        ) from None


_SCHEMA_RACE_ATTEMPTS = 5


def _create_rdb_storage(
    url: str, engine_kwargs: dict[str, Any], kwargs: dict[str, Any]
) -> RDBStorage:
    """``RDBStorage(...)``, retried when another process is creating the same schema right now.

    Optuna creates the tables on first use without a lock: two processes opening a brand-new
    database at once can collide ("table studies already exists" on SQLite, a duplicate
    ``alembic_version`` row on PostgreSQL). The loser's retry finds the schema complete.
    """
    import optuna
    import sqlalchemy.exc

    for attempt in range(_SCHEMA_RACE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                # Heartbeats are how gannas tells a live trial from a lost one; Optuna still
                # labels the argument experimental, which would print on every worker start.
                warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.ProgrammingError) as exc:
            text = str(exc).lower()
            racing = "already exists" in text or "duplicate" in text or "unique" in text
            if not racing or attempt == _SCHEMA_RACE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def check_reachable(url: str) -> None:
    """Raise :class:`StorageError` unless the database at ``url`` can be connected to now.

    For SQLite this checks the file (if it exists) is a readable database without creating it;
    for servers it opens one connection and runs ``SELECT 1``.
    """
    import sqlalchemy
    import sqlalchemy.exc

    url = with_installed_driver(validate_storage_url(url))
    kind = storage_kind(url)
    if kind == "sqlite":
        path = sqlite_path(url)
        assert path is not None  # validate_storage_url refuses in-memory databases
        if not path.exists():
            return  # created on first use; its directory was checked by validate_storage_url
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise StorageError(
                f"cannot read SQLite database {redact_url(url)!r}: {exc}; expected a SQLite file "
                "(is it another kind of file?)"
            ) from None
        return
    engine = sqlalchemy.create_engine(url, connect_args=_connect_timeout_args(kind))
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except ImportError as exc:
        raise StorageError(
            f"cannot reach study database {redact_url(url)!r}: driver missing "
            f"({_first_line(exc, url)})"
        ) from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise StorageError(
            f"cannot reach study database {redact_url(url)!r}: {_first_line(exc, url)}"
        ) from None
    finally:
        engine.dispose()


def _enable_sqlite_wal(url: str) -> None:
    """Switch the SQLite file to WAL mode (persistent; a no-op when it already is)."""
    path = sqlite_path(url)
    assert path is not None  # validate_storage_url refuses in-memory databases
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            conn = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S)
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            # Changing the journal mode needs an exclusive lock; a busy peer is transient.
            if "locked" in str(exc) and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            raise StorageError(f"cannot open SQLite database {redact_url(url)!r}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"cannot open SQLite database {redact_url(url)!r}: {exc}; expected a SQLite file"
            ) from None
        break
    if str(mode).lower() != "wal":
        raise StorageError(
            f"SQLite database {redact_url(url)!r} refused WAL journal mode (got {mode!r}); "
            "expected a local file system that supports shared memory (not NFS)"
        )


def _connect_timeout_args(kind: str) -> dict[str, Any]:
    if kind == "postgresql":
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    if kind == "mysql":
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


def _first_line(exc: BaseException, url: str) -> str:
    """The driver's own message (first line), with the URL's password scrubbed."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip() or type(inner).__name__
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    password = url_password(url)
    return redact_text(line, secrets=(password,) if password else ())
