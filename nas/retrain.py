"""The final stage of a search: retrain the best architectures longer and score them better.

A search ranks architectures on short trainings and cheap FIDs; AutoGAN and E2GAN then retrain
the few best ones for a full budget and report FID on many more samples. ``retrain_top`` does that
with the search's own machinery: it enqueues the top-K architectures of a study into a companion
study ``<STUDY>.final`` in the same database and runs :func:`nas.controller.run_search` on it with
the longer budget and the larger FID sample count, so retraining gets the same workers, retries,
heartbeats, checkpoints and continue-by-running-again semantics as the search.

How the stage is recorded (the study database stays the single source of truth):

* the companion study carries the study attributes ``gannas.stage = "final"`` and
  ``gannas.source_study``, and its own ``gannas.identity`` (the longer budget and the larger
  sample count make its FIDs a different protocol from the search's);
* each of its trials carries ``gannas.stage = "final"``, ``gannas.source_trial`` (the trial number
  in the main study whose architecture it retrains) and ``gannas.search_fid``; a trial the
  controller re-ran because its worker died carries ``gannas.retry_of`` instead, which leads back
  to one that has them (see :func:`source_of`);
* the main study carries ``gannas.final_study``, the companion's name, which ``gannas export``
  follows to prefer the best final-stage generator.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gannas.errors import GannasError
from nas import attrs
from nas.settings import WhereToRun

__all__ = [
    "FINAL_STAGE",
    "FINAL_STUDY",
    "SEARCH_FID",
    "SOURCE_STUDY",
    "SOURCE_TRIAL",
    "STAGE",
    "RetrainSummary",
    "RetrainedArchitecture",
    "final_study_name",
    "final_trials",
    "load_final_study",
    "retrain_top",
    "source_of",
]

# Attribute names (next to those in nas.attrs; kept here because only the final stage uses them).
STAGE = "gannas.stage"
"""Study and trial attribute: ``final`` for the retraining stage (absent on search studies)."""
SOURCE_TRIAL = "gannas.source_trial"
"""Final-stage trial attribute: the number of the main-study trial it retrains."""
SOURCE_STUDY = "gannas.source_study"
"""Final-stage study and trial attribute: the name of the main study."""
SEARCH_FID = "gannas.search_fid"
"""Final-stage trial attribute: the source trial's FID during the search, for comparison."""
FINAL_STUDY = "gannas.final_study"
"""Main-study attribute: the name of its final-stage companion study."""
FINAL_STAGE = "final"


def final_study_name(study_name: str) -> str:
    return f"{study_name}.final"


@dataclass(frozen=True)
class RetrainedArchitecture:
    """One architecture of the final stage: where it came from and how it did there."""

    source_number: int
    search_fid: float
    final_number: int | None
    """The finished final-stage trial (``None`` while it has not finished)."""
    state: str
    """COMPLETE, PRUNED, FAIL, or WAITING/RUNNING/LOST when it has no finished trial."""
    final_fid: float | None
    final_values: list[float] | None


@dataclass(frozen=True)
class RetrainSummary:
    study: str
    final_study: str
    budget: int
    fid_samples: int
    architectures: list[RetrainedArchitecture]
    enqueued_now: list[int]
    """Source trial numbers enqueued by this call (empty when continuing a finished stage)."""
    trials_run_now: int
    notes: list[str] = field(default_factory=list)


class _ReplaySuggester:
    """Answers :func:`search_spaces.sample_config` with a finished trial's parameters.

    Used to check, before anything is enqueued, that the stored space turns the source trial's
    Optuna parameters back into exactly its stored architecture.
    """

    def __init__(self, params: Mapping[str, Any], *, number: int) -> None:
        self._params = params
        self._number = number

    def _get(self, name: str) -> Any:
        if name not in self._params:
            raise GannasError(
                f"trial {self._number} has no value for parameter {name!r}, which the study's "
                "search space asks for; the stored space and the trial disagree"
            )
        return self._params[name]

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        return self._get(name)

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        return int(self._get(name))

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        return float(self._get(name))


def load_final_study(study: optuna.Study) -> optuna.Study | None:
    """The final-stage companion of ``study`` (same storage), or ``None`` when it has none."""
    name = study.user_attrs.get(FINAL_STUDY)
    if not name:
        return None
    try:
        return optuna.load_study(study_name=name, storage=study._storage)
    except KeyError:
        return None


