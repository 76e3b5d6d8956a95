"""Several Ray nodes and several controllers sharing one PostgreSQL study.

The Ray cluster is Ray's multi-node test cluster (``ray.cluster_utils.Cluster``): a head and two
worker nodes of one CPU each, all on this machine but with their own raylets, so trials really run
on different nodes and reach the study only through the database.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator

import optuna
import pytest
from optuna.trial import TrialState

from gannas.errors import GannasError
from nas import attrs
from nas.controller import run_search
from nas.study_state import count_finished, is_finished
from storage import open_storage


@pytest.fixture(scope="module")
def ray_cluster(kill_processes_mentioning: Callable[[str], list[int]]) -> Iterator[str]:
    """A 3-node Ray cluster (1 CPU each) in a private temp dir; yields its address."""
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="gc", dir="/tmp")
    with pytest.MonkeyPatch.context() as mp:
        # The cluster writes its address into $RAY_TMPDIR for `ray.init("auto")`: keep it private.
        mp.setenv("RAY_TMPDIR", tmp)
        cluster = Cluster(
            initialize_head=True,
            connect=False,
            head_node_args={"num_cpus": 1, "include_dashboard": False},
        )
        try:
            for _ in range(2):
                cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            yield cluster.address
        finally:
            cluster.shutdown()
            kill_processes_mentioning(tmp)
            shutil.rmtree(tmp, ignore_errors=True)


def _trials(url: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name="faults", storage=url).get_trials()


@pytest.mark.slow
def test_workers_on_three_nodes_finish_exactly_the_target_on_postgres(
    fault_search, postgres_url, ray_cluster
):
    what, how, where = fault_search(
        trials=5, storage=postgres_url, executor="ray", workers=3, address=ray_cluster, budget=60
    )
    summary = run_search(what, how, where)

    assert summary.finished == 5
    trials = _trials(postgres_url)
    assert [t.number for t in trials] == list(range(len(trials)))  # no duplicates, no gaps
    assert len(trials) == 5 and count_finished(trials) == 5
    workers = set()
    for t in trials:
        assert t.state == TrialState.COMPLETE, t.user_attrs.get(attrs.FAIL_REASON)
        # Nothing lost between the worker and the database: every evaluation and the verdict.
        assert sorted(t.intermediate_values) == [30, 60]
        assert t.value == pytest.approx(t.user_attrs[attrs.FID])
        assert t.value == pytest.approx(t.intermediate_values[60])
        workers.add(t.user_attrs[attrs.WORKER])
    assert len(workers) >= 2, workers  # trials ran side by side on several worker processes


_SUMMARY = re.compile(r"(\d+)/(\d+) finished")


@pytest.mark.slow
def test_two_controllers_on_one_study_share_the_target(
    postgres_url, ray_cluster, tiny_space, tiny_extractor, tmp_path
):
    target, workers = 6, 2
    cmd = [
        sys.executable, "-m", "nas.cli", "search",
        "--space", tiny_space, "--dataset", "digits", "--resolution", "16",
        "--trials", str(target), "--study", "faults", "--storage", postgres_url,
        "--artifacts", str(tmp_path / "artifacts"), "--budget", "60", "--eval-points", "2",
        "--fid-samples", "48", "--real-samples", "200", "--metrics", "fid",
        "--feature-extractor", tiny_extractor, "--sampler", "random", "--pruner", "none",
        "--workers", str(workers), "--address", ray_cluster,
        "--heartbeat-interval", "1", "--grace-period", "10",
    ]  # fmt: skip
    # The schema is created first: two processes creating the tables of a new database at once
    # race in Optuna's RDBStorage (a storage issue, reported); the study itself is created by
    # both controllers at once, which is what this test is about.
    open_storage(postgres_url)
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]

    trials = _trials(postgres_url)
    numbers = [t.number for t in trials]
    assert numbers == list(range(len(trials)))  # one sequence of numbers, none duplicated
    assert not [t.number for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    finished = count_finished(trials)
    # Each controller counts the other's RUNNING trials as in flight, so the target is reached,
    # and overshot only by trials both launched from the same snapshot: at most one
    # controller's worth of in-flight trials.
    assert target <= finished <= target + workers, [(t.number, t.state.name) for t in trials]
    assert all(is_finished(t) for t in trials), [
        (t.number, t.user_attrs.get(attrs.FAIL_REASON)) for t in trials if not is_finished(t)
    ]
    assert all(attrs.ARCH in t.user_attrs and attrs.WORKER in t.user_attrs for t in trials)
    # Each controller reports the study's count when it ended; the last one saw the final count.
    matches = [_SUMMARY.search(out) for out, _ in outputs]
    assert all(matches), [out[-500:] for out, _ in outputs]
    reported = [int(m.group(1)) for m in matches if m]
    assert max(reported) == finished and min(reported) >= target
    print(f"two controllers: {finished} finished for a target of {target}; reported {reported}")


def test_sqlite_with_a_cluster_address_is_refused_before_anything_is_written(
    fault_search, tmp_path
):
    db = tmp_path / "refused.db"
    what, how, where = fault_search(
        storage=f"sqlite:///{db}", executor="ray", address="127.0.0.1:6379"
    )
    with pytest.raises(GannasError, match=r"SQLite file.*PostgreSQL URL.*--address"):
        run_search(what, how, where)
    assert not db.exists()


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_no_ray_head_answers_is_refused_in_seconds_and_leaves_no_study(
    fault_search, postgres_url, monkeypatch, scheme
):
    import socket

    import ray

    from nas import ray_endpoint

    # Ray's client retried for minutes at such a port (measured: over 3 minutes at Redis's
    # 6379), printing only its GCS timeouts.
    monkeypatch.setattr(ray_endpoint, "REACH_TIMEOUT_S", 0.5)
    with socket.socket() as other_service:
        other_service.bind(("127.0.0.1", 0))
        other_service.listen(4)
        port = other_service.getsockname()[1]
        what, how, where = fault_search(
            storage=postgres_url, executor="ray", address=f"{scheme}127.0.0.1:{port}"
        )
        with pytest.raises(GannasError, match=rf"127.0.0.1:{port} accepts connections but is not a Ray head"):
            run_search(what, how, where)
    assert not ray.is_initialized()
    assert optuna.get_all_study_names(storage=postgres_url) == []
