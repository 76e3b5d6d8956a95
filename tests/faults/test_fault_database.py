"""The study database (PostgreSQL) drops out for a few seconds while a search runs."""

from __future__ import annotations

import logging
import socket
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from nas import attrs
from nas.controller import run_search
from nas.study_state import count_finished
from storage import open_storage


class TcpForwarder:
    """Forwards 127.0.0.1:<port> to a target; ``stop()`` drops all connections, ``start()`` resumes.

    Stands in for a database server that restarts or a network that drops for a moment (copied
    from tests/storage/test_storage_retry.py).
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


class _Outage(threading.Thread):
    """Once the study has a finished trial, takes the database away for ``seconds``."""

    def __init__(self, proxy: TcpForwarder, direct_url: str, *, seconds: float) -> None:
        super().__init__(daemon=True)
        self._proxy = proxy
        self._url = direct_url
        self._seconds = seconds
        self.window: tuple[float, float] | None = None
        self.stop_waiting = threading.Event()

    def run(self) -> None:
        storage = open_storage(self._url)
        while not self.stop_waiting.wait(0.1):
            try:
                trials = optuna.load_study(study_name="faults", storage=storage).get_trials()
            except KeyError:  # not created yet
                continue
            if count_finished(trials) >= 1:
                start = time.monotonic()
                self._proxy.stop()
                time.sleep(self._seconds)
                self._proxy.start()
                self.window = (start, time.monotonic())
                return


def test_the_search_rides_out_a_database_outage(
    fault_search, postgres_url, caplog: pytest.LogCaptureFixture
):
    from sqlalchemy.engine import make_url

    # The schema first: a process opening a new database while another creates its tables
    # races in Optuna's RDBStorage (a storage issue, reported).
    open_storage(postgres_url)
    real = make_url(postgres_url)
    proxy = TcpForwarder((real.host or "127.0.0.1", real.port or 5432))
    proxy.start()
    outage = _Outage(proxy, postgres_url, seconds=2.5)
    try:
        via_proxy = real.set(host="127.0.0.1", port=proxy.port).render_as_string(
            hide_password=False
        )
        what, how, where = fault_search(
            trials=4, storage=via_proxy, budget=100, heartbeat_interval=1, grace_period=8
        )
        outage.start()
        with caplog.at_level(logging.WARNING, logger="storage.retry"):
            summary = run_search(what, how, where)
        outage.stop_waiting.set()
        outage.join(timeout=10)
    finally:
        proxy.stop()

    assert outage.window is not None, "the search ended before the outage started"
    assert summary.finished == 4
    retried_calls = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert retried_calls, "no database call was retried: the outage was not seen"

    trials = optuna.load_study(study_name="faults", storage=postgres_url).get_trials()
    assert count_finished(trials) == 4
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for t in trials:
        if t.state != TrialState.FAIL:
            continue
        # The outage is never blamed on an architecture: a trial it broke is lost (infra) and
        # retried, or an orphan of a retried ask.
        assert t.user_attrs[attrs.FAIL_KIND] == attrs.FAIL_KIND_INFRA, t.user_attrs
        status = t.user_attrs[attrs.STATUS]
        assert status in ("lost", "orphaned"), t.user_attrs
        if status == "lost":
            assert "database" in t.user_attrs[attrs.FAIL_REASON]
            assert any(r.user_attrs.get(attrs.RETRY_OF) == t.number for r in trials)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
