"""Pareto fronts of multi-objective studies (FID against a cost), and the retraining order.

A multi-objective gannas study (``--objectives fid,params``) has no single best trial: its result
is the set of completed trials that no other completed trial beats on every objective. Every
gannas objective is minimised (FID, parameters, MACs, latency). Trials are ranked front by front
(non-dominated sorting, as NSGA-II does), and by FID inside a front, which is also the order in
which ``gannas retrain`` picks architectures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from gannas._files import describe_os_error, make_dirs, mkstemp, remove_dirs
from gannas.errors import GannasError
from nas import attrs

__all__ = [
    "FrontPoint",
    "NoParetoFront",
    "completed_trials",
    "key_params",
    "nondominated_fronts",
    "objective_names",
    "pareto_front",
    "plot_front",
    "rank_trials",
]


class NoParetoFront(GannasError):
    """The study optimises one objective, so it has a best trial instead of a front."""


@dataclass(frozen=True)
class FrontPoint:
    """One trial of a front: its number, FID, cost objective(s) and what it is."""

    number: int
    fid: float
    costs: tuple[float, ...]
    params_g: int | None
    params: dict[str, Any]


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objectives (``fid`` first): Optuna's metric names (which gannas sets, and the
    dashboard shows), else the study's identity; ``objective_k`` if unknown."""
    n = len(study.directions)
    metric_names = study.metric_names
    if metric_names is not None and len(metric_names) == n:
        return [str(name) for name in metric_names]
    identity = study.user_attrs.get(attrs.STUDY_IDENTITY) or {}
    names = list(identity.get("objectives") or [])
    if len(names) != n:
        names = ["fid"] + [f"objective_{k}" for k in range(1, n)]
    return names


def completed_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials whose values are all numbers (a NaN cannot be ranked)."""
    return [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values is not None and not any(math.isnan(v) for v in t.values)
    ]


def _signed(values: Sequence[float], directions: Sequence[StudyDirection]) -> tuple[float, ...]:
    # Every comparison below minimises; a maximised objective is negated.
    return tuple(v if d == StudyDirection.MINIMIZE else -v for v, d in zip(values, directions))


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def nondominated_fronts(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> list[list[FrozenTrial]]:
    """Trials split into successive Pareto fronts, each sorted by the first objective (FID).

    Quadratic in the number of trials, which is fine for the tens to hundreds a GAN search runs.
    """
    values = {t.number: _signed(t.values, directions) for t in trials}
    remaining = list(trials)
    fronts: list[list[FrozenTrial]] = []
    while remaining:
        front = [
            t
            for t in remaining
            if not any(_dominates(values[o.number], values[t.number]) for o in remaining)
        ]
        front.sort(key=lambda t: (values[t.number][0], t.number))
        fronts.append(front)
        taken = {t.number for t in front}
        remaining = [t for t in remaining if t.number not in taken]
    return fronts


def rank_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials, best first: by FID for one objective; front by front, FID within a front,
    for several."""
    trials = completed_trials(study)
    if len(study.directions) == 1:
        sign = 1.0 if study.directions[0] == StudyDirection.MINIMIZE else -1.0
        return sorted(trials, key=lambda t: (sign * t.values[0], t.number))
    return [t for front in nondominated_fronts(trials, study.directions) for t in front]


def key_params(trial: FrozenTrial) -> dict[str, Any]:
    """What identifies an architecture at a glance: the generator's searched parameters (without
    the ``generator.`` prefix) and the loss."""
    out = {
        name.split(".", 1)[1]: value
        for name, value in trial.params.items()
        if name.startswith("generator.")
    }
    if "training.loss" in trial.params:
        out["loss"] = trial.params["training.loss"]
    return out


def pareto_front(study: optuna.Study) -> list[FrontPoint]:
    """The first Pareto front of a multi-objective study, sorted by FID.

    Raises:
        NoParetoFront: the study has a single objective, or no completed trial yet.
    """
    if len(study.directions) < 2:
        raise NoParetoFront(
            f"study {study.study_name!r} optimizes one objective ({objective_names(study)[0]}), "
            "so it has a best trial, not a Pareto front; search with --objectives fid,params "
            "(or fid,macs / fid,latency) for a front"
        )
    trials = completed_trials(study)
    if not trials:
        raise NoParetoFront(
            f"study {study.study_name!r} has no completed trial yet, so no Pareto front"
        )
    front = nondominated_fronts(trials, study.directions)[0]
    return [
        FrontPoint(
            number=t.number,
            fid=float(t.values[0]),
            costs=tuple(float(v) for v in t.values[1:]),
            params_g=t.user_attrs.get(attrs.PARAMS_G),
            params=key_params(t),
        )
        for t in front
    ]


def plot_front(study: optuna.Study, path: str | Path) -> Path:
    """Write a PNG of FID against the first cost objective: every completed trial, the front
    joined as a staircase and labelled with trial numbers.

    Raises:
        NoParetoFront: as :func:`pareto_front`.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot
    import matplotlib.pyplot as plt

    front = pareto_front(study)
    names = objective_names(study)
    trials = completed_trials(study)
    target = Path(path)
    fmt = target.suffix.lstrip(".").lower() or "png"
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if fmt not in fig.canvas.get_supported_filetypes():
        plt.close(fig)
        raise GannasError(
            f"--plot {str(path)!r}: matplotlib cannot write '.{fmt}' files; use .png, .svg or .pdf"
        )
    ax.scatter(
        [t.values[1] for t in trials],
        [t.values[0] for t in trials],
        s=18,
        color="0.7",
        label="completed trials",
    )
    by_cost = sorted(front, key=lambda p: p.costs[0])
    ax.step(
        [p.costs[0] for p in by_cost],
        [p.fid for p in by_cost],
        where="post",
        color="tab:red",
        marker="o",
        label="Pareto front",
    )
    for p in front:
        ax.annotate(
            str(p.number),
            (p.costs[0], p.fid),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xlabel(names[1] if len(names) > 1 else "cost")
    ax.set_ylabel(names[0].upper() if names[0] == "fid" else names[0])
    ax.set_title(f"{study.study_name}: {len(front)} of {len(trials)} completed trials on the front")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    created: list[Path] = []
    tmp: str | None = None
    try:
        # Written beside the target and renamed into place, so a failed write leaves no half
        # image; directories made for it are removed again.
        created = make_dirs(target.parent)
        fd, tmp = mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, dpi=110, format=fmt)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        remove_dirs(created)
        raise GannasError(f"cannot write --plot {str(path)!r}: {describe_os_error(exc)}") from None
    finally:
        plt.close(fig)
    return target
