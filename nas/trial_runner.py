"""Runs one trial inside a worker process and records its result in the study.

The worker, not the controller, writes the trial's outcome (attributes and final state): a trial
that finished is then never lost, even if the controller is killed while the trial runs. The
controller only asks for trials and fails those whose worker died.

This module imports neither Ray nor the controller; the Ray task in :mod:`nas.executors` is a thin
wrapper around :func:`execute_trial`, and the inline executor calls it directly.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas import attrs
from nas.trial_job import TrialJob

log = logging.getLogger("gannas.worker")


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Heartbeat:
    """Records the trial's heartbeat so a restarted controller can tell a live trial from a lost one.

    The controller wrote the trial's first beat when it dispatched it, and keeps beating it while
    it waits for the worker, so this thread beats first one ``interval`` after the start.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, trial_id: int, interval: float):
        self._storage = storage
        self._trial_id = trial_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gannas-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def _beat(self) -> None:
        try:
            self._storage.record_heartbeat(self._trial_id)
        except Exception:  # a missed beat is tolerated; a long outage makes the trial stale
            log.warning("heartbeat of trial id %d failed", self._trial_id, exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()


def _objective_values(job: TrialJob, fid: float, params_g: int, generator: Any) -> list[float]:
    from nas.objectives import objective_value

    # G's parameter count is already known; only the other costs need the generator again.
    known = {"fid": fid, "params": float(params_g)}
    return [
        known[name] if name in known else objective_value(name, generator)
        for name in job.objectives
    ]


_STORAGES: dict[tuple[int, str, int], tuple[optuna.storages.RDBStorage, Any]] = {}
"""Storages opened by :func:`_worker_storage`: (process id, URL, heartbeat interval) ->
(storage, identity of its SQLite file or ``None``)."""
_STORAGES_LOCK = threading.Lock()


def _file_identity(url: str) -> tuple[int, int] | None:
    """(device, inode) of an SQLite URL's file; ``None`` for server databases or a missing file."""
    from storage.urls import sqlite_path, storage_kind

    if storage_kind(url) != "sqlite":
        return None
    path = sqlite_path(url)
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st is not None else None


def _worker_storage(url: str, heartbeat_interval: int) -> optuna.storages.RDBStorage:
    """The study storage for ``url``, opened once per process and reused by its later trials.

    Ray workers are long-lived processes and the inline executor runs trials in the controller's
    process, so every trial after the first finds its storage (engine, connection pool, schema
    checked) already open. Opening one cost ~60 ms per trial on SQLite, a tenth of the cost of a
    trial that Hyperband stops at its first evaluation in benchmarks/search_efficiency.py.

    The process id is part of the key so that a forked child never uses its parent's
    connections. An SQLite file that was deleted or replaced since (same URL, new file) is
    reopened: an open connection would go on writing to the unlinked file. After a database
    error :func:`_forget_storage` drops the entry, so the next trial reconnects from scratch.
    """
    from storage import open_storage

    key = (os.getpid(), url, heartbeat_interval)
    with _STORAGES_LOCK:
        cached = _STORAGES.get(key)
        if cached is not None:
            storage, identity = cached
            if identity is None or identity == _file_identity(url):
                return storage
            _close_quietly(storage)
        storage = open_storage(url, heartbeat_interval=heartbeat_interval)
        _STORAGES[key] = (storage, _file_identity(url))
        return storage


def _forget_storage(url: str, heartbeat_interval: int) -> None:
    with _STORAGES_LOCK:
        cached = _STORAGES.pop((os.getpid(), url, heartbeat_interval), None)
    if cached is not None:
        _close_quietly(cached[0])


def _close_quietly(storage: optuna.storages.RDBStorage) -> None:
    try:
        storage.remove_session()
        storage.engine.dispose()
    except Exception:  # already broken: dropping our reference is all that matters
        log.debug("could not close a cached storage", exc_info=True)


def execute_trial(job: TrialJob, reference: Any) -> dict[str, Any]:
    """Train, score and record one trial. Returns a short summary for the controller's progress.

    Failures of the architecture (divergence, out of memory, an exception in training) are
    recorded as FAIL with the reason and returned normally: the search goes on. Only a failure to
    reach the study database propagates, and then the controller fails the trial as lost.
    """
    from nas.executors import is_database_error

    try:
        return _execute_trial(job, reference)
    except Exception as exc:
        if is_database_error(exc):
            _forget_storage(job.storage_url, job.heartbeat_interval)
        raise


def _execute_trial(job: TrialJob, reference: Any) -> dict[str, Any]:
    from nas.scoring import pick_device
    from nas.strategies import make_pruner
    from storage import call_with_retries

    identity = worker_identity()
    storage = _worker_storage(job.storage_url, job.heartbeat_interval)
    n_objectives = len(job.objectives)
    pruner = make_pruner(
        job.pruner,
        min_resource=job.eval_at[0],
        max_resource=job.budget,
        n_objectives=n_objectives,
    )
    study = call_with_retries(
        optuna.load_study, study_name=job.study_name, storage=storage, pruner=pruner
    )
    log.info("trial %d starts on worker %s", job.trial_number, identity)

    device = pick_device(job.device)
    summary: dict[str, Any] = {"number": job.trial_number, "worker": identity}
    with _Heartbeat(storage, job.trial_id, job.heartbeat_interval):
        try:
            outcome = _train_and_score(job, reference, study, pruner, device, identity)
        except Exception as exc:  # an error in this architecture's training: FAIL, search goes on
            from nas.executors import describe_error, is_database_error

            if is_database_error(exc):
                # The database, not the architecture, failed: leave the trial RUNNING for the
                # controller to fail as lost (infra), so the architecture is retried.
                raise
            log.error("trial %d raised:\n%s", job.trial_number, traceback.format_exc())
            # One line: torch's C++ errors carry their stack (frame #0: ... libc10.so) in the
            # message, which the search's progress and `gannas trials` printed whole; the log
            # above has it all.
            outcome = {"status": "error", "reason": describe_error(exc)}
        summary.update(_record(job, study, outcome, identity))
        if job.artifacts and outcome["status"] == "completed":
            _prune_checkpoints(job, study)
    log.info(
        "trial %d on worker %s: %s %s",
        job.trial_number,
        identity,
        summary["state"],
        summary.get("fid", summary.get("reason", "")),
    )
    return summary


def _train_and_score(
    job: TrialJob,
    reference: Any,
    study: optuna.Study,
    pruner: optuna.pruners.BasePruner,
    device: str,
    identity: str,
) -> dict[str, Any]:
    import torch

    from nas.optuna_reporter import OptunaReporter
    from nas.scoring import build_evaluator, load_data, protocol_of
    from search_spaces import ArchConfig, build_discriminator, build_generator, count_parameters
    from storage.rdb_rows import set_user_attrs
    from trainers import train_gan

    torch.set_num_threads(max(1, job.cpu_threads))
    if device.startswith("cuda") and job.gpu_fraction and job.gpu_fraction < 1:
        # Memory guard for trials packed onto one GPU: an over-hungry trial hits its own
        # out-of-memory error instead of starving its neighbours.
        torch.cuda.set_per_process_memory_fraction(job.gpu_fraction)

    arch = ArchConfig.model_validate(job.arch)
    torch.manual_seed(job.seed)
    generator = build_generator(arch)
    discriminator = build_discriminator(arch)
    params_g, params_d = count_parameters(generator), count_parameters(discriminator)

    data = load_data(job.score.data)
    evaluator = build_evaluator(job.score, reference, device)
    protocol = protocol_of(evaluator)
    # The worker's first write: who runs the trial (shown in the dashboard while it runs) with
    # what it builds; one commit. A trial that fails before this gets its worker in _record.
    set_user_attrs(
        study._storage,
        job.trial_id,
        {
            attrs.WORKER: identity,
            attrs.PARAMS_G: params_g,
            attrs.PARAMS_D: params_d,
            attrs.PROTOCOL: protocol,
        },
    )

    artifacts = _ArtifactWriter(job, study) if job.artifacts else None
    reporter = OptunaReporter(
        study,
        job.trial_id,
        pruner=pruner,
        on_report=artifacts.on_report if artifacts else None,
    )
    if artifacts:
        evaluator = artifacts.wrap(evaluator)
    from nas.tensorboard import trial_scalars

    with trial_scalars(
        job.tensorboard, study_name=job.study_name, trial_number=job.trial_number
    ) as scalars:
        result = train_gan(
            generator,
            discriminator,
            data,
            config=arch.training,
            budget=job.budget,
            eval_at=job.eval_at,
            evaluator=evaluator,
            reporter=scalars.wrap(reporter) if scalars else reporter,
            seed=job.seed,
            device=device,
            on_log=scalars.on_log if scalars else None,
        )
    outcome: dict[str, Any] = {
        "status": result.status,
        "reason": result.reason,
        "metrics": dict(result.metrics),
        "history": [[step, dict(m)] for step, m in result.history],
        "wall_time_s": result.wall_time_s,
        "steps": result.steps,
        "params_g": params_g,
    }
    if result.status == "completed" and result.metrics.get("fid") is not None:
        outcome["values"] = _objective_values(
            job, float(result.metrics["fid"]), params_g, result.generator
        )
    if artifacts:
        artifacts.finish(result)
    return outcome


def _prune_checkpoints(job: TrialJob, study: optuna.Study) -> None:
    """Keep the checkpoints of the ``job.keep_checkpoints`` best trials only.

    Called once the trial is recorded: best-N pruning ranks finished trials, and a trial that
    pruned before its own state was written kept its checkpoint however it ranked (the last
    trial of a search kept one under ``--keep-checkpoints 0``). The trial is already recorded,
    so a failure here is logged, not the trial's; the next finished trial prunes again.
    """
    from storage.artifacts import make_artifact_store, prune_checkpoints

    try:
        prune_checkpoints(
            study, make_artifact_store(job.artifacts), keep_best=job.keep_checkpoints
        )
    except Exception:
        log.warning(
            "could not prune checkpoints after trial %d", job.trial_number, exc_info=True
        )


def _record(
    job: TrialJob, study: optuna.Study, outcome: Mapping[str, Any], identity: str
) -> dict[str, Any]:
    """Write the trial's attributes and its final state (retrying through database hiccups)."""
    from storage.rdb_rows import finish_trial

    tid = job.trial_id
    status = outcome["status"]

    user_attrs: dict[str, Any] = {attrs.WORKER: identity}
    for key, name in (
        (attrs.METRICS, "metrics"),
        (attrs.HISTORY, "history"),
        (attrs.WALL_TIME, "wall_time_s"),
    ):
        if outcome.get(name) is not None:
            user_attrs[key] = outcome[name]
    fid = (outcome.get("metrics") or {}).get("fid")
    if fid is not None:
        user_attrs[attrs.FID] = fid

    values: list[float] | None = [float(v) for v in outcome.get("values") or ()]
    if status == "completed" and values and any(math.isnan(v) for v in values):
        status, outcome = "error", {**outcome, "reason": f"an objective value is NaN: {values}"}
    if status == "completed" and values:
        state = TrialState.COMPLETE
    elif status == "stopped":
        state, values = TrialState.PRUNED, None
    else:
        state, values = TrialState.FAIL, None
        user_attrs[attrs.FAIL_KIND] = attrs.FAIL_KIND_TRIAL
        user_attrs[attrs.FAIL_REASON] = outcome.get("reason") or status
    user_attrs[attrs.STATUS] = status
    # Attributes and state in one transaction: a trial is never seen finished without its results.
    if not finish_trial(
        study._storage, tid, state, values, user_attrs, n_objectives=len(job.objectives)
    ):
        log.warning(
            "trial %d was already finished (by the controller, or by an earlier attempt of this "
            "write whose reply was lost); its outcome here was %s",
            job.trial_number,
            status,
        )
    summary: dict[str, Any] = {"state": state.name, "status": status}
    if fid is not None:
        summary["fid"] = fid
    if outcome.get("reason"):
        summary["reason"] = outcome["reason"]
    return summary


class _ArtifactWriter:
    """Sample grids at each evaluation, the loss curve and the generator checkpoint of a trial."""

    _GRID_SAMPLES = 64

    def __init__(self, job: TrialJob, study: optuna.Study) -> None:
        from storage.artifacts import make_artifact_store

        self._job = job
        self._study = study
        self._store = make_artifact_store(job.artifacts)
        self._pending_images: Any = None
        self._tmp = Path(tempfile.mkdtemp(prefix=f"gannas-trial{job.trial_number}-"))

    def wrap(self, evaluator: Any) -> Any:
        def evaluate(generator: Any, *, seed: int) -> Any:
            metrics = evaluator(generator, seed=seed)
            # Sampled here, not in on_report: the training loop calls the evaluator with the
            # generator in eval mode and puts it back in train mode before reporting, and a
            # forward pass in train mode would both draw from batch statistics and move the
            # batch-norm running statistics of the model being trained.
            try:
                self._pending_images = self._sample_grid(generator)
            except Exception:  # artifacts are a convenience; never fail a trial over them
                number = self._job.trial_number
                log.warning("could not sample a grid of trial %d", number, exc_info=True)
                self._pending_images = None
            return metrics

        evaluate.protocol = getattr(evaluator, "protocol", None)  # type: ignore[attr-defined]
        return evaluate

    def _sample_grid(self, generator: Any) -> Any:
        import torch

        # The same latent vectors at every evaluation, so the grids show one trial's progress.
        gen = torch.Generator().manual_seed(self._job.seed)
        z = torch.randn(self._GRID_SAMPLES, generator.latent_dim, generator=gen)
        device = next(generator.parameters()).device
        with torch.no_grad():
            return generator(z.to(device)).float().cpu()

    def _upload(self, path: Path, mimetype: str) -> str:
        from storage.artifacts import upload_trial_file

        return upload_trial_file(
            self._study, self._job.trial_id, path, self._store, mimetype=mimetype
        )

    def on_report(self, step: int, metrics: Mapping[str, float]) -> None:
        from storage.artifacts import sample_filename
        from trainers import save_image_grid

        images, self._pending_images = self._pending_images, None
        if images is None:
            return
        path = self._tmp / sample_filename(step)
        save_image_grid(images, path, nrow=8)
        self._upload(path, "image/png")

    def finish(self, result: Any) -> None:
        from storage.artifacts import loss_curve_png

        if result.losses:
            path = self._tmp / "loss_curve.png"
            loss_curve_png(list(result.losses), path)
            self._upload(path, "image/png")
        if result.status == "completed":
            from safetensors.torch import save_file

            path = self._tmp / "generator.safetensors"
            state = {k: v.detach().cpu().contiguous() for k, v in result.generator.state_dict().items()}
            save_file(state, str(path))
            artifact_id = self._upload(path, "application/octet-stream")
            self._study._storage.set_trial_user_attr(
                self._job.trial_id, attrs.CHECKPOINT, artifact_id
            )
        for p in self._tmp.iterdir():
            p.unlink()
        self._tmp.rmdir()
