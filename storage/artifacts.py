"""Per-trial files (sample grids, loss curves, generator checkpoints) in Optuna's artifact store.

Optuna keeps the *bytes* of an artifact in an artifact store (a directory or an S3 bucket) and its
*metadata* (id, filename, MIME type) as a trial system attribute ``artifacts:<id>``, written by
:func:`optuna.artifacts.upload_artifact`. optuna-dashboard lists a trial's artifacts from those
attributes, so everything uploaded here shows up in ``optuna-dashboard <db> --artifact-dir <dir>``
(or ``optuna_dashboard.run_server(storage, artifact_store=make_artifact_store(...))``).

Two Optuna rules shape this module:

* A finished trial's attributes cannot be changed (``UpdateFinishedTrialError``). Uploads therefore
  happen while the trial is RUNNING (from the Ray worker, before the controller tells the result),
  and :func:`prune_checkpoints` records deletions in **study** user attributes
  (``gannas.checkpoint_pruned.<trial number>``), the only place still writable for a finished trial.
* Artifact metadata carries no timestamp, so "the most recent" artifact of a kind is the one with
  the highest step number in its filename (see :func:`sample_filename`), ties broken by upload
  order.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gannas.errors import StorageError

if TYPE_CHECKING:  # pragma: no cover
    import optuna
    from optuna.artifacts import ArtifactMeta
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "DEFAULT_ARTIFACT_DIR_NAME",
    "ENV_VAR",
    "PRUNED_ATTR_PREFIX",
    "PrefixedArtifactStore",
    "default_artifact_dir",
    "is_checkpoint_artifact",
    "is_checkpoint_pruned",
    "latest_artifact",
    "local_artifact_dir",
    "loss_curve_png",
    "make_artifact_store",
    "parse_s3_spec",
    "prune_checkpoints",
    "rank_completed_trials",
    "read_artifact_bytes",
    "sample_filename",
    "trial_artifacts",
    "upload_trial_dir",
    "upload_trial_file",
]

ENV_VAR = "GANNAS_ARTIFACTS"
DEFAULT_ARTIFACT_DIR_NAME = "gannas_artifacts"

CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".onnx")
"""Filenames ending like this hold generator weights and are what :func:`prune_checkpoints` deletes.

The ``arch.json`` / ``metadata.json`` written next to ``generator.safetensors`` are a few KB and
stay: they are the record of what was trained.
"""

PRUNED_ATTR_PREFIX = "gannas.checkpoint_pruned."
"""Study user-attribute key prefix; the full key ends with the trial number."""

_S3_SCHEME = "s3://"
_STEP_RE = re.compile(r"(\d+)")


# --------------------------------------------------------------------------------------------
# Making a store
# --------------------------------------------------------------------------------------------


class PrefixedArtifactStore:
    """An artifact store that keeps every artifact under ``prefix/`` of another store.

    Optuna's :class:`~optuna.artifacts.Boto3ArtifactStore` writes artifact ids at the bucket root;
    this wrapper gives ``s3://bucket/some/prefix`` its meaning. It implements Optuna's
    ``ArtifactStore`` protocol, so optuna-dashboard can serve from it.
    """

    def __init__(self, inner: ArtifactStore, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix.strip("/")

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def open_reader(self, artifact_id: str) -> Any:
        return self.inner.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: Any) -> None:
        self.inner.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        self.inner.remove(self._key(artifact_id))


def parse_s3_spec(spec: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (prefix may be ``""``)."""
    if not spec.startswith(_S3_SCHEME):
        raise StorageError(
            f"artifact store {spec!r} is not an S3 URL; expected s3://bucket[/prefix]"
        )
    bucket, _, prefix = spec[len(_S3_SCHEME) :].partition("/")
    # S3 bucket names: 3-63 chars of lowercase letters, digits, dots and hyphens.
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
        raise StorageError(
            f"artifact store {spec!r} has no valid bucket name: expected s3://bucket[/prefix] with "
            f"a bucket of 3-63 lowercase letters, digits, '.' or '-', found {bucket!r}"
        )
    return bucket, prefix.strip("/")


