"""The search controller: Optuna asks, Ray workers train and score, the study records.

The controller samples each trial's architecture (so one sampler sees every result), dispatches it
to an executor, keeps the heartbeats of trials it dispatched, and fails trials whose worker died so
their architecture is retried. Workers write each trial's results themselves (see
:mod:`nas.trial_runner`). Everything the loop decides is derived from the study at each turn, so a
killed controller is continued by running the same command again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from gannas.errors import GannasError, StorageError
from nas import attrs
from nas.executors import Executor, Finished, describe_error, is_database_error, make_executor
from nas.settings import (
    HowToSearch,
    WhatToSearch,
    WhereToRun,
    check_device,
    eval_steps,
    validate_settings,
)
from nas.study_state import (
    check_feature_network,
    count_finished,
    fail_trial,
    is_finished,
    next_retry,
    open_study,
    recover_stale_trials,
    retry_attempt,
)
from nas.trial_job import DataSpec, ScoringSpec, TrialJob

log = logging.getLogger("gannas.controller")

_DB_ATTEMPTS = 8
"""Attempts of each controller database call: with the backoff of :func:`call_with_retries`
(0.2 s doubling to 5 s) the loop rides out an outage of about 15 s before it gives up."""


def _db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` retried through a briefly unreachable database."""
    from storage import call_with_retries

    return call_with_retries(fn, *args, attempts=_DB_ATTEMPTS, **kwargs)


class SearchInterrupted(GannasError):
    """The user interrupted the search; the study was left consistent."""

    exit_code = 130


class SearchAborted(GannasError):
    """Trial after trial lost its worker; the search stopped instead of retrying forever."""

    exit_code = 1


LOST_STATE = "FAIL (lost worker)"
"""How the summary names FAIL trials that lost their worker (see :class:`SearchSummary`)."""

LOST_IN_A_ROW_MIN = 5
"""A search stops once this many trials in a row (or two per worker, if more) lost their worker
with no trial finishing in between: an error that hits every trial (a worker that cannot import
a package, a store it cannot write) would otherwise fail and retry trials forever, since a lost
trial does not count towards ``--trials``. A short outage of a few workers stays under it."""


def lost_in_a_row_limit(workers: int) -> int:
    return max(LOST_IN_A_ROW_MIN, 2 * workers)


@dataclass
class SearchProgress:
    """What the controller tells its caller while it runs (the CLI draws a progress bar)."""

    on_start: Callable[[str, int, int], None] = lambda study, target, finished: None
    on_update: Callable[[int, float | None, int], None] = lambda finished, best, running: None
    on_message: Callable[[str], None] = lambda message: None


@dataclass(frozen=True)
class SearchSummary:
    study_name: str
    storage: str
    target: int
    finished: int
    states: dict[str, int]
    """Trials by Optuna state, except that FAIL trials which lost their worker (not finished,
    retried) are counted under :data:`LOST_STATE`."""
    best_number: int | None
    best_value: float | None
    elapsed_s: float
    trials_run_now: int = 0
    notes: list[str] = field(default_factory=list)


def default_study_name(space_name: str, dataset_name: str, resolution: int) -> str:
    short = dataset_name.split(":", 1)[-1].rstrip("/").split("/")[-1] or dataset_name
    return f"{space_name}-{short}-{resolution}"


