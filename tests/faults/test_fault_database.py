"""The study database (PostgreSQL) drops out for a few seconds while a search runs."""

from __future__ import annotations

import logging
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from nas import attrs
from nas.controller import run_search
from nas.study_state import count_finished
from storage import open_storage
from storage.testing import TcpForwarder


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
    finally:
        # Also when the search failed: an outage thread left behind would re-open the proxy's
        # port later, under another test.
        outage.stop_waiting.set()
        if outage.is_alive():
            outage.join(timeout=10)
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
