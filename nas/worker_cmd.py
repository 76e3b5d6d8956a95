"""``gannas worker``: join this machine to a Ray cluster as a node that runs trials.

It runs ``ray start --address HOST:PORT --block`` with the ``ray`` executable of the Python
environment gannas is installed in, so the node's workers import the same gannas, torch and Optuna
as the controller. Registered on the CLI by importing this module (see ``nas/cli_stages.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from gannas.errors import GannasError
from nas.cli import app
from nas.ray_endpoint import check_ray_endpoint, endpoint_of

__all__ = ["WorkerError", "parse_address", "ray_executable", "worker", "worker_command"]

class WorkerError(GannasError):
    """This machine cannot join the Ray cluster as asked."""


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (the head's GCS address, as ``ray start --head`` prints it) as a pair."""
    text = address.strip()
    if text.startswith("ray://"):
        raise WorkerError(
            f"--address {address!r} is a Ray Client address; a worker node joins with the head's "
            "GCS address HOST:PORT (default port 6379), e.g. --address 10.0.0.1:6379"
        )
    endpoint = endpoint_of(text)
    if endpoint is None:
        raise WorkerError(
            f"--address must be HOST:PORT of the Ray head (e.g. 10.0.0.1:6379), got {address!r}"
        )
    return endpoint


def ray_executable() -> str:
    """The ``ray`` launcher of this Python environment (falling back to ``$PATH``)."""
    beside = Path(sys.executable).with_name("ray")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise WorkerError(
            f"the `ray` command is missing (looked beside {sys.executable} and on $PATH); "
            "install Ray into this environment: pip install 'ray[default]'"
        )
    return found


def worker_command(
    address: str,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    block: bool = True,
    ray: str | None = None,
) -> list[str]:
    """The ``ray start`` command line that joins this machine to the cluster at ``address``."""
    host, port = parse_address(address)
    for name, value in (("--num-cpus", num_cpus), ("--num-gpus", num_gpus)):
        if value is not None and value < 0:
            raise WorkerError(f"{name} must be >= 0, got {value}")
    host = f"[{host}]" if ":" in host else host
    cmd = [ray or ray_executable(), "start", "--address", f"{host}:{port}"]
    if num_cpus is not None:
        cmd += ["--num-cpus", str(num_cpus)]
    if num_gpus is not None:
        cmd += ["--num-gpus", str(num_gpus)]
    if block:
        cmd.append("--block")
    return cmd


def check_reachable(address: str) -> None:
    """Raise :class:`~nas.ray_endpoint.RayUnreachable` unless a Ray head answers at ``address``
    (a port that merely accepts connections is not enough, see :mod:`nas.ray_endpoint`)."""
    host, port = parse_address(address)
    check_ray_endpoint(
        host,
        port,
        expected=f"a head started with `ray start --head --port {port}` on {host} and this port "
        "open to this machine",
    )


@app.command()
def worker(
    address: Annotated[
        str, typer.Option(help="The Ray head's address HOST:PORT (printed by `ray start --head`).")
    ],
    num_cpus: Annotated[
        Optional[int], typer.Option(help="CPUs this node offers (default: all of them).")
    ] = None,
    num_gpus: Annotated[
        Optional[int], typer.Option(help="GPUs this node offers (default: all of them).")
    ] = None,
    block: Annotated[
        bool, typer.Option(help="Stay in the foreground until the node stops (Ctrl-C leaves).")
    ] = True,
) -> None:
    """Join this machine to a Ray cluster as a node that runs trials."""
    cmd = worker_command(address, num_cpus=num_cpus, num_gpus=num_gpus, block=block)
    check_reachable(address)
    typer.echo(f"joining the Ray cluster at {address}: {' '.join(cmd)}", err=True)
    try:
        code = subprocess.run(cmd, check=False).returncode
    except FileNotFoundError:
        raise WorkerError(
            f"cannot run {cmd[0]!r}: not found; install Ray into this environment"
        ) from None
    except KeyboardInterrupt:
        code = 0  # `ray start --block` stops the node on Ctrl-C itself
    if code != 0:
        raise WorkerError(
            f"`ray start` exited with code {code} (see its output above); expected it to join "
            f"the cluster at {address}"
        )