def source_of(trial: FrozenTrial, by_number: Mapping[int, FrozenTrial]) -> int | None:
    """The main-study trial a final-stage trial retrains, following controller retries."""
    seen: set[int] = set()
    current: FrozenTrial | None = trial
    while current is not None and current.number not in seen:
        seen.add(current.number)
        source = current.user_attrs.get(SOURCE_TRIAL)
        if source is not None:
            return int(source)
        retry_of = current.user_attrs.get(attrs.RETRY_OF)
        current = by_number.get(int(retry_of)) if retry_of is not None else None
    return None


def final_trials(final: optuna.Study) -> list[tuple[FrozenTrial, int]]:
    """The final-stage study's trials that retrain a known source, with that source's number."""
    trials = final.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    out = []
    for t in trials:
        source = source_of(t, by_number)
        if source is not None:
            out.append((t, source))
    return out


def _open_main_study(name: str, storage: Any, url: str) -> optuna.Study:
    from storage import redact_url

    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise GannasError(
            f"no study named {name!r} in {redact_url(url)}; studies there: "
            f"{', '.join(names) if names else 'none'}"
        ) from None


def _check_replay(space: Any, trial: FrozenTrial, identity: Mapping[str, Any]) -> None:
    from search_spaces import sample_config

    stored = trial.user_attrs.get(attrs.ARCH)
    if stored is None:
        raise GannasError(
            f"trial {trial.number} has no stored architecture ({attrs.ARCH}); "
            "it cannot be retrained"
        )
    replayed = sample_config(
        space,
        _ReplaySuggester(trial.params, number=trial.number),
        resolution=int(identity["resolution"]),
        channels=int(identity["channels"]),
    ).to_json_dict()
    if replayed != stored:
        differing = sorted(
            k for k in set(replayed) | set(stored) if replayed.get(k) != stored.get(k)
        )
        raise GannasError(
            f"trial {trial.number}'s parameters rebuild a different architecture from the one it "
            f"stored (differing: {', '.join(differing)}); the study's stored search space does "
            "not match its trials, so retraining would train something else"
        )


def _plan(
    final: optuna.Study, chosen: Sequence[FrozenTrial], *, max_retries: int
) -> tuple[list[FrozenTrial], int, list[str]]:
    """What to enqueue, and the number of finished trials the final study must reach.

    Each source architecture ends with exactly one finished trial. Sources already in the final
    study (finished, waiting, running, or lost and still retryable) are never enqueued again, so
    running ``retrain`` twice does not duplicate. A source whose worker died more often than
    ``max_retries`` is left out of the target: counting it would make the controller ask for a
    trial with nothing enqueued, and it would sample a random architecture.
    """
    from nas.study_state import is_finished, next_retry

    present: dict[int, list[FrozenTrial]] = {}
    for t, source in final_trials(final):
        present.setdefault(source, []).append(t)
    notes: list[str] = []
    target = 0
    for source, trials in sorted(present.items()):
        pending = any(t.state in (TrialState.WAITING, TrialState.RUNNING) for t in trials)
        if (
            any(is_finished(t) for t in trials)
            or pending
            or next_retry(trials, max_retries=max_retries) is not None
        ):
            target += 1
        else:
            notes.append(
                f"the architecture of trial {source} was lost more than {max_retries} times "
                "(its workers died); it is not retrained again"
            )
    to_enqueue = [t for t in chosen if t.number not in present]
    return to_enqueue, target + len(to_enqueue), notes


