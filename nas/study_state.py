"""Reading and repairing the state of a study: what counts as finished, stale trials, retries.

Everything here derives from the trials stored in the study; nothing is cached between calls,
so several controllers (or a restarted one) agree on what is left to do.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gannas.errors import GannasError
from nas import attrs

log = logging.getLogger(__name__)


def is_finished(trial: FrozenTrial) -> bool:
    """A trial that reached a verdict about its architecture.

    COMPLETE and PRUNED always count; FAIL counts when the architecture itself failed (diverged,
    out of memory, an error in training). A FAIL because a worker or the controller died says
    nothing about the architecture, so it does not count and the architecture is retried.
    """
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get(attrs.FAIL_KIND) != attrs.FAIL_KIND_INFRA
    return False


def count_finished(trials: Sequence[FrozenTrial]) -> int:
    return sum(1 for t in trials if is_finished(t))


def open_study(
    storage: optuna.storages.BaseStorage,
    *,
    name: str,
    sampler: optuna.samplers.BaseSampler,
    directions: Sequence[str],
    identity: Mapping[str, Any],
    space_yaml: str,
) -> optuna.Study:
    """Create the study, or load it and check that it is being continued with the same settings.

    A study never mixes protocols: continuing it with another space, dataset, budget or scoring
    would make its FIDs incomparable, so that is refused with the differing setting named.
    """
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        sampler=sampler,
        directions=list(directions),
        load_if_exists=True,
    )
    stored_dirs = [d.name.lower() for d in study.directions]
    if stored_dirs != [d.lower() for d in directions]:
        raise GannasError(
            f"study {name!r} optimizes {len(stored_dirs)} objective(s) {stored_dirs}, but this "
            f"search asks for {len(directions)}; use another --study name"
        )
    stored = study.user_attrs.get(attrs.STUDY_IDENTITY)
    wanted = json.loads(json.dumps(dict(identity)))  # normalise tuples etc. to JSON values
    if stored is None:
        study.set_user_attr(attrs.STUDY_IDENTITY, wanted)
        study.set_user_attr(attrs.STUDY_SPACE_YAML, space_yaml)
        objectives = list(wanted.get("objectives") or [])
        if len(objectives) == len(directions):
            # optuna-dashboard and the report name the objectives ("fid", "params") instead of
            # "Objective 0". Experimental in Optuna since 3.2; its warning would follow every new
            # search, so it is silenced here alone.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names(objectives)
    else:
        from nas.retrain import FINAL_STAGE, STAGE

        if study.user_attrs.get(STAGE) == FINAL_STAGE:
            this = "this retrain"
            remedy = "A final stage has one protocol: retrain with the options it was started with"
        else:
            this = "this search"
            remedy = "Use the original settings, or another --study name"
        for key in sorted(set(stored) | set(wanted)):
            if key == EXTRACTOR_KEY:
                # The path is where the file was, not what it is: the same network under another
                # path (absolute, moved, copied) is the same protocol. Its content is compared by
                # check_feature_network, against the sha256 each scored trial recorded.
                same = extractor_kind(stored.get(key)) == extractor_kind(wanted.get(key))
            elif key == "metrics":
                # Studies made before the metrics were put in one order stored them as typed.
                same = set(stored.get(key) or ()) == set(wanted.get(key) or ())
            else:
                same = stored.get(key) == wanted.get(key)
            if not same:
                raise GannasError(
                    f"study {name!r} was created with {key}={stored.get(key)!r}, but {this} "
                    f"has {key}={wanted.get(key)!r}; continuing it would mix incomparable trials. "
                    f"{remedy}"
                )
    return study


EXTRACTOR_KEY = "feature_extractor"
"""The identity's feature network: ``inception-v3``, or the path of a TorchScript file."""


def extractor_kind(recorded: object) -> str:
    """``inception-v3`` or ``torchscript``: what the identity's extractor entry compares by."""
    return "inception-v3" if recorded in (None, "inception-v3") else "torchscript"


