"""Test helpers shared by every test directory: the storage modes, throwaway databases, and a TCP
forwarder that takes a database away for a moment.

Like Optuna's ``optuna/testing/storages.py``: a test parametrized over :data:`STORAGE_MODES` gets a
URL from :func:`storage_url_for_mode` and runs against a fresh SQLite file or a fresh PostgreSQL
database (created on the server named by ``$GANNAS_TEST_POSTGRES_URL``, default the local
``postgres`` superuser on 127.0.0.1:5432, and dropped afterwards).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "DEFAULT_TEST_POSTGRES_URL",
    "STORAGE_MODES",
    "TcpForwarder",
    "postgres_url_for_tests",
    "storage_url_for_mode",
    "temporary_postgres_database",
]

STORAGE_MODES = ("sqlite", "postgresql")
TEST_POSTGRES_ENV = "GANNAS_TEST_POSTGRES_URL"
DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def postgres_url_for_tests(*, timeout_s: int = 2) -> str | None:
    """The admin URL of the test PostgreSQL server if it answers in ``timeout_s``, else ``None``.

    The URL must name a database the user may connect to and a user allowed to CREATE DATABASE.
    """
    import sqlalchemy

    from storage.urls import with_installed_driver

    url = os.environ.get(TEST_POSTGRES_ENV, "").strip() or DEFAULT_TEST_POSTGRES_URL
    url = with_installed_driver(url)
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": timeout_s})
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception:  # noqa: BLE001 - unreachable, bad credentials, driver missing: all "no"
        return None
    finally:
        engine.dispose()
    return url


@contextmanager
def temporary_postgres_database(admin_url: str | None = None) -> Iterator[str]:
    """Create an empty database, yield its URL, then drop it (even if the test failed).

    Raises ``RuntimeError`` when no PostgreSQL server is reachable (callers skip before that).
    """
    import sqlalchemy
    from sqlalchemy.engine import make_url

    admin_url = admin_url or postgres_url_for_tests()
    if admin_url is None:
        raise RuntimeError(
            f"no PostgreSQL test server reachable (set ${TEST_POSTGRES_ENV} or start the server on "
            "127.0.0.1:5432)"
        )
    name = f"gannas_test_{uuid.uuid4().hex[:16]}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                # FORCE (PostgreSQL 13+) ends sessions a test left open, e.g. a pooled engine.
                conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def storage_url_for_mode(mode: str, tmp_dir: str | os.PathLike[str]) -> Iterator[str]:
    """A fresh, empty study-database URL for ``mode`` (one of :data:`STORAGE_MODES`)."""
    if mode == "sqlite":
        path = Path(tmp_dir) / f"study-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite:///{path.absolute()}"
    elif mode == "postgresql":
        with temporary_postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown storage mode {mode!r}; expected one of {STORAGE_MODES}")


class TcpForwarder:
    """Forwards 127.0.0.1:<port> to a target; ``stop()`` drops all connections, ``start()`` resumes.

    Stands in for a database server that restarts or a network that drops for a moment: point the
    storage URL at ``127.0.0.1:<port>`` instead of the server.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # listener closed by stop()
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