def retrain_top(
    study_name: str,
    *,
    top: int,
    budget: int,
    fid_samples: int,
    where: WhereToRun,
    real_samples: int | None = None,
    eval_points: int | None = None,
    seed: int = 0,
    dataset: str | None = None,
    data_root: str | None = None,
    feature_extractor: str | None = None,
    inception_weights: str | None = None,
    allow_unverified_weights: bool = False,
    max_retries: int = 2,
    progress: Any = None,
) -> RetrainSummary:
    """Retrain the ``top`` best architectures of a study and record them as its final stage.

    The best are the lowest-FID completed trials; for a multi-objective study, the Pareto front
    ordered by FID, then the next fronts (see :func:`nas.pareto.rank_trials`). Each is trained
    again from scratch for ``budget`` generator steps and scored with ``fid_samples`` samples, in
    the companion study ``<study_name>.final`` (created on first use). Running it again continues
    that stage: architectures already there are not enqueued again, and a larger ``top`` adds
    the next ones.

    The space, dataset, resolution, channels, metrics, objectives and feature extractor come from
    the main study's stored identity and space; ``dataset``, ``data_root``, ``feature_extractor``
    and ``inception_weights`` override where those files are found (they may have moved).

    Raises:
        GannasError: unknown study, a study without completed trials, a final-stage study, bad
            numbers, or a stored space that no longer rebuilds the stored architectures.
    """
    from nas.controller import check_where_to_run, run_search
    from nas.pareto import rank_trials
    from nas.scoring import load_data
    from nas.settings import (
        HowToSearch,
        ScoringSettings,
        WhatToSearch,
        eval_steps,
        validate_settings,
    )
    from nas.trial_job import DataSpec
    from search_spaces import space_from_text
    from storage import open_storage, resolve_storage_url

    if top < 1:
        raise GannasError(f"--top must be at least 1, got {top}")
    url = resolve_storage_url(where.storage, must_exist=True)  # never create a database here
    storage = open_storage(url)
    study = _open_main_study(study_name, storage, url)
    if study.user_attrs.get(STAGE) == FINAL_STAGE:
        source = study.user_attrs.get(SOURCE_STUDY, "its source study")
        raise GannasError(
            f"study {study_name!r} is already a final stage (of {source!r}); retrain the search "
            "study instead"
        )
    identity = study.user_attrs.get(attrs.STUDY_IDENTITY)
    space_yaml = study.user_attrs.get(attrs.STUDY_SPACE_YAML)
    if not identity or not space_yaml:
        raise GannasError(
            f"study {study_name!r} has no stored gannas identity or search space "
            f"({attrs.STUDY_IDENTITY}, {attrs.STUDY_SPACE_YAML}); was it made by `gannas search`?"
        )
    ranked = rank_trials(study)
    if not ranked:
        raise GannasError(
            f"study {study_name!r} has no completed trial yet; nothing to retrain"
        )
    chosen = ranked[:top]
    space = space_from_text(space_yaml, source=f"study {study_name!r}")
    for trial in chosen:
        _check_replay(space, trial, identity)

    objectives = tuple(identity.get("objectives") or ("fid",))
    extractor = feature_extractor or identity.get("feature_extractor")
    if extractor == "inception-v3":
        extractor = None
    eval_at = identity.get("eval_at") or [identity.get("budget", budget)]
    if real_samples is None:
        # Continuing a final stage keeps its reference statistics, so a repeated retrain command
        # that once gave --real-samples may leave it out. A new stage takes the usual default
        # (max(--fid-samples, 1000) real images, capped at the dataset), not the search's count:
        # a final FID of many samples wants reference statistics of as many.
        stage = load_final_study(study)
        recorded = (stage.user_attrs.get(attrs.STUDY_IDENTITY) or {}) if stage else {}
        if isinstance(recorded.get("real_samples"), int):
            real_samples = recorded["real_samples"]
    what = WhatToSearch(
        space="",  # replaced below by the file the stored space is written to
        dataset=dataset or str(identity["dataset"]),
        resolution=int(identity["resolution"]),
        channels=int(identity["channels"]),
        budget=budget,
        eval_points=eval_points if eval_points is not None else len(eval_at),
        scoring=ScoringSettings(
            fid_samples=fid_samples,
            real_samples=real_samples,
            inception_weights=inception_weights,
            allow_unverified_weights=allow_unverified_weights,
            feature_extractor=extractor,
            metrics=tuple(identity.get("metrics") or ("fid",)),
        ),
        data_root=data_root,
        seed=seed,
    )
    # Checked before the final study is created or anything is enqueued: a refused option
    # must leave nothing behind (run_search checks the rest before it records the protocol).
    validate_settings(
        what,
        HowToSearch(
            trials=1,
            sampler="random",
            pruner="none",
            objectives=objectives,
            max_retries=max_retries,
        ),
        where,
    )
    check_where_to_run(where, pruner="none", eval_at=eval_steps(budget, what.eval_points))
    # The final stage trains longer and scores with more samples than the search, never less:
    # export prefers its results, so a shorter retraining would replace better generators.
    for option, asked, searched in (
        ("--budget", budget, identity.get("budget")),
        ("--fid-samples", fid_samples, identity.get("fid_samples")),
    ):
        if isinstance(searched, int) and isinstance(asked, int) and asked < searched:
            raise GannasError(
                f"{option} {asked} is less than the search's {searched}; the final stage "
                f"retrains for at least the search's budget and samples, so give {option} "
                f">= {searched}"
            )
    if extractor and not Path(extractor).expanduser().is_file():
        if feature_extractor:
            raise GannasError(f"--feature-extractor {extractor!r}: no such file")
        raise GannasError(
            f"study {study_name!r} was scored with the feature extractor {extractor!r}, which is "
            "not there any more; pass --feature-extractor with the file's new path"
        )
    if inception_weights and not Path(inception_weights).expanduser().is_file():
        raise GannasError(f"--inception-weights {inception_weights!r}: no such file")
    # A dataset that cannot be loaded (a --dataset folder typed wrong, or the stored one moved)
    # is refused here too. run_search loads the same spec again, from load_data's cache.
    load_data(DataSpec(what.dataset, what.resolution, what.channels, what.data_root))
    network_file = extractor or inception_weights
    if network_file:
        # The search's FIDs and the final stage's are set side by side: a network file other
        # than the one the search was scored with is refused before the final stage exists.
        from nas.study_state import check_feature_network
        from trainers.metrics import file_sha256

        option = "--feature-extractor" if extractor else "--inception-weights"
        check_feature_network(
            study,
            f"file:sha256={file_sha256(Path(network_file).expanduser())}",
            remedy=f"Pass {option} with the file the search was scored with",
        )

    final_name = final_study_name(study_name)
    final = optuna.create_study(
        storage=storage,
        study_name=final_name,
        directions=["minimize"] * len(objectives),
        load_if_exists=True,
    )
    final.set_user_attr(STAGE, FINAL_STAGE)
    final.set_user_attr(SOURCE_STUDY, study_name)
    study.set_user_attr(FINAL_STUDY, final_name)

    to_enqueue, target, notes = _plan(final, chosen, max_retries=max_retries)
    for trial in to_enqueue:
        final.enqueue_trial(
            trial.params,
            user_attrs={
                STAGE: FINAL_STAGE,
                SOURCE_TRIAL: trial.number,
                SOURCE_STUDY: study_name,
                SEARCH_FID: float(trial.values[0]),
            },
        )

    how = HowToSearch(
        trials=max(target, 1),
        study=final_name,
        # Every final-stage trial is an enqueued architecture; the sampler never chooses one,
        # and nothing is pruned: these are the runs whose FIDs are reported.
        sampler="random",
        pruner="none",
        objectives=objectives,
        max_retries=max_retries,
    )
    trials_now = 0
    if target > 0:
        with tempfile.TemporaryDirectory(prefix="gannas-retrain-") as tmp:
            # The study's own copy of the space: the file it was searched from may have moved or
            # changed since. Workers receive full architectures and never read this file.
            space_file = Path(tmp) / f"{space.name}.yaml"
            space_file.write_text(space_yaml, encoding="utf-8")
            summary = run_search(
                dataclasses.replace(what, space=str(space_file)), how, where, progress=progress
            )
        trials_now = summary.trials_run_now
    return RetrainSummary(
        study=study_name,
        final_study=final_name,
        budget=budget,
        fid_samples=fid_samples,
        architectures=_results(final, chosen),
        enqueued_now=[t.number for t in to_enqueue],
        trials_run_now=trials_now,
        notes=notes,
    )


def _results(final: optuna.Study, chosen: Sequence[FrozenTrial]) -> list[RetrainedArchitecture]:
    from nas.study_state import is_finished

    final = optuna.load_study(study_name=final.study_name, storage=final._storage)
    by_source: dict[int, list[FrozenTrial]] = {}
    for t, source in final_trials(final):
        by_source.setdefault(source, []).append(t)
    out = []
    for trial in chosen:
        mine = by_source.get(trial.number, [])
        done = [t for t in mine if is_finished(t)]
        last = done[-1] if done else (mine[-1] if mine else None)
        if last is not None and not done and last.state == TrialState.FAIL:
            state = "LOST"
        else:
            state = last.state.name if last is not None else "MISSING"
        out.append(
            RetrainedArchitecture(
                source_number=trial.number,
                search_fid=float(trial.values[0]),
                final_number=last.number if done else None,
                state=state,
                final_fid=(
                    float(last.user_attrs[attrs.FID])
                    if done and last.user_attrs.get(attrs.FID) is not None
                    else None
                ),
                final_values=list(last.values) if done and last.values else None,
            )
        )
    return out
