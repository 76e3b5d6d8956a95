"""Screen samplers and pruners in minutes on a surrogate of ``search_efficiency.py``'s benchmark.

    # fit on the saved runs that recorded parameters, read against the real runs, 60 seeds
    # (~15 min on 2 cores)
    .venv/bin/python benchmarks/search_efficiency_surrogate.py --seeds 60 --jobs 2 \
        --strategies random,tpe+hyperband,tpe,tpe+sh,tpe+median,tpe-univariate+hyperband,\
tpe-ei128+hyperband,tpe-gamma25+hyperband,tpe-2-startup+hyperband,tpe-prior0.1+hyperband,\
oracle-region+hyperband,oracle-narrow+hyperband,tpe-warm-landscape+hyperband \
        --out benchmarks/results/search_efficiency_surrogate
    # what discovering the region by search could buy, and more TPE settings (~19 min)
    .venv/bin/python benchmarks/search_efficiency_surrogate.py --seeds 60 --jobs 2 \
        --strategies random,tpe+hyperband,tpe-rung15-model+hyperband,tpe-bohb10-model+hyperband,\
tpe-bohb16-model+hyperband,tpe-ei1+hyperband,tpe-ei8+hyperband,tpe-1-startup+hyperband,\
tpe-warm-landscape+hyperband,oracle-lr-g+hyperband,oracle-region+hyperband,\
oracle-narrow+hyperband,contact-box+hyperband,contact-narrow+hyperband,\
contact-box-narrow+hyperband,contact-lr-box+hyperband,contact-lr-box-narrow+hyperband \
        --out benchmarks/results/search_efficiency_surrogate_discovery
    # gannas's regularized evolution, its defaults and other population/tournament sizes (~16 min)
    .venv/bin/python benchmarks/search_efficiency_surrogate.py --seeds 60 --jobs 2 \
        --strategies random,tpe+hyperband,evolution,evolution+hyperband,\
evolution-p3-s3+hyperband,evolution-p5-s2+hyperband,evolution-p5-s5+hyperband,\
evolution-p10-s10+hyperband,evolution-p20-s5+hyperband \
        --out benchmarks/results/search_efficiency_surrogate_evolution
    # a published recipe (DCGAN, SNGAN) as the first trial of random search and TPE (~5 min)
    .venv/bin/python benchmarks/search_efficiency_surrogate.py --seeds 60 --jobs 2 \
        --strategies random,tpe+hyperband,random@dcgan,tpe+hyperband@dcgan,random@sngan,\
tpe+hyperband@sngan --out benchmarks/results/search_efficiency_surrogate_recipes

A real run of ``search_efficiency.py`` costs 40 minutes for one new strategy on ten seeds, and
ten seeds move the per-seed median by about a factor of two. This script replays the benchmark
with the training and scoring replaced by a model fitted on every trial the saved runs recorded,
so a strategy's per-seed reading over 40 or more seeds costs a few minutes, and a setting can be
screened before a real run is spent on it. It is a screen, not a measurement: a strategy it
favours still has to be run for real.

The surrogate (:class:`Surrogate`): random forests map a trial's parameters to the log of its
FID at each evaluation step and to the log of its CPU seconds, fitted on the full-budget trials
of the ``--fit`` runs (random search, TPE, the oracles: 7,556 trials in the committed runs).
A simulated trial gets the forests' prediction plus the out-of-bag residuals of one recorded
trial, scaled by ``--noise``; the residuals of one trial are kept together, so an FID that is
lucky at step 15 stays lucky at step 60, as a lucky training seed does. A pruned trial costs the
share of its predicted seconds that its steps are of the budget.

The search side is real: the strategy's sampler and pruner come from the same code as in
``search_efficiency.py`` (:func:`nas.strategies.make_sampler`, ``make_pruner``, the TPE
variants and the oracles of the other benchmark scripts), parameters are drawn with the search
space's own :func:`search_spaces.sample_values`, FIDs are reported at the controller's
evaluation steps and the pruner is asked after each. The time a search spends in Optuna is
measured (process CPU time, in-memory storage) and added to the simulated clock. The draws of a
trial depend on (seed, trial number), so random search and TPE's start-up trials, which draw
the same parameters, get the same outcomes, as they do in the real benchmark.

What it cannot say: anything outside the fitted trials' setting (8x8 ``digits``, 60 steps, three
FID evaluations, the ``dcgan-cpu`` space), pruners that report at other steps, and how a real
sampler's choices fare far from every recorded trial, where the forests extrapolate flat. The
results file puts the surrogate's readings of the strategies that were also run for real next to
those real readings, so how far to trust it can be read there.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import optuna
import search_efficiency as bench
import search_efficiency_ceiling as ceiling  # noqa: F401 - registers the oracles
import search_efficiency_tpe_variants as variants

from search_spaces import (
    CategoricalParam,
    SearchSpace,
    sample_values,
    space_from_text,
)

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_FIT = (
    "search_efficiency_ceiling.json",
    "search_efficiency_ceiling_seeds_50_59.json",
    "search_efficiency_ceiling_seeds_60_69.json",
    "search_efficiency_ceiling_seeds_70_79.json",
    "search_efficiency_seeds_60_69_prior.json",
    "search_landscape.json",
)
"""The saved runs that recorded every trial's parameters, all in ``search_efficiency.FULL``'s
per-trial setting."""
DEFAULT_NOISE = 0.6
"""Scale of the recorded residuals added to a prediction (1: the out-of-bag residuals as they
are, which hold the forests' own misfit as well as training noise). Chosen in a first trial of
this script, between 0.5 and 0.65, as where TPE + Hyperband's and the box oracle's readings came
closest to the real ones. Random search's median final best barely depends on it: 0.0095 at 1,
0.0101 at 0.6 and 0.0100 at 0.45 over 60 simulated seeds each, against 0.0080 over the 40 real
random searches of the fitted ceiling runs."""
PER_TRIAL_SETTING = (
    "resolution",
    "trial_budget",
    "eval_points",
    "fid_samples",
    "real_samples",
    "ema_decay",
)
"""What must agree between fitted runs and the simulation: what one trial trains and scores."""


# --- the fitted model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One recorded full-budget trial: its parameters, FID at each evaluation step, CPU seconds."""

    params: Mapping[str, Any]
    fid: Mapping[int, float]
    seconds: float


def recorded_trials(runs: Sequence[bench.RunResult], eval_at: Sequence[int]) -> list[Recorded]:
    """The completed trials of ``runs`` with parameters and an FID at every step of ``eval_at``.

    A trial's seconds are the search's CPU time between the previous trial's end and its own
    (trials ran one after another), so they include the sampler's share of that trial.
    """
    out = []
    for run in runs:
        previous = 0.0
        for event in run.events:
            seconds, previous = event.cpu_s - previous, event.cpu_s
            complete = event.state == "COMPLETE" and all(s in event.history for s in eval_at)
            if complete and event.params and seconds > 0:
                out.append(Recorded(event.params, {s: event.history[s] for s in eval_at}, seconds))
    return out


class Encoder:
    """Parameters -> a numeric row: categoricals one-hot, log-scaled numbers as logs, the rest as
    they are; a parameter the trial lacks (``gp_weight`` outside WGAN-GP) is 0."""

    def __init__(self, space: SearchSpace) -> None:
        self.columns: list[tuple[str, Any]] = []
        for p in space.parameters():
            if isinstance(p.param, CategoricalParam):
                self.columns.append((p.qualname, tuple(p.param.choices)))
            else:
                self.columns.append((p.qualname, "log" if getattr(p.param, "log", False) else ""))

    def row(self, params: Mapping[str, Any]) -> list[float]:
        out: list[float] = []
        for name, kind in self.columns:
            value = params.get(name)
            if isinstance(kind, tuple):
                out.extend(1.0 if value == choice else 0.0 for choice in kind)
            elif value is None:
                out.append(0.0)
            else:
                out.append(math.log(value) if kind == "log" else float(value))
        return out


class Surrogate:
    """Random forests from parameters to log FID per evaluation step and log CPU seconds, with
    the recorded trials' out-of-bag residuals as the noise of a simulated trial."""

    def __init__(
        self,
        trials: Sequence[Recorded],
        encoder: Encoder,
        eval_at: Sequence[int],
        *,
        noise: float = DEFAULT_NOISE,
        trees: int = 100,
        seed: int = 0,
    ) -> None:
        from sklearn.ensemble import RandomForestRegressor

        if len(trials) < 20:
            raise ValueError(f"{len(trials)} recorded full-budget trials are too few to fit on")
        self.encoder, self.eval_at, self.noise = encoder, tuple(eval_at), noise
        x = np.array([encoder.row(t.params) for t in trials])
        targets = np.array(
            [[math.log(t.fid[s]) for s in self.eval_at] + [math.log(t.seconds)] for t in trials]
        )
        self.forests = []
        residuals = []
        for j in range(targets.shape[1]):
            forest = RandomForestRegressor(
                n_estimators=trees, min_samples_leaf=3, oob_score=True, random_state=seed
            )
            forest.fit(x, targets[:, j])
            self.forests.append(forest)
            # Out-of-bag: a tree's residual on trials it never saw, not its own fit's (~0).
            residuals.append(targets[:, j] - forest.oob_prediction_)
        self.residuals = np.array(residuals).T
        self.r2 = [float(f.oob_score_) for f in self.forests]
        self.fitted_on = len(trials)

    def outcome(
        self, params: Mapping[str, Any], key: tuple[int, int]
    ) -> tuple[dict[int, float], float]:
        """FID at each evaluation step and CPU seconds of the trial ``params``; ``key`` (seed,
        trial number) picks the recorded residuals, so equal keys and parameters give equal
        outcomes."""
        x = np.array([self.encoder.row(params)])
        mean = np.array([f.predict(x)[0] for f in self.forests])
        pick = random.Random(f"{key[0]}/{key[1]}").randrange(len(self.residuals))
        y = mean + self.noise * self.residuals[pick]
        fids = {step: math.exp(y[i]) for i, step in enumerate(self.eval_at)}
        return fids, math.exp(y[-1])


# --- a what-if: TPE that has seen an earlier search ---------------------------------------------

WARM_LABEL = "tpe-warm-landscape+hyperband"
"""gannas's TPE + Hyperband whose model also sees the landscape's 274 random trials (seeds 100-101,
330 CPU s each, which no comparison uses) from its first trial: what a TPE warm-started from an
earlier search of the same problem could reach. Not a gannas option; a reference, like the
oracles, for how much TPE's density model can concentrate given ample data."""


def with_prior(prior: Sequence[Any]) -> Any:
    """Transform for :class:`search_efficiency_tpe_variants.StudyView`: the study's own trials
    and ``prior`` finished trials after them."""
    return lambda trials: [*trials, *prior]


def prior_trials(runs: Sequence[bench.RunResult], space: SearchSpace) -> list[Any]:
    """The finished trials of saved ``runs`` as Optuna trials of ``space`` (values: final FID)."""
    study = optuna.create_study()
    for run in runs:
        for event in run.events:
            if event.state != "COMPLETE" or event.fid is None or not event.params:
                continue
            study.enqueue_trial(dict(event.params))
            trial = study.ask()
            sample_values(space, trial)  # the enqueued values, with the space's distributions
            for step, fid in sorted(event.history.items()):
                trial.report(fid, step)
            study.tell(trial, event.fid)
    return study.get_trials(deepcopy=True, states=(optuna.trial.TrialState.COMPLETE,))


def _landscape_trials() -> list[Any]:
    if "prior" not in _WORLD:
        saved = bench._read_saved(RESULTS / "search_landscape.json")[2]
        _WORLD["prior"] = prior_trials(saved, space_from_text(bench.SPACE_YAML))
    return _WORLD["prior"]


def _warm_tpe(opts: Any) -> optuna.samplers.BaseSampler:
    prior = _landscape_trials()
    return variants.tpe_reading(lambda study: variants.StudyView(study, with_prior(prior)))(opts)


variants.OTHER_SAMPLERS[WARM_LABEL] = _warm_tpe
bench.STRATEGIES[WARM_LABEL] = ("tpe", "hyperband", None)


# --- a what-if: a published recipe as the first trial ------------------------------------------

RECIPES: dict[str, dict[str, Any]] = {
    # Radford et al. 2016: batch-normed ReLU generator with transposed 4x4 convolutions, a
    # leaky-ReLU discriminator, BCE, Adam at 2e-4 with betas (0.5, 0.999). Depths, widths, the
    # latent size and the batch are the nearest that the ``dcgan-cpu`` space allows (the paper
    # starts from a 4x4 stem with 64-channel last stages, a 100-d z and batches of 128).
    "dcgan": {
        "generator.latent_dim": 64,
        "generator.depth": 2,
        "generator.base_width": 32,
        "generator.kernel_size": 4,
        "generator.norm": "batch",
        "generator.activation": "relu",
        "generator.upsample": "deconv",
        "discriminator.depth": 2,
        "discriminator.width": 32,
        "discriminator.spectral_norm": False,
        "discriminator.activation": "leaky_relu",
        "training.loss": "bce",
        "training.lr_g": 2e-4,
        "training.lr_d": 2e-4,
        "training.beta1": 0.5,
        "training.beta2": 0.999,
        "training.d_steps": 1,
        "training.batch_size": 64,
    },
}
# Miyato et al. 2018 (SNGAN) on the same network: spectral norm in D, hinge loss, betas (0, 0.9).
RECIPES["sngan"] = {
    **RECIPES["dcgan"],
    "discriminator.spectral_norm": True,
    "training.loss": "hinge",
    "training.beta1": 0.0,
    "training.beta2": 0.9,
}
FIRST_TRIAL = {
    f"{base}@{name}": recipe
    for base in ("random", "tpe+hyperband")
    for name, recipe in RECIPES.items()
}
"""Strategy label -> the parameters of its first trial: the base strategy (before ``@``) after a
published recipe, enqueued as trial 0. A what-if, not a gannas option: does starting from a known
good configuration, chosen without this benchmark's data, make the search reach random search's
final best sooner? The recipe's trial gets trial 0's noise, as random search's first trial does."""
for _label in FIRST_TRIAL:
    bench.STRATEGIES[_label] = bench.STRATEGIES[_label.partition("@")[0]]


# --- the simulated search ---------------------------------------------------------------------


def simulate(
    surrogate: Surrogate,
    space: SearchSpace,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    *,
    strategy: str,
    seed: int,
    budget_s: float,
    count_optuna_time: bool = True,
) -> bench.RunResult:
    """One search on the surrogate until its clock passes ``budget_s``, as the benchmark stops:
    the trial running at the budget finishes, and is recorded after it (the summaries drop it)."""
    # Named as search_efficiency.py names its studies: Hyperband picks a trial's bracket from a
    # hash of the study name and trial number, so an unnamed (randomly named) study would prune
    # differently on every run.
    study = optuna.create_study(study_name="bench", sampler=sampler, pruner=pruner)
    if strategy in FIRST_TRIAL:
        study.enqueue_trial(FIRST_TRIAL[strategy])
    result = bench.RunResult(strategy=strategy, seed=seed)
    clock = 0.0
    last = surrogate.eval_at[-1]
    while clock < budget_s:
        started = time.process_time()
        trial = study.ask()
        sample_values(space, trial)
        params = dict(trial.params)
        spent = time.process_time() - started
        fids, seconds = surrogate.outcome(params, (seed, trial.number))
        history: dict[int, float] = {}
        pruned_at = None
        for step in surrogate.eval_at:
            started = time.process_time()
            trial.report(fids[step], step)
            history[step] = fids[step]
            prune = step < last and trial.should_prune()
            spent += time.process_time() - started
            if prune:
                pruned_at = step
                break
        started = time.process_time()
        if pruned_at is None:
            study.tell(trial, fids[last])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            seconds *= pruned_at / last
        spent += time.process_time() - started
        clock += seconds + (spent if count_optuna_time else 0.0)
        result.events.append(
            bench.TrialEvent(
                number=trial.number,
                state="COMPLETE" if pruned_at is None else "PRUNED",
                fid=fids[last] if pruned_at is None else None,
                cpu_s=clock,
                wall_s=clock,
                history=history,
                params=params,
            )
        )
    result.cpu_s = result.wall_s = clock
    return result


def strategy_parts(
    label: str, seed: int, eval_at: Sequence[int]
) -> tuple[optuna.samplers.BaseSampler, optuna.pruners.BasePruner]:
    """The sampler and pruner of ``label`` as ``search_efficiency.py`` and the scripts beside it
    build them for a real search."""
    from nas.strategies import make_pruner, make_sampler

    if label not in bench.STRATEGIES:
        raise KeyError(label)
    sampler_name, pruner_name, cost_exponent = bench.STRATEGIES[label]
    scope: AbstractContextManager[None]
    if label in variants.OTHER_SAMPLERS:
        scope = variants.sampler_instead_of_tpe(variants.OTHER_SAMPLERS[label])
    else:
        scope = variants.tpe_options(variants.TPE_VARIANTS.get(label, {}))
    with scope:
        sampler = make_sampler(sampler_name, seed=seed, cost_exponent=cost_exponent)
    pruner = make_pruner(pruner_name, min_resource=eval_at[0], max_resource=eval_at[-1])
    return sampler, pruner


_WORLD: dict[str, Any] = {}
"""The surrogate and space of this process (set before the pool forks, so workers share it)."""


def _simulate_job(job: tuple[str, int, float]) -> bench.RunResult:
    label, seed, budget_s = job
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    surrogate, space = _WORLD["surrogate"], _WORLD["space"]
    sampler, pruner = strategy_parts(label, seed, surrogate.eval_at)
    return simulate(surrogate, space, sampler, pruner, strategy=label, seed=seed, budget_s=budget_s)


def simulate_all(
    surrogate: Surrogate,
    space: SearchSpace,
    strategies: Sequence[str],
    seeds: Sequence[int],
    budget_s: float,
    jobs: int = 1,
) -> list[bench.RunResult]:
    _WORLD.update(surrogate=surrogate, space=space)
    work = [(label, seed, budget_s) for seed in seeds for label in strategies]
    if jobs <= 1:
        return [_simulate_job(job) for job in work]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        return pool.map(_simulate_job, work)


# --- reading and writing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """One strategy's reading, simulated or measured, in issue 5's terms."""

    strategy: str
    seeds: int
    trials: float
    final_best: float
    per_seed: float
    interval: tuple[float, float]
    at_least_3x: int
    never: int


def _summaries(runs: Sequence[bench.RunResult], budget_s: float) -> list[bench.Summary]:
    """``search_efficiency.summarize`` of ``runs``, for the strategies and seeds they hold."""
    strategies = tuple(dict.fromkeys(r.strategy for r in runs))
    seeds = tuple(sorted({r.seed for r in runs}))
    cfg = replace(bench.FULL, seeds=seeds, time_budget_s=budget_s, strategies=strategies)
    return bench.summarize(runs, cfg)


def readings(runs: Sequence[bench.RunResult], budget_s: float) -> dict[str, Reading]:
    """Per strategy: the per-seed median speedup against random search of the same seeds."""
    out = {}
    for s in _summaries(runs, budget_s):
        out[s.strategy] = Reading(
            strategy=s.strategy,
            seeds=len(s.speedup),
            trials=s.trials,
            final_best=s.final_best,
            per_seed=statistics.median(s.speedup) if s.speedup else math.nan,
            interval=bench.bootstrap_median_interval(s.speedup),
            at_least_3x=sum(v >= 3 for v in s.speedup),
            never=sum(v == 0 for v in s.speedup),
        )
    return out


def _row(r: Reading) -> str:
    lo, hi = r.interval
    speed = "1x" if r.strategy == "random" else f"{r.per_seed:.2f}x ({lo:.2f}-{hi:.2f})"
    tail = " | " if r.strategy == "random" else f"{r.at_least_3x}/{r.seeds} | {r.never}"
    return f"{r.trials:g} | {r.final_best:.5f} | {speed} | {tail}"


def markdown(
    simulated: Mapping[str, Reading],
    measured: Mapping[str, Sequence[float]],
    surrogate: Surrogate,
    *,
    command: str,
    fit_files: Sequence[str],
    measured_files: Sequence[str],
    seeds: int,
    budget_s: float,
    elapsed_s: float,
) -> str:
    head = (
        "| strategy | surrogate: trials | final best | per seed (90 % interval) | seeds >= 3x "
        "| never | measured: seeds | per seed (90 % interval) |\n|---|---:|---:|---:|---:|---:"
        "|---:|---:|"
    )
    lines = [
        "# Search efficiency on a surrogate of the benchmark",
        "",
        f"Command: `{command}`",
        "",
        f"Fitted on {surrogate.fitted_on} recorded full-budget trials of "
        + ", ".join(f"`{f}`" for f in fit_files)
        + f"; out-of-bag R^2 of the forests (log FID at steps {', '.join(map(str, surrogate.eval_at))}"
        f", log CPU s): {', '.join(f'{r:.3f}' for r in surrogate.r2)}; noise scale "
        f"{surrogate.noise:g}. {seeds} simulated seeds per strategy, {budget_s:g} simulated CPU s per "
        f"search; the simulation took {elapsed_s / 60:.1f} minutes of wall time.",
        "",
        "A screen, not a measurement: see the script's docstring for what the surrogate models "
        "and what it cannot say. "
        + (
            "The measured columns pool the strategy's saved real runs ("
            + ", ".join(f"`{g}`" for g in measured_files)
            + "), each against random search of the same seeds on the same day."
            if measured_files
            else "No real runs were given to read the strategies against."
        ),
        "",
        head,
    ]
    for label, r in simulated.items():
        real = measured.get(label, [])
        if not real:
            real_text = " | "
        elif label == "random":
            real_text = f"{len(real)} | 1x"
        else:
            lo, hi = bench.bootstrap_median_interval(real)
            real_text = f"{len(real)} | {statistics.median(real):.2f}x ({lo:.2f}-{hi:.2f})"
        lines.append(f"| {label} | {_row(r)} | {real_text} |")
    return "\n".join(lines) + "\n"


def recipe_lines(runs: Sequence[bench.RunResult], *, random_best: float, budget_s: float) -> str:
    """For each recipe strategy run: how the recipe itself scored, its first trial's final FID
    over the seeds (a pruned recipe trial counts as not scored), and in how many seeds it alone
    matched random search's final best (within ``budget_s``, as the summaries read it)."""
    lines = []
    for label in dict.fromkeys(r.strategy for r in runs if r.strategy in FIRST_TRIAL):
        first = [r.events[0] for r in runs if r.strategy == label and r.events]
        scored = sorted(e.fid for e in first if e.fid is not None)
        if not scored:
            lines.append(f"- `{label}`: the recipe's trial was pruned in every search.")
            continue
        lines.append(
            f"- `{label}`: the recipe's own trial scored a median final FID of "
            f"{statistics.median(scored):.4f} (range {scored[0]:.4f}-{scored[-1]:.4f}, "
            f"{len(scored)} of {len(first)} searches scored it; random search's median final "
            f"best: {random_best:.4f}); at or below random search's final best of the same seed "
            f"in {_recipe_hits(runs, label, budget_s)} of {len(first)} seeds."
        )
    if not lines:
        return ""
    return "\n## The recipes' own trials\n\n" + "\n".join(lines) + "\n"


def _recipe_hits(runs: Sequence[bench.RunResult], label: str, budget_s: float) -> int:
    random_best = {
        r.seed: min(
            (e.fid for e in r.events if e.fid is not None and e.cpu_s <= budget_s),
            default=math.inf,
        )
        for r in runs
        if r.strategy == "random"
    }
    return sum(
        1
        for r in runs
        if r.strategy == label
        and r.events
        and r.events[0].fid is not None
        and r.events[0].fid <= random_best.get(r.seed, -math.inf)
    )


def _read(path: Path) -> tuple[bench.Config, list[bench.RunResult]]:
    """A saved run's setting and runs, or exit with a message naming the file."""
    try:
        _, cfg, runs = bench._read_saved(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        # ValueError covers malformed JSON; KeyError/TypeError a file of another shape.
        raise SystemExit(
            f"{path}: not a saved run of search_efficiency.py ({type(exc).__name__}: {exc})"
        ) from None
    return cfg, runs


def _load_fit_runs(paths: Sequence[Path]) -> tuple[bench.Config, list[bench.RunResult]]:
    """The saved runs of ``paths``, which must share one per-trial setting."""
    cfg: bench.Config | None = None
    runs: list[bench.RunResult] = []
    for path in paths:
        this, file_runs = _read(path)
        setting = {k: getattr(this, k) for k in PER_TRIAL_SETTING}
        if cfg is not None:
            first = {k: getattr(cfg, k) for k in PER_TRIAL_SETTING}
            if setting != first:
                raise SystemExit(
                    f"{path}: its trials were trained or scored differently from "
                    f"{paths[0]}'s ({setting} against {first}); fit on runs of one setting"
                )
        cfg = cfg or this
        runs.extend(file_runs)
    assert cfg is not None
    return cfg, runs


MEASURED = (
    "search_efficiency.json",
    "search_efficiency_tpe_variants.json",
    (
        "search_efficiency_seeds_40_49.json+search_efficiency_seeds_40_49_variants.json"
        "+search_efficiency_seeds_40_49_gp.json"
    ),
    "search_efficiency_ceiling.json",
    "search_efficiency_ceiling_seeds_50_59.json",
    "search_efficiency_ceiling_seeds_60_69.json+search_efficiency_seeds_60_69_prior.json",
    "search_efficiency_ceiling_seeds_70_79.json",
)
"""The real runs each simulated strategy is read against: every saved 120 s run made with
gannas's current defaults (3 TPE start-up trials, Hyperband over the first evaluation to half the
budget); files joined by ``+`` were run the same day and pair by seed (a variant's runs with the
random search of the same seeds). Each group's runs pair only within the group: seed numbers
repeat across days."""


def measured_speedups(groups: Sequence[Sequence[Path]], budget_s: float) -> dict[str, list[float]]:
    """Every strategy's per-seed speedups in saved real runs, against random search of the same
    seeds in the same group of files, pooled over the groups."""
    pooled: dict[str, list[float]] = {}
    for group in groups:
        runs: list[bench.RunResult] = []
        for path in group:
            runs.extend(_read(path)[1])
        for summary in _summaries(runs, budget_s):
            pooled.setdefault(summary.strategy, []).extend(summary.speedup)
    return pooled


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="benchmarks/search_efficiency_surrogate.py",
        description="Screen strategies on a surrogate fitted on saved benchmark runs.",
    )
    parser.add_argument("--fit", type=Path, nargs="+", help="saved runs with parameters")
    parser.add_argument("--strategies", default="random,tpe+hyperband")
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--noise", type=float, default=DEFAULT_NOISE)
    parser.add_argument("--time-budget", type=float, default=bench.FULL.time_budget_s)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument(
        "--measured",
        nargs="*",
        help="real runs to read each strategy against, a group of same-day files joined by + "
        "(default: MEASURED without --fit, none with it)",
    )
    parser.add_argument("--out", type=Path, help="results file stem (writes .md)")
    parsed = parser.parse_args(args)
    strategies = [s for s in parsed.strategies.split(",") if s]
    unknown = [s for s in strategies if s not in bench.STRATEGIES]
    if unknown:
        parser.error(f"unknown strategies {unknown}; known: {', '.join(bench.STRATEGIES)}")
    if "random" not in strategies:
        parser.error("--strategies must include random: every reading is against it")
    if parsed.seeds < 1 or parsed.jobs < 1:
        parser.error("--seeds and --jobs must be at least 1")
    if not (0.0 <= parsed.noise and math.isfinite(parsed.noise)):
        parser.error(f"--noise must be a non-negative number, got {parsed.noise}")
    if not parsed.time_budget > 0:
        parser.error(f"--time-budget must be positive, got {parsed.time_budget}")
    fit_paths = parsed.fit or [RESULTS / name for name in DEFAULT_FIT]
    cfg, fit_runs = _load_fit_runs(fit_paths)
    from nas.settings import eval_steps

    steps = eval_steps(cfg.trial_budget, cfg.eval_points)
    space = space_from_text(bench.SPACE_YAML)
    try:
        surrogate = Surrogate(
            recorded_trials(fit_runs, steps), Encoder(space), steps, noise=parsed.noise
        )
    except ValueError as exc:
        parser.error(str(exc))
    started = time.perf_counter()
    runs = simulate_all(
        surrogate, space, strategies, range(parsed.seeds), parsed.time_budget, parsed.jobs
    )
    elapsed = time.perf_counter() - started
    simulated = readings(runs, parsed.time_budget)
    if parsed.measured is None:
        groups_text = [] if parsed.fit else list(MEASURED)
    else:
        groups_text = list(parsed.measured)
    base = RESULTS if parsed.measured is None else Path()
    groups = [[base / name for name in g.split("+")] for g in groups_text]
    measured = measured_speedups(groups, parsed.time_budget)
    text = markdown(
        simulated,
        measured,
        surrogate,
        command="python benchmarks/search_efficiency_surrogate.py " + " ".join(args),
        fit_files=[p.name for p in fit_paths],
        measured_files=[" + ".join(Path(n).name for n in g.split("+")) for g in groups_text],
        seeds=parsed.seeds,
        budget_s=parsed.time_budget,
        elapsed_s=elapsed,
    )
    text += recipe_lines(
        runs, random_best=simulated["random"].final_best, budget_s=parsed.time_budget
    )
    if parsed.out:
        parsed.out.with_suffix(".md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