def check_feature_network(
    study: optuna.Study, extractor_identity: str, *, remedy: str | None = None
) -> None:
    """Refuse to score more trials of ``study`` with another feature network than its trials had.

    The study's identity names the extractor as it was given (a path, or ``inception-v3``), which
    cannot tell a file that changed at the same path, or unverified Inception weights swapped for
    others, and is not compared by path (see :func:`open_study`). Each scored trial records the
    sha256 of the network in its FID protocol, so the network of the reference statistics
    (``name:sha256=HEX``) is checked against those records: the study's own, and for a final stage
    those of its source search too. ``remedy`` ends the refusal (default: what a search can do).
    """
    from nas.retrain import SOURCE_STUDY

    sha256 = extractor_identity.rpartition("sha256=")[2]
    studies = [study]
    source_name = study.user_attrs.get(SOURCE_STUDY)
    if source_name:
        # A final stage's FIDs are set beside its source search's FIDs (report, export), so
        # they must come from the same network as the search's.
        try:
            studies.append(optuna.load_study(study_name=source_name, storage=study._storage))
        except KeyError:
            pass
    if remedy is None:
        remedy = (
            "Pass the file the search was scored with"
            if source_name
            else "Use the original network file, or another --study name"
        )
    for checked in studies:
        for trial in checked.get_trials(deepcopy=False):
            protocol = trial.user_attrs.get(attrs.PROTOCOL) or {}
            recorded = protocol.get("weights_sha256")
            if recorded and recorded != sha256:
                raise GannasError(
                    f"study {checked.study_name!r} scored trial {trial.number} with the feature "
                    f"network {protocol.get('feature_extractor')!r} of sha256 {recorded}, but this "
                    f"search's feature network has sha256 {sha256}; continuing would mix "
                    f"incomparable FIDs. {remedy}"
                )


def fail_trial(
    storage: optuna.storages.BaseStorage,
    trial_id: int,
    *,
    kind: str,
    status: str,
    reason: str,
) -> bool:
    """Mark a running trial FAIL with its reason; False if it had already finished meanwhile."""
    try:
        storage.set_trial_user_attr(trial_id, attrs.FAIL_KIND, kind)
        storage.set_trial_user_attr(trial_id, attrs.STATUS, status)
        storage.set_trial_user_attr(trial_id, attrs.FAIL_REASON, reason)
        return bool(storage.set_trial_state_values(trial_id, state=TrialState.FAIL))
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def recover_stale_trials(study: optuna.Study, storage: optuna.storages.RDBStorage) -> list[int]:
    """FAIL the RUNNING trials whose heartbeat stopped (their worker or controller died).

    Returns the numbers of the trials it failed. They are retried by :func:`next_retry`.
    Orphans (see :func:`_recover_orphans`) are failed too, but not retried.
    """
    failed: list[int] = []
    interval = storage.get_heartbeat_interval()
    if interval is None:
        return failed
    grace = storage.grace_period if storage.grace_period is not None else 2 * interval
    failed += _recover_orphans(study, storage, grace_s=grace)
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        number = storage.get_trial_number_from_id(trial_id)
        if fail_trial(
            storage,
            trial_id,
            kind=attrs.FAIL_KIND_INFRA,
            status="lost",
            reason=(
                "lost: no heartbeat from its worker within the grace period "
                "(the worker or the controller died)"
            ),
        ):
            log.warning("trial %d was lost (no heartbeat); it will be retried", number)
            failed.append(number)
    return failed


_ORPHANED = "orphaned"


