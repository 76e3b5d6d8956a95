"""What a search asks for, split the way Ray's Tuner splits it.

* :class:`WhatToSearch` — the space, the data and how one trial is trained and scored.
* :class:`HowToSearch` — sampler, pruner, objectives and the number of finished trials.
* :class:`WhereToRun` — storage, artifacts, Ray address and per-trial resources.

All three are plain frozen data, validated in one place (:func:`validate_settings`), so the CLI and
programs calling :func:`nas.run_search` get the same checks and the same messages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gannas.errors import GannasError

OBJECTIVE_NAMES = ("fid", "params", "macs", "latency")
MAX_RESOLUTION = 1024
"""The largest image side searched (StyleGAN's); larger ones only end in an out-of-memory error."""


@dataclass(frozen=True)
class ScoringSettings:
    """How every trial of a study is scored. Part of the study's identity: never mixed."""

    fid_samples: int = 500
    """Fake samples per evaluation; the reference statistics use ``max(fid_samples, 1000)`` reals
    capped at the dataset size."""
    real_samples: int | None = None
    inception_weights: str | None = None
    allow_unverified_weights: bool = False
    feature_extractor: str | None = None
    """A TorchScript feature extractor file replacing Inception-v3 (domain-specific FD)."""
    metrics: tuple[str, ...] | None = None
    """``None``: fid, kid and is with Inception-v3; fid and kid with a custom extractor (which
    has no class logits for the Inception Score)."""
    batch_size: int = 100

    def resolved_metrics(self) -> tuple[str, ...]:
        """The metrics once each, in the order fid, kid, is (then any unknown name, for
        validate_settings to refuse): ``kid,fid`` and ``fid,fid,kid`` are the protocol of
        ``fid,kid``."""
        if self.metrics is None:
            return ("fid", "kid") if self.feature_extractor else ("fid", "kid", "is")
        known = tuple(m for m in ("fid", "kid", "is") if m in self.metrics)
        return known + tuple(m for m in dict.fromkeys(self.metrics) if m not in known)


@dataclass(frozen=True)
class WhatToSearch:
    space: str
    dataset: str
    resolution: int = 32
    channels: int | None = None
    budget: int = 300
    """Generator steps per trial."""
    eval_points: int = 3
    """Evaluations per trial (the last at the full budget); pruners decide at each."""
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    data_root: str | None = None
    seed: int = 0


@dataclass(frozen=True)
class HowToSearch:
    trials: int
    study: str | None = None
    sampler: str | None = None
    pruner: str | None = None
    objectives: tuple[str, ...] | None = None
    """``None``: the space file's ``search.objectives`` (``fid`` unless it says otherwise)."""
    max_retries: int = 2
    """How often an architecture whose worker died (not whose training failed) is run again."""
    cost_exponent: float | None = None
    """How much TPE prefers candidates predicted to train faster (0: not at all); ``None``: the
    space file's ``search.cost_exponent``, else :data:`nas.strategies.DEFAULT_TPE_COST_EXPONENT`.
    Single-objective TPE only: set here with another sampler or several objectives, the search is
    refused."""


@dataclass(frozen=True)
class WhereToRun:
    storage: str | None = None
    artifacts: str | None = None
    address: str | None = None
    executor: str = "ray"
    """``ray`` (default) or ``inline`` (trials run one at a time in this process; for debugging)."""
    workers: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    """``None`` picks 1 when the machine has a GPU, else 0. Fractions pack trials on one GPU."""
    device: str | None = None
    heartbeat_interval: int = 5
    grace_period: int = 20
    keep_checkpoints: int = 5
    tensorboard: str | None = None
    """Directory for per-trial TensorBoard scalars (``<dir>/<study>/trial_<n>/``), or ``None``."""


def eval_steps(budget: int, points: int) -> tuple[int, ...]:
    """Evaluation steps spread geometrically, ending at the budget.

    Geometric spacing gives successive-halving/Hyperband rungs something to compare early, when
    most bad architectures are already visible, while the last point scores the full budget.
    """
    points = max(1, min(points, budget))
    steps = {budget}
    for i in range(1, points):
        steps.add(max(1, round(budget / (2 ** (points - i)))))
    return tuple(sorted(steps))


def validate_settings(what: WhatToSearch, how: HowToSearch, where: WhereToRun) -> None:
    """Cross-field checks, one place, one clear message each."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise GannasError(message)

    # Types first: the Python API's dataclasses accept anything, and a comparison below with a
    # string (resolution="sixteen") was a TypeError, an "internal error" at the CLI.
    integers = {
        "trials": how.trials, "max_retries": how.max_retries, "budget": what.budget,
        "eval_points": what.eval_points, "resolution": what.resolution,
        "fid_samples": what.scoring.fid_samples, "workers": where.workers,
        "keep_checkpoints": where.keep_checkpoints,
        "heartbeat_interval": where.heartbeat_interval, "grace_period": where.grace_period,
    }  # fmt: skip
    optional = {"channels": what.channels, "real_samples": what.scoring.real_samples}
    for name, value in [*integers.items(), *((k, v) for k, v in optional.items() if v is not None)]:
        need(
            isinstance(value, int) and not isinstance(value, bool),
            f"--{name.replace('_', '-')} must be an integer, got {value!r}",
        )
    numbers = {"cpus_per_trial": where.cpus_per_trial, "gpus_per_trial": where.gpus_per_trial,
               "cost_exponent": how.cost_exponent}  # fmt: skip
    for name, value in numbers.items():
        optional_number = name != "cpus_per_trial" and value is None
        need(
            optional_number or (isinstance(value, (int, float)) and not isinstance(value, bool)),
            f"--{name.replace('_', '-')} must be a number, got {value!r}",
        )

    need(how.trials >= 1, f"--trials must be at least 1, got {how.trials}")
    need(what.budget >= 1, f"--budget must be at least 1 generator step, got {what.budget}")
    need(what.eval_points >= 1, f"--eval-points must be at least 1, got {what.eval_points}")
    need(
        8 <= what.resolution <= MAX_RESOLUTION and what.resolution & (what.resolution - 1) == 0,
        f"--resolution must be a power of two from 8 to {MAX_RESOLUTION} (16, 32, 64 ...), "
        f"got {what.resolution}",
    )
    need(what.channels in (None, 1, 3), f"--channels must be 1 or 3, got {what.channels}")
    need(
        what.scoring.fid_samples >= 2,
        f"--fid-samples must be at least 2, got {what.scoring.fid_samples}",
    )
    need(
        what.scoring.real_samples is None or what.scoring.real_samples >= 2,
        f"--real-samples must be at least 2, got {what.scoring.real_samples}",
    )
    need(where.workers >= 1, f"--workers must be at least 1, got {where.workers}")
    need(
        where.keep_checkpoints >= 0,
        f"--keep-checkpoints must be >= 0, got {where.keep_checkpoints}",
    )
    need(
        where.heartbeat_interval >= 1,
        f"--heartbeat-interval must be at least 1 second, got {where.heartbeat_interval}",
    )
    need(
        where.grace_period >= 1,
        f"--grace-period must be at least 1 second, got {where.grace_period}",
    )
    need(where.cpus_per_trial > 0, f"--cpus-per-trial must be > 0, got {where.cpus_per_trial}")
    need(
        where.gpus_per_trial is None or where.gpus_per_trial >= 0,
        f"--gpus-per-trial must be >= 0, got {where.gpus_per_trial}",
    )
    need(
        where.executor in ("ray", "inline"),
        f"--executor must be 'ray' or 'inline', got {where.executor!r}",
    )
    need(
        not (where.executor == "inline" and where.address),
        f"--address {where.address!r} names a Ray cluster, but --executor inline runs every trial "
        "in this process; leave out one of them",
    )
    need(how.max_retries >= 0, f"--max-retries must be >= 0, got {how.max_retries}")
    need(
        how.cost_exponent is None or (math.isfinite(how.cost_exponent) and how.cost_exponent >= 0),
        f"--cost-exponent must be a non-negative number, got {how.cost_exponent}",
    )
    if how.objectives is not None:
        validate_objectives(how.objectives)
    metrics = what.scoring.resolved_metrics()
    unknown = set(metrics) - {"fid", "kid", "is"}
    need(not unknown, f"unknown metrics {sorted(unknown)}; expected fid, kid, is")
    need("fid" in metrics, "the metrics must include 'fid'")
    # Checked here, not by each trial's evaluator: a trial refused there fails, and the study
    # would already have recorded these metrics as its protocol.
    need(
        not ("is" in metrics and what.scoring.feature_extractor),
        "--metrics 'is': the Inception Score needs Inception-v3's class logits, which a "
        "--feature-extractor network does not have; use --metrics fid or fid,kid",
    )
    need(
        "is" not in metrics or what.scoring.fid_samples >= 10,
        "--metrics 'is': the Inception Score uses 10 splits and needs --fid-samples of at least "
        f"10, got {what.scoring.fid_samples}",
    )


def validate_objectives(objectives: tuple[str, ...]) -> None:
    if not objectives:
        raise GannasError("--objectives needs at least one objective")
    if objectives[0] != "fid":
        raise GannasError(
            f"the first objective must be 'fid' (quality), got {','.join(objectives)!r}"
        )
    for name in objectives:
        if name not in OBJECTIVE_NAMES:
            raise GannasError(
                f"unknown objective {name!r}; expected some of {', '.join(OBJECTIVE_NAMES)}"
            )
    if len(set(objectives)) != len(objectives):
        raise GannasError(f"--objectives repeats a name: {','.join(objectives)!r}")


def check_device(device: str | None, *, local: bool) -> None:
    """Refuse a ``--device`` that torch does not know, or (``local``: trials run on this
    machine) one this machine does not have. Workers of a cluster are not checked from here."""
    if device is None or device == "auto":  # the GPU when there is one, else the CPU
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise GannasError(
            f"--device {device!r} is not a torch device; expected auto, cpu, cuda, cuda:N or mps"
        ) from None
    if not local:
        return
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise GannasError(f"--device {device!r}: this machine has no CUDA GPU")
        if parsed.index is not None and parsed.index >= count:
            raise GannasError(f"--device {device!r}: this machine has {count} CUDA GPU(s)")
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise GannasError(f"--device {device!r}: MPS is not available on this machine")
