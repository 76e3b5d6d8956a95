"""Where trials run: Ray workers (default), or inline in this process for debugging.

An executor knows nothing about Optuna: it runs :func:`nas.trial_runner.execute_trial` for a job
and tells the controller when a job finished or its worker died.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gannas.errors import GannasError
from nas.trial_job import ScoringSpec, TrialJob

log = logging.getLogger(__name__)


@dataclass
class Finished:
    """One job's end: its summary, or the error that says its worker died."""

    job: TrialJob
    summary: dict[str, Any] | None
    error: BaseException | None


@dataclass(frozen=True)
class Reference:
    """The real data's reference statistics as an executor hands them to its trials."""

    handle: Any
    """What :meth:`Executor.submit` passes to each trial: the statistics, or a Ray object
    reference to them."""
    extractor_identity: str | None
    """The feature network that computed them (``name:sha256=HEX``); ``None`` where unknown."""


class Executor(Protocol):
    def compute_reference(self, spec: ScoringSpec, device: str | None) -> Reference: ...
    def submit(self, job: TrialJob, reference: Any) -> None: ...
    def wait(self, timeout: float) -> list[Finished]: ...
    def running(self) -> list[TrialJob]: ...
    def cancel_all(self) -> list[TrialJob]: ...
    def shutdown(self) -> None: ...


def _configure_worker_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("gannas.worker").setLevel(logging.INFO)


def _reference_task(spec: ScoringSpec, device: str | None) -> Any:
    from nas.scoring import compute_reference, pick_device

    _configure_worker_logging()
    return compute_reference(spec, pick_device(device))


def _trial_task(job: TrialJob, reference: Any) -> dict[str, Any]:
    from nas.trial_runner import execute_trial

    _configure_worker_logging()
    return execute_trial(job, reference)


class InlineExecutor:
    """Runs each trial to its end inside :meth:`wait`, one at a time, in this process."""

    concurrent = False
    """Trials run one after another, whatever the number of workers."""

    def __init__(self) -> None:
        self._queue: list[tuple[TrialJob, Any]] = []

    def compute_reference(self, spec: ScoringSpec, device: str | None) -> Reference:
        from nas.scoring import compute_reference, pick_device

        reference = compute_reference(spec, pick_device(device))
        return Reference(reference, reference.extractor_identity)

    def submit(self, job: TrialJob, reference: Any) -> None:
        self._queue.append((job, reference))

    def wait(self, timeout: float) -> list[Finished]:
        if not self._queue:
            return []
        # The job stays queued while it runs: on Ctrl-C (KeyboardInterrupt from inside the
        # trial) :meth:`cancel_all` must still return it, so that it is marked FAIL
        # (interrupted) instead of staying RUNNING until its heartbeat runs out.
        job, reference = self._queue[0]
        from nas.trial_runner import execute_trial

        try:
            summary = execute_trial(job, reference)
        except Exception as exc:  # the database failed under the worker: the trial is lost
            self._queue.pop(0)
            return [Finished(job, None, exc)]
        self._queue.pop(0)
        return [Finished(job, summary, None)]

    def running(self) -> list[TrialJob]:
        return [job for job, _ in self._queue]

    def cancel_all(self) -> list[TrialJob]:
        jobs = self.running()
        self._queue.clear()
        return jobs

    def shutdown(self) -> None:
        self._queue.clear()


