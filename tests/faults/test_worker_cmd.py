"""``gannas worker``: argument handling and the ``ray start`` command line it runs."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from nas import ray_endpoint, worker_cmd
from nas.cli import main
from nas.worker_cmd import WorkerError, parse_address, ray_executable, worker_command


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A local gRPC server's port (stands in for a Ray head's GCS port, a gRPC server)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


@pytest.fixture
def non_ray_port() -> Iterator[int]:
    """A local port that accepts connections but does not speak gRPC (as Redis on 6379)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


@pytest.fixture
def ran(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Commands the worker command ran (instead of running them), each exiting with code 0."""
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], check: bool = False) -> subprocess.CompletedProcess[bytes]:
        calls.append(list(cmd))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(worker_cmd.subprocess, "run", fake_run)
    return calls


def test_the_ray_of_this_environment_is_used() -> None:
    ray = ray_executable()
    assert Path(ray) == Path(sys.executable).with_name("ray")
    assert worker_command("10.0.0.1:6379", ray="/x/ray") == [
        "/x/ray", "start", "--address", "10.0.0.1:6379", "--block",
    ]  # fmt: skip


def test_resources_and_block_are_passed_on() -> None:
    cmd = worker_command("head.example:7000", num_cpus=8, num_gpus=2, block=False, ray="ray")
    assert cmd == [
        "ray", "start", "--address", "head.example:7000", "--num-cpus", "8", "--num-gpus", "2",
    ]  # fmt: skip
    ipv6 = worker_command("[::1]:6379", num_gpus=0, ray="ray")
    assert ipv6[3:] == ["[::1]:6379", "--num-gpus", "0", "--block"]


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("head", "HOST:PORT"),
        ("head:", "HOST:PORT"),
        (":6379", "HOST:PORT"),
        ("head:port", "HOST:PORT"),
        ("head:70000", "HOST:PORT"),
        ("ray://head:10001", "Ray Client address"),
    ],
)
def test_bad_addresses_are_refused_with_the_expected_form(address: str, message: str) -> None:
    with pytest.raises(WorkerError, match=message) as info:
        parse_address(address)
    assert repr(address) in str(info.value)


def test_negative_resources_are_refused() -> None:
    with pytest.raises(WorkerError, match="--num-cpus must be >= 0, got -1"):
        worker_command("h:1", num_cpus=-1, ray="ray")


def test_a_missing_ray_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WorkerError, match="`ray` command is missing.*pip install"):
        ray_executable()


def test_the_cli_runs_ray_start_blocking(
    listening_port: int, ran: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["worker", "--address", f"127.0.0.1:{listening_port}", "--num-cpus", "2"])
    assert code == 0
    assert ran == [
        [
            str(Path(sys.executable).with_name("ray")), "start",
            "--address", f"127.0.0.1:{listening_port}", "--num-cpus", "2", "--block",
        ]
    ]  # fmt: skip
    assert "joining the Ray cluster" in capsys.readouterr().err


def test_an_unreachable_head_is_one_line_and_nothing_runs(
    closed_port: int, ran: list[list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["worker", "--address", f"127.0.0.1:{closed_port}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot reach the Ray head at 127.0.0.1:{closed_port}")
    assert "\n" not in err
    assert ran == []


def test_a_port_that_is_not_a_ray_head_is_refused_not_left_to_hang(
    non_ray_port: int,
    ran: list[list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `ray start` at such a port retried for minutes, printing only Ray's own GCS timeouts.
    monkeypatch.setattr(ray_endpoint, "REACH_TIMEOUT_S", 0.5)
    code = main(["worker", "--address", f"127.0.0.1:{non_ray_port}"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: 127.0.0.1:{non_ray_port} accepts connections but is not a Ray")
    assert "within 0.5 s" in err and "\n" not in err
    assert ran == []


def test_a_failing_ray_start_is_reported(
    listening_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        worker_cmd.subprocess, "run", lambda cmd, check=False: subprocess.CompletedProcess(cmd, 1)
    )
    code = main(["worker", "--address", f"127.0.0.1:{listening_port}", "--no-block"])
    assert code == 2
    assert "`ray start` exited with code 1" in capsys.readouterr().err


def test_a_missing_ray_through_the_cli(
    listening_port: int,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["worker", "--address", f"127.0.0.1:{listening_port}"])
    assert code == 2
    assert "error: the `ray` command is missing" in capsys.readouterr().err