def default_artifact_dir(storage_url: str | None = None) -> Path:
    """``$GANNAS_ARTIFACTS``, else ``gannas_artifacts/`` beside a SQLite study database, else in the
    working directory (PostgreSQL, or no URL given)."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    if storage_url:
        from storage.urls import sqlite_path, storage_kind

        if storage_kind(storage_url) == "sqlite":
            db = sqlite_path(storage_url)
            if db is not None:
                return (db.expanduser().resolve().parent / DEFAULT_ARTIFACT_DIR_NAME).resolve()
    return (Path.cwd() / DEFAULT_ARTIFACT_DIR_NAME).resolve()


def local_artifact_dir(spec: str | None, *, storage_url: str | None = None) -> Path:
    """The directory of a local artifact store ``spec`` (see :func:`make_artifact_store`; not for
    ``s3://``), without creating it. An unsupported scheme is a :class:`StorageError`."""
    spec = (spec or "").strip() or None
    if spec is not None and "://" in spec and not spec.startswith("file://"):
        scheme = spec.split("://", 1)[0]
        raise StorageError(
            f"unsupported artifact store {spec!r}: scheme {scheme!r} is not supported; expected a "
            "directory path, file:///dir or s3://bucket[/prefix]"
        )
    if spec is None:
        return default_artifact_dir(storage_url)
    return Path(spec.removeprefix("file://")).expanduser().resolve()


def make_artifact_store(
    spec: str | None = None, *, storage_url: str | None = None, create: bool = True
) -> ArtifactStore:
    """The artifact store named by ``spec``.

    * ``None`` or ``""``: a directory, see :func:`default_artifact_dir` (``storage_url`` places it
      next to a SQLite database);
    * ``s3://bucket[/prefix]``: :class:`~optuna.artifacts.Boto3ArtifactStore` with a default boto3
      client (credentials from the usual AWS environment), wrapped in
      :class:`PrefixedArtifactStore` when a prefix is given;
    * ``file:///abs/dir`` or any other text: a local directory, created if missing; with
      ``create=False`` (commands that only read) a missing directory is a :class:`StorageError`
      instead, so a mistyped ``--artifacts`` neither leaves an empty directory behind nor passes
      for a store whose files are all gone.

    Every worker must be given the same ``spec`` (a shared directory or bucket), since it uploads
    directly.
    """
    from optuna.artifacts import FileSystemArtifactStore

    spec = (spec or "").strip() or None
    if spec is not None and spec.startswith(_S3_SCHEME):
        bucket, prefix = parse_s3_spec(spec)
        try:
            import boto3
        except ImportError as exc:
            raise StorageError(
                f"artifact store {spec!r} needs the boto3 package, which is not installed; "
                "run `pip install boto3` or use a local directory"
            ) from exc
        from optuna.artifacts import Boto3ArtifactStore

        store: ArtifactStore = Boto3ArtifactStore(bucket, client=boto3.client("s3"))
        return PrefixedArtifactStore(store, prefix) if prefix else store
    directory = local_artifact_dir(spec, storage_url=storage_url)
    if directory.exists() and not directory.is_dir():
        raise StorageError(
            f"artifact directory {str(directory)!r} is a file; expected a directory"
            + (" (or a path that does not exist yet)" if create else "")
        )
    if not create and not directory.is_dir():
        raise StorageError(
            f"no artifact store at {str(directory)!r} (no such directory); pass the store the "
            f"search wrote with --artifacts (or set ${ENV_VAR})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(directory)


# --------------------------------------------------------------------------------------------
# Uploading
# --------------------------------------------------------------------------------------------


def _resolve_storage(storage_url_or_study: str | optuna.Study | BaseStorage) -> BaseStorage:
    import optuna

    if isinstance(storage_url_or_study, optuna.Study):
        return storage_url_or_study._storage  # optuna's own upload_artifact reads it the same way
    if isinstance(storage_url_or_study, optuna.storages.BaseStorage):
        return storage_url_or_study
    if isinstance(storage_url_or_study, str):
        from storage import open_storage

        return open_storage(storage_url_or_study)
    raise TypeError(
        "storage_url_or_study must be a storage URL, an optuna.Study or an optuna storage, got "
        f"{type(storage_url_or_study).__name__}"
    )


def upload_trial_file(
    storage_url_or_study: str | optuna.Study | BaseStorage,
    trial_id: int,
    path: str | os.PathLike[str],
    artifact_store: ArtifactStore,
    *,
    mimetype: str | None = None,
) -> str:
    """Upload ``path`` as an artifact of trial ``trial_id`` (Optuna's trial *id*, not its number);
    returns the artifact id.

    Needs only the storage URL and the trial id, so a Ray worker can call it without the
    controller's objects. The trial must still be RUNNING: Optuna refuses to change a finished
    trial, so upload before the controller tells the result.
    """
    from optuna.artifacts import upload_artifact
    from optuna.exceptions import UpdateFinishedTrialError

    file_path = Path(path)
    if not file_path.is_file():
        raise StorageError(
            f"cannot upload artifact {str(file_path)!r}: expected a file, found none"
        )
    storage = _resolve_storage(storage_url_or_study)
    try:
        trial = storage.get_trial(trial_id)
    except KeyError as exc:
        raise StorageError(
            f"cannot upload artifact {file_path.name!r}: no trial with id {trial_id} in the study "
            "database"
        ) from exc
    try:
        return upload_artifact(
            artifact_store=artifact_store,
            file_path=str(file_path),
            study_or_trial=trial,
            storage=storage,
            mimetype=mimetype,
        )
    except UpdateFinishedTrialError as exc:
        raise StorageError(
            f"cannot upload artifact {file_path.name!r} to trial {trial.number}: the trial is "
            f"already {trial.state.name}; upload while it is RUNNING (before telling its result)"
        ) from exc


def upload_trial_dir(
    storage_url_or_study: str | optuna.Study | BaseStorage,
    trial_id: int,
    directory: str | os.PathLike[str],
    artifact_store: ArtifactStore,
) -> dict[str, str]:
    """Upload every regular file directly in ``directory`` (e.g. a ``save_generator`` checkpoint:
    ``generator.safetensors``, ``arch.json``, ``metadata.json``); returns
    ``{filename: artifact id}``.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise StorageError(f"cannot upload {str(folder)!r}: expected a directory, found none")
    storage = _resolve_storage(storage_url_or_study)  # open once for all files
    return {
        item.name: upload_trial_file(storage, trial_id, item, artifact_store)
        for item in sorted(folder.iterdir())
        if item.is_file()
    }


# --------------------------------------------------------------------------------------------
# Listing and reading
# --------------------------------------------------------------------------------------------


def sample_filename(step: int, *, prefix: str = "samples") -> str:
    """``samples_step00000500.png``: the name to upload a sample grid under, so the most recent one
    can be found (artifact metadata has no timestamp; the zero-padded step orders them)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return f"{prefix}_step{step:08d}.png"


def _pruned_ids(study: optuna.Study, trial_number: int) -> set[str]:
    record = study.user_attrs.get(f"{PRUNED_ATTR_PREFIX}{trial_number}")
    if isinstance(record, dict):
        return set(record.get("artifact_ids", []))
    return set()


def trial_artifacts(study: optuna.Study, trial: FrozenTrial) -> list[ArtifactMeta]:
    """The artifacts of ``trial`` in upload order, without those removed by
    :func:`prune_checkpoints`."""
    from optuna.artifacts import get_all_artifact_meta

    gone = _pruned_ids(study, trial.number)
    metas = get_all_artifact_meta(trial, storage=study._storage)
    return [meta for meta in metas if meta.artifact_id not in gone]


def latest_artifact(study: optuna.Study, trial: FrozenTrial, *, prefix: str) -> ArtifactMeta | None:
    """The artifact of ``trial`` whose filename starts with ``prefix`` and has the highest step
    number in its name (the last number in the filename; none counts as -1), ties broken by upload
    order; ``None`` if there is none."""
    best: tuple[int, int] | None = None
    found: ArtifactMeta | None = None
    for order, meta in enumerate(trial_artifacts(study, trial)):
        if not meta.filename.startswith(prefix):
            continue
        numbers = _STEP_RE.findall(meta.filename[len(prefix) :])
        key = (int(numbers[-1]) if numbers else -1, order)
        if best is None or key > best:
            best, found = key, meta
    return found


def read_artifact_bytes(artifact_store: ArtifactStore, artifact_id: str) -> bytes:
    """The content of an artifact; raises ``optuna.artifacts.exceptions.ArtifactNotFound``."""
    reader = artifact_store.open_reader(artifact_id)
    try:
        return reader.read()
    finally:
        reader.close()


def is_checkpoint_artifact(meta: ArtifactMeta) -> bool:
    """Whether ``meta`` names generator weights (see :data:`CHECKPOINT_SUFFIXES`)."""
    return meta.filename.endswith(CHECKPOINT_SUFFIXES)


def is_checkpoint_pruned(study: optuna.Study, trial_number: int) -> bool:
    """Whether :func:`prune_checkpoints` has deleted the checkpoint of trial ``trial_number``."""
    return f"{PRUNED_ATTR_PREFIX}{trial_number}" in study.user_attrs


# --------------------------------------------------------------------------------------------
# Ranking and pruning
# --------------------------------------------------------------------------------------------


def _oriented(trial: FrozenTrial, signs: Sequence[float]) -> tuple[float, ...]:
    # Every objective turned into "lower is better"; NaN (should not happen for COMPLETE) last.
    assert trial.values is not None  # only called on COMPLETE trials
    return tuple(
        math.inf if math.isnan(v) else s * v for s, v in zip(signs, trial.values, strict=True)
    )


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def rank_completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials, best first.

    Single objective: by value in the study's direction (lowest first for ``minimize``), then trial
    number. Multi-objective: by non-domination rank (the Pareto front, ``study.best_trials``, first;
    then the front of what remains, and so on), within a rank by the first objective, then number.
    """
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    signs = [1.0 if d == StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    keyed = [(_oriented(t, signs), t) for t in trials if t.values is not None]
    if len(signs) == 1:
        keyed.sort(key=lambda kt: (kt[0][0], kt[1].number))
        return [t for _, t in keyed]
    ranked: list[FrozenTrial] = []
    remaining = keyed
    while remaining:  # O(n^2) per front; studies have hundreds of trials, not millions
        front = [(k, t) for k, t in remaining if not any(_dominates(k2, k) for k2, _ in remaining)]
        front.sort(key=lambda kt: (kt[0][0], kt[1].number))
        ranked.extend(t for _, t in front)
        front_ids = {t._trial_id for _, t in front}
        remaining = [(k, t) for k, t in remaining if t._trial_id not in front_ids]
    return ranked


def prune_checkpoints(
    study: optuna.Study, artifact_store: ArtifactStore, *, keep_best: int
) -> list[int]:
    """Delete generator checkpoints (see :data:`CHECKPOINT_SUFFIXES`) of every finished trial
    except the ``keep_best`` best COMPLETE ones (order of :func:`rank_completed_trials`: for
    multi-objective studies Pareto-front trials are kept first). Returns the numbers of the trials
    pruned now.

    PRUNED and FAIL trials count as not among the best; RUNNING and WAITING trials are never touched
    (their worker may still be writing). Each deletion is recorded in the study user attribute
    ``gannas.checkpoint_pruned.<number>`` = ``{"trial_id", "artifact_ids", "filenames"}`` — the
    trial's own attributes are read-only once it has finished — so the study database stays the
    source of truth and :func:`trial_artifacts` hides the deleted files. Safe to call after every
    finished trial; already-deleted files are skipped.
    """
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX
    from optuna.artifacts.exceptions import ArtifactNotFound

    from storage.rdb_rows import delete_trial_system_attrs

    if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 0:
        raise StorageError(f"keep_best must be an integer >= 0, got {keep_best!r}")
    keep = {t.number for t in rank_completed_trials(study)[:keep_best]}
    done = {key for key in study.user_attrs if key.startswith(PRUNED_ATTR_PREFIX)}
    pruned: list[int] = []
    for trial in study.get_trials(deepcopy=False):
        if not trial.state.is_finished() or trial.number in keep:
            continue
        if f"{PRUNED_ATTR_PREFIX}{trial.number}" in done:
            continue
        checkpoints = [m for m in trial_artifacts(study, trial) if is_checkpoint_artifact(m)]
        if not checkpoints:
            continue
        for meta in checkpoints:
            try:
                artifact_store.remove(meta.artifact_id)
            except ArtifactNotFound:
                pass  # deleted by hand or by an interrupted earlier call: the goal is reached
        study.set_user_attr(
            f"{PRUNED_ATTR_PREFIX}{trial.number}",
            {
                "trial_id": trial._trial_id,
                "artifact_ids": [m.artifact_id for m in checkpoints],
                "filenames": [m.filename for m in checkpoints],
            },
        )
        # After the record above, which hides them from trial_artifacts on any storage: on a
        # database the listing itself goes too, so optuna-dashboard no longer offers files that
        # are gone (it answered their download with HTTP 500).
        delete_trial_system_attrs(
            study._storage,
            trial._trial_id,
            [ARTIFACTS_ATTR_PREFIX + m.artifact_id for m in checkpoints],
        )
        pruned.append(trial.number)
    return pruned


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def loss_curve_png(
    losses: Sequence[tuple[int, float, float]],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """Plot ``(step, loss_d, loss_g)`` triples as a small PNG at ``path``; returns the path.

    Non-finite losses are left as gaps. An empty list still gives a PNG that says so, so callers
    need no special case. Uses matplotlib's Agg canvas directly (no pyplot global state, safe in
    worker threads).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.0, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if losses:
        steps = [int(s) for s, _, _ in losses]
        finite = lambda v: float(v) if math.isfinite(v) else math.nan  # noqa: E731
        ax.plot(steps, [finite(d) for _, d, _ in losses], label="D loss", linewidth=1.2)
        ax.plot(steps, [finite(g) for _, _, g in losses], label="G loss", linewidth=1.2)
        ax.legend(loc="best", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no losses recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training losses", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    tmp = target.with_name(f".{target.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    os.replace(tmp, target)
    return target