class RayExecutor:
    """Dispatches trials as Ray tasks, each with its own CPU/GPU request.

    ``address=None`` starts a local Ray instance sized to this machine; ``auto`` or
    ``ray://host:port`` joins an existing cluster (whose nodes must have gannas installed).
    """

    def __init__(
        self,
        *,
        address: str | None,
        cpus_per_trial: float,
        gpus_per_trial: float,
    ) -> None:
        import ray

        from nas.ray_endpoint import check_ray_endpoint, endpoint_of

        self._ray = ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "logging_level": logging.WARNING,
                "log_to_driver": True,
            }
            if address:
                endpoint = endpoint_of(address)
                if endpoint is not None:
                    # Ray's client retries for minutes at a port where no head answers.
                    check_ray_endpoint(
                        *endpoint,
                        expected="the address of a running Ray head: HOST:PORT as `ray start "
                        "--head` prints it, or ray://HOST:10001 for its Ray Client server",
                    )
                kwargs["address"] = address
            else:
                # "local", not None: with None Ray joins a cluster a `ray start` left running on
                # this machine (/tmp/ray/ray_current_cluster) instead of starting its own.
                kwargs["address"] = "local"
                kwargs["num_cpus"] = max(os.cpu_count() or 1, math.ceil(cpus_per_trial))
            try:
                ray.init(**kwargs)
            except ConnectionError as exc:
                raise GannasError(
                    f"cannot connect to the Ray cluster at {address!r}: {exc}. Start it with "
                    "`ray start --head` (or check --address)"
                ) from None
            self._owns_ray = True
        else:
            self._owns_ray = False
        options = {"num_cpus": cpus_per_trial, "num_gpus": gpus_per_trial, "max_retries": 0}
        self._trial = ray.remote(_trial_task).options(**options)
        self._reference = ray.remote(_reference_task).options(**options)
        self._pending: dict[Any, TrialJob] = {}
        self._per_trial = (cpus_per_trial, gpus_per_trial)
        self._check_capacity(cpus_per_trial, gpus_per_trial)

    def capacity(self) -> int:
        """How many trials the cluster's resources run at once now (more wait in Ray's queue)."""
        cpus, gpus = self._per_trial
        total = self._ray.cluster_resources()
        fits = [math.floor(total.get("CPU", 0) / cpus + 1e-9)] if cpus > 0 else []
        if gpus > 0:
            fits.append(math.floor(total.get("GPU", 0) / gpus + 1e-9))
        return min(fits) if fits else 0

    def _check_capacity(self, cpus: float, gpus: float) -> None:
        total = self._ray.cluster_resources()
        if gpus > 0 and total.get("GPU", 0) < gpus:
            raise GannasError(
                f"each trial asks for {gpus} GPU(s) but the Ray cluster has "
                f"{total.get('GPU', 0):g}; use --gpus-per-trial 0 or add GPU nodes"
            )
        if total.get("CPU", 0) < cpus:
            raise GannasError(
                f"each trial asks for {cpus} CPU(s) but the Ray cluster has "
                f"{total.get('CPU', 0):g}; lower --cpus-per-trial"
            )

    def compute_reference(self, spec: ScoringSpec, device: str | None) -> Reference:
        reference = self._ray.get(self._reference.remote(spec, device))
        # Put once: every trial task then reads the same object instead of a copy per task.
        return Reference(self._ray.put(reference), reference.extractor_identity)

    def submit(self, job: TrialJob, reference: Any) -> None:
        self._pending[self._trial.remote(job, reference)] = job

    def wait(self, timeout: float) -> list[Finished]:
        if not self._pending:
            return []
        done, rest = self._ray.wait(list(self._pending), num_returns=1, timeout=timeout)
        if done and rest:
            # Trials that ended together are all handed back in one turn of the controller.
            more, _ = self._ray.wait(rest, num_returns=len(rest), timeout=0)
            done += more
        finished = []
        for ref in done:
            job = self._pending.pop(ref)
            try:
                finished.append(Finished(job, self._ray.get(ref), None))
            except Exception as exc:  # worker crashed, node lost, OOM-killed, cancelled
                finished.append(Finished(job, None, exc))
        return finished

    def running(self) -> list[TrialJob]:
        return list(self._pending.values())

    def cancel_all(self) -> list[TrialJob]:
        jobs = list(self._pending.values())
        for ref in list(self._pending):
            self._ray.cancel(ref, force=True)
        self._pending.clear()
        return jobs

    def shutdown(self) -> None:
        if self._owns_ray:
            self._ray.shutdown()


def make_executor(
    name: str, *, address: str | None, cpus_per_trial: float, gpus_per_trial: float
) -> Executor:
    if name == "inline":
        return InlineExecutor()
    return RayExecutor(
        address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial
    )


def is_database_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what it was raised from) is a failure to use the study database.

    Such a failure says nothing about the architecture: the trial is lost (infra) and retried.
    Ray re-raises a task's exception as a subclass of both ``RayTaskError`` and the original
    type, so the ``isinstance`` checks hold for errors raised inside Ray workers too.
    """
    import sqlalchemy.exc

    from gannas.errors import StorageError
    from storage.retry import caused_by

    return caused_by(exc, (StorageError, sqlalchemy.exc.SQLAlchemyError))


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = next((line for line in text if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:500]


__all__: Sequence[str] = [
    "Executor",
    "Finished",
    "InlineExecutor",
    "RayExecutor",
    "describe_error",
    "is_database_error",
    "make_executor",
]