def _recover_orphans(
    study: optuna.Study, storage: optuna.storages.BaseStorage, *, grace_s: float
) -> list[int]:
    """FAIL the RUNNING trials asked for but never dispatched, once older than ``grace_s``.

    A controller records a trial's first heartbeat and its architecture right after ``ask``. A
    trial without an architecture after the grace period was orphaned: its controller died in
    between, or an ``ask`` whose connection dropped after the commit was retried. Optuna never
    calls a trial without a heartbeat stale, so without this it would stay RUNNING for ever and
    the loop, which waits for RUNNING trials, would never end. ``datetime_start`` is set by the
    asking client's clock, so the grace period must exceed the clock skew between controllers.
    """
    import datetime

    failed: list[int] = []
    now = datetime.datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if attrs.ARCH in trial.user_attrs or trial.datetime_start is None:
            continue
        if (now - trial.datetime_start).total_seconds() <= grace_s:
            continue
        if fail_trial(
            storage,
            trial._trial_id,
            kind=attrs.FAIL_KIND_INFRA,
            status=_ORPHANED,
            reason=(
                "orphaned: asked for but never dispatched (its controller died or lost the "
                "database while asking); nothing to retry"
            ),
        ):
            log.warning("trial %d was orphaned before dispatch; failed", trial.number)
            failed.append(trial.number)
    return failed


def _is_orphan(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(attrs.STATUS) == _ORPHANED


def next_retry(
    trials: Sequence[FrozenTrial], *, max_retries: int, retried: Collection[int] = ()
) -> FrozenTrial | None:
    """The oldest infra-failed trial whose architecture has not been retried yet, if any.

    ``retried``: numbers of trials already retried that ``trials`` (a snapshot) may not show yet.

    Trials without an architecture (orphans, never dispatched) have nothing to retry; if an
    orphan had picked up an enqueued retry, that retry does not count, so it is enqueued again.
    """
    done = {t.user_attrs.get(attrs.RETRY_OF) for t in trials if not _is_orphan(t)} | set(retried)
    for trial in trials:
        if (
            not _is_orphan(trial)
            and trial.state == TrialState.FAIL
            and trial.user_attrs.get(attrs.FAIL_KIND) == attrs.FAIL_KIND_INFRA
            and trial.number not in done
            and (_interrupted(trial) or int(trial.user_attrs.get(attrs.ATTEMPT, 1)) <= max_retries)
        ):
            return trial
    return None


def retry_attempt(trial: FrozenTrial) -> int:
    """The attempt number of a retry of ``trial``: one more after a lost worker; the same after
    the user's Ctrl-C, which says nothing about the architecture or the workers, so that
    interrupting and continuing a search never uses up ``max_retries``."""
    attempt = int(trial.user_attrs.get(attrs.ATTEMPT, 1))
    return attempt if _interrupted(trial) else attempt + 1


def _interrupted(trial: FrozenTrial) -> bool:
    return trial.user_attrs.get(attrs.STATUS) == attrs.STATUS_INTERRUPTED


def trial_summary(trial: FrozenTrial) -> dict[str, Any]:
    """The JSON view of one trial used by ``gannas trials --json``."""
    values = trial.values
    return {
        "number": trial.number,
        "state": trial.state.name,
        "value": trial.user_attrs.get(attrs.FID, values[0] if values else None),
        "values": values,
        "params": trial.params,
        "datetime_start": trial.datetime_start.isoformat() if trial.datetime_start else None,
        "datetime_complete": (
            trial.datetime_complete.isoformat() if trial.datetime_complete else None
        ),
        "intermediate_values": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "user_attrs": trial.user_attrs,
        "arch": trial.user_attrs.get(attrs.ARCH),
        "protocol": trial.user_attrs.get(attrs.PROTOCOL),
        "params_g": trial.user_attrs.get(attrs.PARAMS_G),
        "params_d": trial.user_attrs.get(attrs.PARAMS_D),
        "wall_time_s": trial.user_attrs.get(attrs.WALL_TIME),
        "fid": trial.user_attrs.get(attrs.FID),
        "fail_reason": trial.user_attrs.get(attrs.FAIL_REASON),
    }