def _best(study: optuna.Study) -> tuple[int | None, float | None]:
    return _best_of(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _best_of(all_trials: list[optuna.trial.FrozenTrial]) -> tuple[int | None, float | None]:
    trials = [t for t in all_trials if t.state == TrialState.COMPLETE and t.values is not None]
    if not trials:
        return None, None
    best = min(trials, key=lambda t: t.values[0])
    return best.number, best.values[0]


def run_search(
    what: WhatToSearch,
    how: HowToSearch,
    where: WhereToRun,
    *,
    progress: SearchProgress | None = None,
    executor: Executor | None = None,
) -> SearchSummary:
    """Run (or continue) a search until the study holds ``how.trials`` finished trials."""
    from nas.scoring import load_data
    from nas.strategies import make_sampler
    from search_spaces import check_buildable, resolve_space, sample_config
    from storage import is_local_only, open_storage, redact_url, resolve_storage_url
    from storage.urls import storage_kind

    progress = progress or SearchProgress()
    validate_settings(what, how, where)
    space = resolve_space(what.space)
    url = resolve_storage_url(where.storage)
    if where.address and is_local_only(url):
        raise GannasError(
            f"storage {redact_url(url)} is an SQLite file, which workers on other nodes cannot "
            "share safely; use a PostgreSQL URL (e.g. postgresql://user@host/db) with --address"
        )

    data = load_data(DataSpec(what.dataset, what.resolution, what.channels, what.data_root))
    if len(data.images) < 2:
        raise GannasError(
            f"dataset {what.dataset!r} holds {len(data.images)} image; FID needs at least 2"
        )
    channels = what.channels or data.channels
    check_buildable(space, resolution=what.resolution, channels=channels)
    data_spec = DataSpec(what.dataset, what.resolution, channels, what.data_root)
    real_samples = min(
        len(data.images), what.scoring.real_samples or max(what.scoring.fid_samples, 1000)
    )
    score = ScoringSpec(data=data_spec, scoring=what.scoring, real_samples=real_samples)
    eval_at = eval_steps(what.budget, what.eval_points)

    search_defaults = getattr(space, "search", None)
    sampler_name = how.sampler or getattr(search_defaults, "sampler", None) or "tpe"
    pruner_name = how.pruner or getattr(search_defaults, "pruner", None) or "hyperband"
    study_name = how.study or default_study_name(space.name, data.name, what.resolution)
    objectives = tuple(how.objectives or getattr(search_defaults, "objectives", None) or ("fid",))
    if how.cost_exponent and (sampler_name != "tpe" or len(objectives) > 1):
        # Only the single-objective TPE can weigh cost; an explicit request that would be ignored
        # is refused. The space file's value is a TPE default and stays silent under other
        # samplers, so ``--sampler random`` on such a space still works.
        raise GannasError(
            f"--cost-exponent applies to the single-objective tpe sampler, but this search uses "
            f"sampler {sampler_name!r} with objectives {','.join(objectives)}; drop "
            "--cost-exponent (or use --sampler tpe with one objective)"
        )

    check_where_to_run(where, pruner=pruner_name, eval_at=eval_at)

    def connect() -> Any:
        return open_storage(
            url, heartbeat_interval=where.heartbeat_interval, grace_period=where.grace_period
        )

    # A database server is reached now, so an unreachable one is refused at once; a SQLite file
    # is opened only after the last check below, since opening creates it.
    storage = None if storage_kind(url) == "sqlite" else connect()
    grid = None
    if sampler_name == "grid":
        from nas.strategies import GRID_MAX_POINTS
        from search_spaces import space_grid_points

        # The valid points of the space: a conditional parameter counts only where it is used.
        grid = space_grid_points(space, max_points=GRID_MAX_POINTS)
        if how.trials > len(grid):
            raise GannasError(
                f"--trials {how.trials} is more than the {len(grid)} points of the grid over "
                f"space {space.name!r}; a grid search visits each once (use --trials {len(grid)})"
            )
    cost_exponent = how.cost_exponent
    if cost_exponent is None:
        cost_exponent = getattr(search_defaults, "cost_exponent", None)
    def sampler_seeded(seed: int) -> optuna.samplers.BaseSampler:
        return make_sampler(
            sampler_name,
            seed=seed,
            n_objectives=len(objectives),
            grid=grid,
            cost_exponent=cost_exponent,
        )

    sampler = sampler_seeded(what.seed)
    identity = {
        "space": space.name,
        "space_sha256": hashlib.sha256(space.to_yaml().encode()).hexdigest()[:16],
        "family": space.family,
        "dataset": data.name,
        "resolution": what.resolution,
        "channels": channels,
        "budget": what.budget,
        "eval_at": list(eval_at),
        "fid_samples": what.scoring.fid_samples,
        "real_samples": real_samples,
        "metrics": list(what.scoring.resolved_metrics()),
        # Absolute, so that `gannas retrain` finds the file from another directory; continuing
        # compares the network's content, not this path (study_state.open_study).
        "feature_extractor": (
            str(Path(what.scoring.feature_extractor).expanduser().resolve())
            if what.scoring.feature_extractor
            else "inception-v3"
        ),
        "objectives": list(objectives),
    }
    gpus = where.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if _has_gpu() else 0.0
    started = time.perf_counter()
    target = how.trials
    trials_now = 0
    # The executor and the reference statistics come before the study too: a missing feature
    # network, a failed weights download or an unreachable Ray cluster is refused with no study
    # created. The statistics are cached on disk, so continuing a study pays little for this.
    executor = executor or make_executor(
        where.executor,
        address=where.address,
        cpus_per_trial=where.cpus_per_trial,
        gpus_per_trial=gpus,
    )
    try:
        capacity = executor.capacity() if hasattr(executor, "capacity") else None
        if capacity is not None and where.workers > capacity:
            # Not refused: an autoscaling cluster grows. But the extra trials wait in Ray's
            # queue while the study already shows them RUNNING.
            progress.on_message(
                f"warning: --workers {where.workers}, but the Ray cluster runs {capacity} "
                f"trial(s) at once with --cpus-per-trial {where.cpus_per_trial:g}"
                + (f" and --gpus-per-trial {gpus:g}" if gpus else "")
                + "; the others wait in Ray's queue, shown as running"
            )
        progress.on_message("computing reference statistics of the real data (cached on disk)")
        reference = executor.compute_reference(score, where.device)
        if storage is None:
            storage = connect()
        study = open_study(
            storage,
            name=study_name,
            sampler=sampler,
            directions=["minimize"] * len(objectives),
            identity=identity,
            space_yaml=space.to_yaml(),
        )
        if where.artifacts:
            from storage.artifacts import make_artifact_store

            # Created with the study, not by the first trial that writes a file: `report` and
            # `dashboard` refuse a missing store, and a search whose trials all failed before
            # writing anything left none.
            make_artifact_store(where.artifacts)
        existing = len(study.get_trials(deepcopy=False))
        if existing and sampler_name not in ("evolution", "grid"):
            # A sampler's random draws follow one stream from its seed, so continuing with the
            # seed the study started with would replay the first trials' draws (the random
            # start-up trials, all of random search) and train those architectures again. A
            # continuation draws from a stream of its own, still determined by the seed and the
            # study. (Evolution draws per trial number and continues exactly as it is; the
            # grid's seed is its order of points, which a continuation must keep, since the
            # points visited are read from the study.)
            study.sampler = sampler_seeded(continued_seed(what.seed, existing))
        if reference.extractor_identity is not None:
            check_feature_network(study, reference.extractor_identity)
        for number in recover_stale_trials(study, storage):
            progress.on_message(f"trial {number} had lost its worker; it will be retried")
        progress.on_start(study_name, target, count_finished(study.get_trials(deepcopy=False)))
        if count_finished(study.get_trials(deepcopy=False)) >= target and not _running(study):
            return _summary(study, url, target, started, trials_now, redact_url)
        loop = _Loop(
            study=study,
            storage=storage,
            executor=executor,
            progress=progress,
            make_job=lambda trial_id, number, arch: TrialJob(
                storage_url=url,
                study_name=study_name,
                trial_id=trial_id,
                trial_number=number,
                arch=arch,
                budget=what.budget,
                eval_at=eval_at,
                score=score,
                objectives=objectives,
                pruner=pruner_name,
                seed=what.seed + number,
                device=where.device,
                artifacts=where.artifacts,
                keep_checkpoints=where.keep_checkpoints,
                heartbeat_interval=where.heartbeat_interval,
                gpu_fraction=gpus if 0 < gpus < 1 else None,
                cpu_threads=max(1, int(where.cpus_per_trial)),
                tensorboard=where.tensorboard,
            ),
            sample=lambda trial: sample_config(
                space, trial, resolution=what.resolution, channels=channels
            ),
            reference=reference.handle,
            target=target,
            workers=where.workers,
            max_retries=how.max_retries,
            lost_limit=lost_in_a_row_limit(where.workers),
            poll=min(where.heartbeat_interval, 2.0),
            beat_every=float(where.heartbeat_interval),
            prepare_ahead=(
                trials_prepared_ahead(where.workers) if getattr(executor, "concurrent", True) else 0
            ),
        )
        trials_now = loop.run()
    finally:
        executor.shutdown()
    return _summary(study, url, target, started, trials_now, redact_url)


def continued_seed(seed: int, existing_trials: int) -> int:
    """The sampler seed of a search that continues a study already holding ``existing_trials``."""
    import numpy as np

    return int(np.random.SeedSequence([seed, existing_trials]).generate_state(1)[0])


def trials_prepared_ahead(workers: int) -> int:
    """How many trials the controller keeps prepared while all ``workers`` are busy.

    A quarter of the workers (at most 8): enough that several trials ending together each get
    the next one at once (16 workers x 1 s trials end every ~60 ms, and a trial takes ~15-20 ms to
    prepare). Each is one more trial in flight for the sampler (constant liar), noise next to the
    running ones. A sequential search (one worker, or an executor that runs trials one by one)
    gets none: it would sample every trial one result late.
    """
    return 0 if workers <= 1 else min(8, max(1, workers // 4))


class _ParamBuffer:
    """Stands in for a trial's storage while its architecture is sampled.

    Optuna writes each suggested parameter in its own transaction; a space has 10-20 of them, and
    one commit each was most of the controller's time per trial. The buffer keeps them (the
    ``Trial`` caches what it suggested, so later suggestions read them back) and
    :func:`_write_dispatch` writes them with the trial's attributes in one transaction.
    """

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self.params: list[tuple[str, float, Any]] = []

    def set_trial_param(self, trial_id: int, name: str, value: float, distribution: Any) -> None:
        self.params.append((name, value, distribution))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)


def _write_dispatch(
    storage: Any,
    trial_id: int,
    params: list[tuple[str, float, Any]],
    user_attrs: dict[str, Any],
    *,
    heartbeat: bool = False,
    known_attrs: frozenset[str] | None = None,
) -> None:
    """Write a trial's sampled parameters and attributes in one transaction (all or nothing).

    ``known_attrs``: the user attributes the trial already has (``None``: unknown). An attribute not
    among them is inserted as a plain row; Optuna's upsert re-reads the trial row for each one, which
    was two thirds of this transaction's time in the 16-worker profile.

    ``heartbeat=True`` records the trial's first heartbeat in the same transaction (one commit
    fewer per trial than ``record_heartbeat``); the trial must not have one yet.

    Uses the per-row helpers of Optuna's ``RDBStorage`` inside one of its sessions; another
    storage (or an Optuna without those helpers) gets one call per value instead. Retrying after a
    commit whose reply was lost finds the rows already there, which counts as done.
    """
    from storage.rdb_rows import rdb_backend

    rdb = rdb_backend(storage)
    if rdb is None:
        for name, value, distribution in params:
            storage.set_trial_param(trial_id, name, value, distribution)
        for key, value in user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        if heartbeat:
            storage.record_heartbeat(trial_id)
        return
    import sqlalchemy.exc
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    try:
        with _create_scoped_session(rdb.scoped_session) as session:
            row = models.TrialModel.find_or_raise_by_id(trial_id, session)
            rdb.check_trial_is_updatable(trial_id, row.state)
            for name, value, distribution in params:
                # Optuna would also query the study for an earlier, incompatible distribution of
                # each name; open_study already pins the space (its sha256), so that cannot be.
                session.add(
                    models.TrialParamModel(
                        trial_id=trial_id,
                        param_name=name,
                        param_value=value,
                        distribution_json=optuna.distributions.distribution_to_json(distribution),
                    )
                )
            for key, value in user_attrs.items():
                if known_attrs is not None and key not in known_attrs:
                    session.add(
                        models.TrialUserAttributeModel(
                            trial_id=trial_id, key=key, value_json=json.dumps(value)
                        )
                    )
                else:
                    rdb._set_trial_attr_without_commit(
                        session, models.TrialUserAttributeModel, trial_id, key, value
                    )
            if heartbeat:
                session.add(models.TrialHeartbeatModel(trial_id=trial_id))
    except sqlalchemy.exc.IntegrityError:
        written = rdb.get_trial(trial_id)
        if not all(name in written.params for name, _, _ in params):
            raise


def _forget_sampler_cache(study: optuna.Study) -> None:
    # ask() drops the study's per-thread trial cache so the sampler sees the latest trials; keep
    # that (the attribute is Optuna's; without it the sampler would read a stale list).
    thread_local = getattr(study, "_thread_local", None)
    if thread_local is not None and hasattr(thread_local, "cached_all_trials"):
        thread_local.cached_all_trials = None


def _create_trial(study: optuna.Study) -> optuna.Trial:
    """What ``study.ask()`` does when no WAITING trial is queued: a new RUNNING trial."""
    _forget_sampler_cache(study)
    trial_id = study._storage.create_new_trial(study._study_id)
    return optuna.Trial(study, trial_id)


def _create_trials(study: optuna.Study, n: int) -> list[int]:
    """The ids of ``n`` new RUNNING trials, created in one transaction (in number order).

    Filling 16 free workers created 16 trials one commit at a time (~6 ms each), and the last
    worker started that much later. This uses Optuna's own row helper, under the same lock of
    the study row that ``create_new_trial`` takes, so trial numbers stay consecutive and unique.
    Another storage (or an Optuna without the helper) gets one ``create_new_trial`` per trial.
    """
    from storage.rdb_rows import rdb_backend

    _forget_sampler_cache(study)
    rdb = rdb_backend(study._storage)
    if rdb is None or not hasattr(rdb, "_get_prepared_new_trial") or n == 1:
        return [study._storage.create_new_trial(study._study_id) for _ in range(n)]
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(rdb.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study._study_id, session, for_update=True)
        rows = [rdb._get_prepared_new_trial(study._study_id, None, session) for _ in range(n)]
        ids = [row.trial_id for row in rows]
    return ids


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def check_where_to_run(where: WhereToRun, *, pruner: str, eval_at: tuple[int, ...]) -> None:
    """Refuse, before a study is created, what would fail every trial: an unknown pruner, an
    artifact store or TensorBoard directory that cannot be written, a device this machine lacks.

    So a mistyped option leaves no study behind that would then refuse the corrected command as
    a different protocol (a study's identity is recorded at creation). ``gannas retrain`` calls it
    before it creates its final stage.
    """
    from nas.strategies import make_pruner

    make_pruner(pruner, min_resource=eval_at[0], max_resource=eval_at[-1])
    check_artifact_store(where.artifacts)
    if where.tensorboard:
        check_writable_directory(where.tensorboard, flag="--tensorboard")
    check_device(where.device, local=where.address is None)


def check_artifact_store(spec: str | None) -> None:
    """Refuse an artifact store the trials could not write to, before any trial runs.

    Each trial opens the store on its worker; a store that cannot work (``s3://`` without boto3,
    a path that is a file, a directory that cannot be created or written) would otherwise fail
    every trial. Nothing is created here, so a refused search leaves no directory behind; an S3
    bucket is not written to either: its credentials are the workers'.
    """
    if not spec:
        return
    from storage.artifacts import local_artifact_dir, make_artifact_store

    if spec.strip().startswith("s3://"):
        make_artifact_store(spec)  # refuses a missing boto3 or a bad bucket name
        return
    # The store's own reading of the spec, which also refuses an unsupported scheme
    check_writable_directory(local_artifact_dir(spec), flag="--artifacts")


def check_writable_directory(directory: str | Path, *, flag: str) -> None:
    """Refuse ``directory`` unless it is, or could be created as, a directory this process can
    write to. Nothing is created: the nearest existing ancestor is checked instead."""
    path = Path(directory).expanduser().resolve()
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        why = f"{str(existing)!r} is not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        why = f"{str(existing)!r} is not writable"
    else:
        # os.access answers yes to root everywhere, also where nothing can be made (/proc, a
        # read-only mount): a directory made and removed again is the real test.
        import tempfile

        try:
            os.rmdir(tempfile.mkdtemp(prefix=".gannas-probe-", dir=existing))
            return
        except OSError as exc:
            why = f"no directory can be made in {str(existing)!r} ({exc.strerror or exc})"
    raise StorageError(f"{flag} {str(directory)!r} cannot be created or written: {why}")


def _running(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def _summary(
    study: optuna.Study,
    url: str,
    target: int,
    started: float,
    trials_now: int,
    redact: Callable[[str], str],
) -> SearchSummary:
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        # A trial that lost its worker is FAIL in Optuna but no verdict on its architecture: it
        # does not count as finished and was retried, so it is named apart ("6/6 finished (FAIL
        # 2, ...)" did not add up).
        state = t.state.name if is_finished(t) or t.state != TrialState.FAIL else LOST_STATE
        states[state] = states.get(state, 0) + 1
    best_number, best_value = _best(study)
    return SearchSummary(
        study_name=study.study_name,
        storage=redact(url),
        target=target,
        finished=count_finished(trials),
        states=states,
        best_number=best_number,
        best_value=best_value,
        elapsed_s=round(time.perf_counter() - started, 2),
        trials_run_now=trials_now,
    )


@dataclass
class _Loop:
    study: optuna.Study
    storage: Any
    executor: Executor
    progress: SearchProgress
    make_job: Callable[[int, int, dict[str, Any]], TrialJob]
    sample: Callable[[optuna.Trial], Any]
    reference: Any
    target: int
    workers: int
    max_retries: int
    poll: float
    lost_limit: int = LOST_IN_A_ROW_MIN
    """Trials in a row that may lose their worker before the search stops (:class:`SearchAborted`)."""
    beat_every: float = 5.0
    """Seconds between the controller's heartbeats of a trial, and between stale-trial scans."""
    _retried: set[int] = field(default_factory=set)
    """Trials this controller enqueued a retry of (a turn launches several from one snapshot)."""
    _beaten: dict[int, float] = field(default_factory=dict)
    """When the controller last recorded each of its running trials' heartbeat (monotonic)."""
    prepare_ahead: int = 0
    """How many trials to keep asked, sampled and written while every worker is busy (see
    :meth:`run`); 0 for a sequential search."""
    _ready: list[TrialJob] = field(default_factory=list)
    """Trials prepared ahead: RUNNING in the study, heartbeat kept, not yet submitted."""
    _lost_in_a_row: int = 0
    """Trials whose worker was lost since the last trial that finished (any state)."""
    _last_loss: str = ""
    """Why the last lost trial was lost, for the message that stops the search."""
    _preparing: int | None = None
    """The trial being prepared, from its creation until it is submitted or in :attr:`_ready`: a
    Ctrl-C in between left it RUNNING, though the message said every trial was marked."""
    _fresh: list[int] = field(default_factory=list)
    """Ids of trials created for this turn's free workers and not prepared yet. Not in
    :meth:`_ours` (nor counted against the target) until prepared: the turn's fill loop runs until
    it has prepared each of them."""

    def _ours(self) -> set[int]:
        ids = {job.trial_id for job in self.executor.running()}
        ids.update(job.trial_id for job in self._ready)
        return ids

    def run(self) -> int:
        launched = 0
        scanned = time.monotonic()  # run_search scanned just before the loop
        try:
            while True:
                # A trial turns stale only after a grace period of missed heartbeats, so scanning
                # once per heartbeat interval finds it as soon as it matters; scanning each turn
                # cost two queries per finished trial (the loop turns once per trial end).
                if time.monotonic() - scanned >= self.beat_every:
                    for number in _db(recover_stale_trials, self.study, self.storage):
                        self.progress.on_message(f"trial {number} lost its worker; retrying it")
                    scanned = time.monotonic()
                trials = _db(self.study.get_trials, deepcopy=False)
                finished = count_finished(trials)
                ours = self._ours()
                foreign = [
                    t for t in trials if t.state == TrialState.RUNNING and t._trial_id not in ours
                ]
                self.progress.on_update(finished, _best_of(trials)[1], len(ours) + len(foreign))
                if finished >= self.target and not ours and not foreign:
                    return launched
                launched += self._submit_ready()
                self._fresh = self._create_for_free_workers(
                    trials, finished + len(ours) + len(foreign)
                )
                while (
                    len(self.executor.running()) < self.workers
                    and finished + len(self._ours()) + len(foreign) < self.target
                ):
                    job = self._prepare(trials, self._fresh)
                    if job is None:  # the trial could not even be built: already told
                        finished += 1
                        continue
                    self._submit(job)
                    launched += 1
                # With every worker busy, prepare the next trials now, so that a worker that frees
                # up gets one at once instead of after a snapshot, an ask, sampling and a commit
                # (~30 ms here, 5 % of a 1-second trial; benchmarks/results/scale.md).
                done: list[Finished] = []
                while (
                    len(self._ready) < self.prepare_ahead
                    and finished + len(self._ours()) + len(foreign) < self.target
                ):
                    job = self._prepare(trials)
                    if job is None:
                        finished += 1
                        continue
                    self._keep_ready(job)
                    # A worker that freed up while this trial was prepared gets a trial now, not
                    # after the rest of the turn. Its end changes the counts, so the turn ends.
                    done = self.executor.wait(timeout=0)
                    if done:
                        break
                if not done:
                    done = self.executor.wait(timeout=self.poll)
                while True:
                    launched += self._finish(done)
                    _db(self._beat_due, list(self._ours()))
                    if not self._hand_over_without_snapshot(done, scanned):
                        break
                    done = self.executor.wait(timeout=self.poll)
        except KeyboardInterrupt:
            self._interrupt()
            raise SearchInterrupted(
                "interrupted: running trials were stopped and marked FAIL (interrupted); "
                "the study is consistent. Run the same command again to continue it"
            ) from None
        except SearchAborted:
            self._interrupt(reason="stopped with the search, which lost too many trials in a row")
            raise

    def _hand_over_without_snapshot(self, done: list[Finished], scanned: float) -> bool:
        """Whether to keep waiting for workers to free up without starting a new turn.

        A turn starts with a snapshot of the study (~18 ms with 16 workers, as long as preparing
        a trial; benchmarks/results/scale.md). Handing out prepared trials needs none: they were
        counted against the target when they were prepared. So the loop starts a turn only when
        half of the prepared trials are gone, when the wait timed out, when a worker was lost (its
        trial needs a retry) or when a stale-trial scan is due.
        """
        return (
            bool(done)
            and all(d.error is None for d in done)
            and len(self._ready) > self.prepare_ahead // 2
            and time.monotonic() - scanned < self.beat_every
        )

    def _beat_due(self, trial_ids: list[int]) -> None:
        """Beat the trials whose last beat from here is one heartbeat interval old.

        Beating every trial at every turn cost one database commit per running trial per
        finished trial (O(workers) per trial); the workers beat their own trials as well.
        """
        now = time.monotonic()
        self._beaten = {tid: self._beaten.get(tid, 0.0) for tid in trial_ids}
        for trial_id, last in self._beaten.items():
            if now - last >= self.beat_every:
                self.storage.record_heartbeat(trial_id)
                self._beaten[trial_id] = time.monotonic()

    def _create_for_free_workers(
        self, trials: list[optuna.trial.FrozenTrial], counted: int
    ) -> list[int]:
        """New trials for this turn's free workers, created at once (see :func:`_create_trials`).

        Empty when fewer than two are needed, or when a trial is queued or due for a retry: those
        go through ``study.ask()``, which pops the queue. Every trial created here is prepared in
        this turn (each free worker takes one), so none is left without an architecture.
        """
        wanted = min(self.workers - len(self.executor.running()), self.target - counted)
        if wanted < 2 or any(t.state == TrialState.WAITING for t in trials):
            return []
        if next_retry(trials, max_retries=self.max_retries, retried=self._retried) is not None:
            return []
        return _db(_create_trials, self.study, wanted)

    def _ask(self, *, waiting: bool) -> optuna.Trial:
        """A new RUNNING trial, through database outages: ``study.ask()``, or a direct create.

        ``study.ask()`` first reads every WAITING trial to pop one, a query over all unfinished
        trials that was the largest single cost per trial at 16 workers (25 of ~86 ms in the
        profile in benchmarks/results/scale.md). ``waiting=False`` means this turn's snapshot has
        no WAITING trial and none was enqueued since, so the trial is created directly, as
        ``ask`` would after finding nothing to pop. A trial enqueued by someone else after the
        snapshot is popped at the next turn's ask instead.

        A retried ask may leave an orphan: the first attempt's trial can be committed before the
        connection dropped (or before a later read inside ``ask`` failed). The orphan has no
        heartbeat and no architecture; :func:`recover_stale_trials` fails it (infra, not retried)
        once it is older than the grace period, so the loop never waits on it forever.
        """
        if not waiting:
            return _db(_create_trial, self.study)
        with warnings.catch_warnings():
            # We run the heartbeats ourselves (Optuna's own thread exists only in optimize()).
            warnings.filterwarnings("ignore", message="Heartbeat of storage", category=UserWarning)
            return _db(self.study.ask)

    def _submit(self, job: TrialJob) -> None:
        self.executor.submit(job, self.reference)
        self._prepared(job)
        log.info("trial %d dispatched", job.trial_number)

    def _keep_ready(self, job: TrialJob) -> None:
        self._ready.append(job)
        self._prepared(job)

    def _prepared(self, job: TrialJob) -> None:
        if self._preparing == job.trial_id:
            self._preparing = None

    def _submit_ready(self) -> int:
        """Hand prepared trials to workers that have become free; how many were submitted."""
        submitted = 0
        while self._ready and len(self.executor.running()) < self.workers:
            # Submitted, then removed: a Ctrl-C in between finds the trial in one list or both
            # (failing it twice is harmless), never in neither.
            self._submit(self._ready[0])
            self._ready.pop(0)
            submitted += 1
        return submitted

    def _finish(self, done: list[Finished]) -> int:
        """Record trials whose worker returned, then hand prepared trials to the freed workers."""
        for finished in done:
            self._handle(finished)
        # After the whole batch, so that every lost trial of it is marked before the search stops.
        if self._lost_in_a_row >= self.lost_limit:
            raise SearchAborted(
                f"stopped: {self._lost_in_a_row} trials in a row lost their worker and none "
                f"finished; the last: {self._last_loss}. The lost trials are marked FAIL and will "
                "be retried: fix the cause and run the same command again to continue the study"
            )
        return self._submit_ready()

    def _prepare(
        self, trials: list[optuna.trial.FrozenTrial], fresh: list[int] | None = None
    ) -> TrialJob | None:
        """Ask a trial, sample its architecture and write both (one commit): ready to submit.

        ``fresh``: ids of trials already created for this turn; the first is taken instead of
        asking. ``None`` when the sampled architecture is invalid; the trial is then already told
        FAIL.
        """
        # ``trials`` is this turn's snapshot: retries enqueued since are not in it yet.
        retry = next_retry(trials, max_retries=self.max_retries, retried=self._retried)
        waiting = retry is not None or any(t.state == TrialState.WAITING for t in trials)
        if retry is not None:
            self._retried.add(retry.number)
            attempt = retry_attempt(retry)
            # A retried enqueue can (rarely) leave two WAITING copies; the second then runs as an
            # extra attempt of the same architecture, which costs time but loses nothing.
            _db(
                self.study.enqueue_trial,
                retry.params,
                user_attrs={attrs.RETRY_OF: retry.number, attrs.ATTEMPT: attempt},
            )
            self.progress.on_message(
                f"retrying the architecture of trial {retry.number} (attempt {attempt})"
            )
        if fresh and not waiting:
            self._preparing = fresh[0]
            trial = _db(optuna.Trial, self.study, fresh[0])
            fresh.pop(0)
        else:
            trial = self._ask(waiting=waiting)
            self._preparing = trial._trial_id
        buffer = _ParamBuffer(trial.storage)
        trial.storage = buffer  # parameter writes wait for _write_dispatch (one commit, not N)
        try:
            # Retrying is safe: a parameter already suggested is read back, not sampled again.
            arch = _db(self.sample, trial)
        except StorageError:  # the database stayed unreachable: not the architecture's fault
            raise
        except GannasError as exc:
            _db(_write_dispatch, self.storage, trial._trial_id, buffer.params, {})
            _db(
                fail_trial,
                self.storage,
                trial._trial_id,
                kind=attrs.FAIL_KIND_TRIAL,
                status="invalid",
                reason=f"invalid architecture: {exc}",
            )
            self.progress.on_message(f"trial {trial.number}: invalid architecture: {exc}")
            self._preparing = None  # told FAIL already
            return None
        finally:
            trial.storage = buffer.storage
        user_attrs: dict[str, Any] = {attrs.ARCH: arch.to_json_dict()}
        if attrs.ATTEMPT not in trial.user_attrs:  # Trial caches its attributes: no query
            user_attrs[attrs.ATTEMPT] = 1
        # The first heartbeat goes with the dispatch: until its worker starts, the controller keeps
        # the trial alive.
        _db(
            _write_dispatch,
            self.storage,
            trial._trial_id,
            buffer.params,
            user_attrs,
            heartbeat=True,
            known_attrs=frozenset(trial.user_attrs),
        )
        self._beaten[trial._trial_id] = time.monotonic()
        return self.make_job(trial._trial_id, trial.number, arch.to_json_dict())

    def _handle(self, done: Finished) -> None:
        number = done.job.trial_number
        if done.error is None and done.summary is not None:
            self._lost_in_a_row = 0
            s = done.summary
            detail = f"FID {s['fid']:.3f}" if s.get("fid") is not None else s.get("reason", "")
            self.progress.on_message(
                f"trial {number} {s['state']} on {s.get('worker', '?')}: {detail}"
            )
            return
        if is_database_error(done.error):
            why = "its worker could not reach the study database"
        else:
            why = "its worker died"
        reason = f"lost: {why} ({describe_error(done.error)})"
        if _db(
            fail_trial,
            self.storage,
            done.job.trial_id,
            kind=attrs.FAIL_KIND_INFRA,
            status="lost",
            reason=reason,
        ):
            self.progress.on_message(f"trial {number} FAIL, {reason}; it will be retried")
        self._lost_in_a_row += 1
        self._last_loss = f"{why} ({describe_error(done.error)})"

    def _interrupt(self, reason: str = "interrupted by the user (Ctrl-C)") -> None:
        ready, self._ready = self._ready, []
        fresh, self._fresh = self._fresh, []
        preparing = [] if self._preparing is None else [self._preparing]
        jobs = [*self.executor.cancel_all(), *ready]
        for trial_id in dict.fromkeys([job.trial_id for job in jobs] + fresh + preparing):
            fail_trial(
                self.storage,
                trial_id,
                kind=attrs.FAIL_KIND_INFRA,
                status=attrs.STATUS_INTERRUPTED,
                reason=f"{reason}; retried when the search continues",
            )
