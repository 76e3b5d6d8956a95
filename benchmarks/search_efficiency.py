"""Search efficiency: best FID against search time for random search, TPE and TPE + Hyperband.

    .venv/bin/python benchmarks/search_efficiency.py --quick    # < 5 minutes
    .venv/bin/python benchmarks/search_efficiency.py            # full: ~32 min on 2 cores
    .venv/bin/python benchmarks/search_efficiency.py --seeds 7 --time-budget 300 --jobs 2
    .venv/bin/python benchmarks/search_efficiency.py --first-seed 10    # 10 fresh seeds, 10-19
    .venv/bin/python benchmarks/search_efficiency.py --strategies random,tpe+hyperband,\
        tpe-cost-aware+hyperband                                # an A/B of cost-aware TPE

Every strategy gets the same time budget per seed on the ``digits`` dataset, on the CPU, through
the real controller (:func:`nas.run_search`, inline executor: trials run one after another in the
benchmark's process, with one torch thread each). A search is stopped at the first turn of the
controller's loop after its budget is spent; a trial that finishes after the budget does not count.

What "time" means here: the process CPU time of the search (``time.process_time``: training,
scoring, sampling, the Optuna database) since :func:`run_search` was called, with the data, the
feature extractor and the reference statistics warmed up beforehand so no strategy pays for them.
The machine this was written on has 2 cores shared with other people's test runs, so wall-clock
time was noisy by a factor of up to two; with one torch thread a search uses one core, and its CPU
time is what its wall time would be on an otherwise idle core. Wall time is recorded as well and
reported beside it, with the machine load. Strategies of one seed run interleaved (random, TPE,
TPE + Hyperband, next seed) so that slow phases of the machine hit all of them.

What "FID" means here: the real Inception-v3 weights are not available offline, so scores use the
tiny TorchScript feature extractor of
:func:`trainers.metrics.testing.write_tiny_torchscript_extractor`
(two random-weight strided convolutions and a global pool, 32 features). Its Frechet distance
ranks generators by how far their samples' low-level statistics are from the digits', which is a
proxy for FID, not FID: compare the strategies with it, not the numbers with published FIDs.

The searched space is the DCGAN family scaled to what a CPU trains in seconds (``SPACE_YAML``
below: widths 8-32, batch 32-64, <= 2 D steps), not the built-in ``dcgan`` space whose widest
configurations take minutes per trial on this machine.

Outputs (``--out``, default ``benchmarks/results/search_efficiency``): ``.md`` with the table
(each per-seed median speedup with a bootstrap interval over seeds), the same comparison read at
a quarter, half and three quarters of the budget (a search's first T seconds are a search of
budget T), the command and the machine load; ``.png`` with best FID
against time (median over seeds, band = min..max); and ``.json`` with every trial's finish time
and FID. The last line printed is
``speedup_vs_random: X``: random search's time to its final best divided by TPE + Hyperband's time
to reach that value (median over seeds; 0 when TPE + Hyperband never reached it).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _arguments import refuse_below  # noqa: E402 - the benchmarks' own helper

STRATEGIES: dict[str, tuple[str, str, float | None]] = {
    "random": ("random", "none", None),
    "tpe": ("tpe", "none", None),
    "tpe+hyperband": ("tpe", "hyperband", None),
    "tpe+sh": ("tpe", "successive_halving", None),
    "tpe+median": ("tpe", "median", None),
    "tpe-cost-aware": ("tpe", "none", 1.0),
    "tpe-cost-aware+hyperband": ("tpe", "hyperband", 1.0),
    "evolution": ("evolution", "none", None),
    "evolution+hyperband": ("evolution", "hyperband", None),
}
"""Strategy label -> (sampler, pruner, TPE cost exponent) as the controller names them; a cost
exponent of None is gannas's default (0: cost-blind). The cost-aware ones rate TPE's candidates
by improvement per predicted second (``--cost-exponent 1``). ``evolution`` is gannas's
regularized evolution with its defaults (a population of 10, tournaments of 3)."""
COMPARED = ("random", "tpe", "tpe+hyperband")
"""What a run compares unless ``--strategies`` says otherwise: the three the issue names."""

SPACE_YAML = """\
name: dcgan-cpu
description: DCGAN family scaled for CPU benchmarks (search_efficiency.py)
family: dcgan
generator:
  latent_dim: {type: categorical, choices: [32, 64]}
  depth: {type: int, low: 2, high: 3}
  base_width: {type: int, low: 8, high: 32, step: 8}
  kernel_size: {type: categorical, choices: [3, 4]}
  norm: {type: categorical, choices: [batch, instance, none]}
  activation: {type: categorical, choices: [relu, leaky_relu, silu]}
  upsample: {type: categorical, choices: [deconv, nearest, bilinear]}
discriminator:
  depth: {type: int, low: 2, high: 3}
  width: {type: int, low: 8, high: 32, step: 8}
  spectral_norm: {type: categorical, choices: [true, false]}
  activation: {type: categorical, choices: [leaky_relu, relu]}
training:
  loss: {type: categorical, choices: [bce, hinge, wgan_gp]}
  lr_g: {type: float, low: 1.0e-5, high: 3.0e-3, log: true}
  lr_d: {type: float, low: 1.0e-5, high: 3.0e-3, log: true}
  beta1: {type: categorical, choices: [0.0, 0.5]}
  beta2: {type: categorical, choices: [0.9, 0.999]}
  d_steps: {type: int, low: 1, high: 2}
  batch_size: {type: categorical, choices: [32, 64]}
  gp_weight: {type: float, low: 1.0, high: 20.0, log: true, when: {loss: wgan_gp}}
"""


@dataclass(frozen=True)
class Config:
    """One benchmark setting: the per-trial training and scoring, and the search budget."""

    seeds: tuple[int, ...]
    time_budget_s: float
    """CPU seconds each (strategy, seed) search may spend."""
    trial_budget: int
    """Generator steps per trial."""
    eval_points: int
    fid_samples: int
    real_samples: int
    resolution: int = 16
    strategies: tuple[str, ...] = COMPARED
    ema_decay: float | None = None
    """When set, every trial is scored on an exponential moving average of its generator's
    weights with this decay (``training.ema_decay``), instead of on the last weights."""


QUICK = Config(
    seeds=(0, 1, 2),
    time_budget_s=15.0,
    trial_budget=30,
    eval_points=3,
    fid_samples=64,
    real_samples=500,
    resolution=8,
)
"""A smoke run: a dozen trials per search, so TPE has barely left its random start."""
FULL = Config(
    seeds=tuple(range(10)),
    time_budget_s=120.0,
    trial_budget=60,
    eval_points=3,
    fid_samples=128,
    real_samples=1000,
    resolution=8,
)
"""About 55-90 random-search trials per search (the machine's speed varies by day); digits' own
8x8 resolution keeps a trial near 2 s. Ten seeds: the per-seed median speedup of five seeds moved
between 1.14x and 3.71x with the choice of seeds (seeds 0-4 against 5-9 of one run). 120 CPU s,
not 90: a longer search gives the models more trials to act on; 30 searches of 120 s take about
32 minutes on 2 cores."""


def space_yaml(cfg: Config) -> str:
    """The searched space of a run: :data:`SPACE_YAML`, with the run's fixed EMA decay if any."""
    if cfg.ema_decay is None:
        return SPACE_YAML
    return SPACE_YAML + f"  ema_decay: {{type: categorical, choices: [{cfg.ema_decay!r}]}}\n"


def ema_decay_problem(decay: float | None) -> str | None:
    """What is wrong with an ``--ema-decay`` value (``None``: nothing, or no average asked for)."""
    if decay is None or 0.0 < decay < 1.0:
        return None
    return f"--ema-decay must be between 0 and 1 (exclusive), got {decay}"


def _ema_note(cfg: Config) -> str:
    if cfg.ema_decay is None:
        return ""
    return f", generators scored as an EMA of decay {cfg.ema_decay:g}"


@dataclass
class TrialEvent:
    number: int
    state: str
    fid: float | None
    cpu_s: float
    wall_s: float
    history: dict[int, float] = field(default_factory=dict)
    """FID at each evaluation step (also of pruned trials)."""
    params: dict[str, Any] = field(default_factory=dict)
    """The trial's sampled parameters (empty in results saved before they were recorded)."""


@dataclass
class RunResult:
    strategy: str
    seed: int
    events: list[TrialEvent] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    def within_budget(self, budget: float) -> list[TrialEvent]:
        return [e for e in self.events if e.cpu_s <= budget]

    def best_curve(self, budget: float) -> list[tuple[float, float]]:
        """(time, best FID so far) at each improvement, within the budget."""
        curve: list[tuple[float, float]] = []
        best = math.inf
        for e in self.within_budget(budget):
            if e.fid is not None and e.fid < best:
                best = e.fid
                curve.append((e.cpu_s, best))
        return curve

    def final_best(self, budget: float) -> float:
        curve = self.best_curve(budget)
        return curve[-1][1] if curve else math.inf

    def time_to_reach(self, value: float, budget: float) -> float:
        for t, best in self.best_curve(budget):
            if best <= value:
                return t
        return math.inf


class _BudgetSpent(Exception):
    """Raised from the progress callback between trials to end a search at its time budget."""


def _settings(cfg: Config, extractor: str, space_file: str, seed: int) -> Any:
    from nas.settings import ScoringSettings, WhatToSearch

    return WhatToSearch(
        space=space_file,
        dataset="digits",
        resolution=cfg.resolution,
        budget=cfg.trial_budget,
        eval_points=cfg.eval_points,
        scoring=ScoringSettings(
            fid_samples=cfg.fid_samples,
            real_samples=cfg.real_samples,
            feature_extractor=extractor,
            metrics=("fid",),
            batch_size=128,
        ),
        seed=seed,
    )


def _warm_up(cfg: Config, extractor: str, space_file: str, workdir: Path) -> None:
    """Pay this process's one-time costs before any timed search, so that no search pays them.

    That is: caching the data and the reference statistics, and in every process the imports and
    first calls of torch, the feature extractor, the study database and the samplers. The first
    trial in a fresh process took ~7 CPU s more than the next ones; when only the parent process
    was warmed up, the first search in each ``--jobs`` worker process paid that.
    """
    import optuna

    from nas.controller import run_search
    from nas.settings import HowToSearch, WhereToRun
    from nas.strategies import make_sampler

    db = workdir / f"warmup-{os.getpid()}.db"
    run_search(
        _settings(cfg, extractor, space_file, seed=0),
        HowToSearch(trials=1, study="warm-up", sampler="random", pruner="none"),
        WhereToRun(storage=f"sqlite:///{db}", executor="inline", workers=1),
    )
    # TPE's model code (and what it imports) runs first at its first model-based trial; run it
    # here on a throwaway in-memory study so that TPE's searches do not pay for it mid-search.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=make_sampler("tpe", seed=0, n_startup_trials=1))
    study.optimize(
        lambda t: t.suggest_float("x", 1e-3, 1.0, log=True)
        + t.suggest_int("n", 8, 32, step=8)
        + len(t.suggest_categorical("c", ["a", "bb"])),
        n_trials=3,
    )


def _warm_worker(cfg: Config, extractor: str, space_file: str, workdir: str) -> None:
    """Pool initializer: each ``--jobs`` worker process warms itself up (see :func:`_warm_up`)."""
    _warm_up(cfg, extractor, space_file, Path(workdir))


def run_strategy(
    strategy: str, seed: int, cfg: Config, extractor: str, space_file: str, workdir: str
) -> RunResult:
    """One timed search: ``strategy`` with ``seed`` until ``cfg.time_budget_s`` CPU seconds."""
    import optuna

    from nas.controller import SearchProgress, run_search
    from nas.executors import Finished, InlineExecutor
    from nas.settings import HowToSearch, WhereToRun

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler, pruner, cost_exponent = STRATEGIES[strategy]
    result = RunResult(strategy=strategy, seed=seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()

    class TimedExecutor(InlineExecutor):
        """The inline executor, noting when each trial ended on the search's clocks."""

        def wait(self, timeout: float) -> list[Finished]:
            done = super().wait(timeout)
            for item in done:
                summary = item.summary or {}
                result.events.append(
                    TrialEvent(
                        number=item.job.trial_number,
                        state=str(summary.get("state", "LOST")),
                        fid=None,  # read from the study afterwards (the objective value)
                        cpu_s=time.process_time() - cpu0,
                        wall_s=time.perf_counter() - wall0,
                    )
                )
            return done

    def on_update(finished: int, best: float | None, running: int) -> None:
        if running == 0 and time.process_time() - cpu0 >= cfg.time_budget_s:
            raise _BudgetSpent

    db = Path(workdir) / f"{strategy}-s{seed}.db"
    url = f"sqlite:///{db}"
    try:
        run_search(
            _settings(cfg, extractor, space_file, seed),
            HowToSearch(
                trials=100_000,
                study="bench",
                sampler=sampler,
                pruner=pruner,
                cost_exponent=cost_exponent,
            ),
            WhereToRun(storage=url, executor="inline", workers=1),
            progress=SearchProgress(on_update=on_update),
            executor=TimedExecutor(),
        )
    except _BudgetSpent:
        pass
    result.cpu_s = time.process_time() - cpu0
    result.wall_s = time.perf_counter() - wall0
    study = optuna.load_study(study_name="bench", storage=url)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    for event in result.events:
        trial = by_number[event.number]
        event.state = trial.state.name
        event.history = {int(k): float(v) for k, v in trial.intermediate_values.items()}
        event.params = dict(trial.params)
        if trial.state == optuna.trial.TrialState.COMPLETE and trial.values:
            event.fid = float(trial.values[0])
    return result


def _run_job(args: tuple[str, int, Config, str, str, str]) -> RunResult:
    return run_strategy(*args)


# --- analysis --------------------------------------------------------------------------------


@dataclass
class Summary:
    strategy: str
    trials: float
    pruned: float
    failed: float
    final_best: float
    time_to_random_best: list[float]
    """Per seed: CPU seconds until this strategy's best FID was <= random's final best."""
    speedup: list[float]
    """Per seed: random's time to its final best / this strategy's time to reach it."""


def summarize(runs: Sequence[RunResult], cfg: Config) -> list[Summary]:
    budget = cfg.time_budget_s
    random_runs = {r.seed: r for r in runs if r.strategy == "random"}
    out = []
    for strategy in cfg.strategies:
        mine = [r for r in runs if r.strategy == strategy]
        reach, speed = [], []
        for r in mine:
            ref = random_runs.get(r.seed)
            if ref is None:
                continue
            target = ref.final_best(budget)
            t_ref = ref.time_to_reach(target, budget)
            t = r.time_to_reach(target, budget)
            reach.append(t)
            speed.append(t_ref / t if math.isfinite(t) and t > 0 else 0.0)
        events = [r.within_budget(budget) for r in mine]
        out.append(
            Summary(
                strategy=strategy,
                trials=statistics.median(len(e) for e in events),
                pruned=statistics.median(sum(x.state == "PRUNED" for x in e) for e in events),
                failed=statistics.median(sum(x.state == "FAIL" for x in e) for e in events),
                final_best=statistics.median(r.final_best(budget) for r in mine),
                time_to_random_best=reach,
                speedup=speed,
            )
        )
    return out


LENGTH_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
"""Search lengths, as fractions of the budget, at which the results file re-reads the comparison."""


@dataclass
class AtLength:
    """The comparison read at one search length (the first ``length_s`` CPU s of every run)."""

    length_s: float
    random_trials: float
    """Median number of random-search trials finished within ``length_s``."""
    speedup: dict[str, list[float]]
    """Strategy -> per-seed speedup against random search at this length."""
    curve_speedup: dict[str, float]
    """Strategy -> random's median-curve time to random's median final best / the strategy's."""


def by_search_length(
    runs: Sequence[RunResult], cfg: Config, fractions: Sequence[float] = LENGTH_FRACTIONS
) -> list[AtLength]:
    """The comparison at shorter search lengths: a search's first T seconds are a search of T.

    The speedup against random search depends on how long the searches are: random search's
    final best keeps improving by luck, a model-based search by aiming. This reads it at each
    ``fraction`` of the budget from the same runs.
    """
    random_runs = [r for r in runs if r.strategy == "random"]
    rows = []
    for fraction in fractions:
        length = cfg.time_budget_s * fraction
        at = Config(**{**asdict(cfg), "time_budget_s": length})
        summaries = {s.strategy: s for s in summarize(runs, at) if s.strategy != "random"}
        target = statistics.median(r.final_best(length) for r in random_runs)
        t_random = median_curve_time_to(random_runs, target, length)
        curve = {}
        for strategy in summaries:
            t = median_curve_time_to([r for r in runs if r.strategy == strategy], target, length)
            curve[strategy] = t_random / t if math.isfinite(t) and t > 0 else 0.0
        rows.append(
            AtLength(
                length_s=length,
                random_trials=statistics.median(len(r.within_budget(length)) for r in random_runs),
                speedup={name: s.speedup for name, s in summaries.items()},
                curve_speedup=curve,
            )
        )
    return rows


INTERVAL_LEVEL = 0.9
"""Coverage of the bootstrap interval printed beside each per-seed median speedup."""


def bootstrap_median_interval(
    values: Sequence[float], *, level: float = INTERVAL_LEVEL, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``values`` (seeds resampled with replacement).

    The per-seed speedup swings with which seeds a run happens to have (five-seed medians of one
    run ranged from 1.14x to 3.71x), so the table says how far its median could move with other
    seeds of the same machine and code. Seeded, so a re-rendered table reads the same.
    """
    if not values:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1.0 - level) / 2.0
    lo = medians[int(math.floor(tail * (resamples - 1)))]
    hi = medians[int(math.ceil((1.0 - tail) * (resamples - 1)))]
    return (lo, hi)


def median_curve_time_to(
    runs: Sequence[RunResult], value: float, budget: float, *, points: int = 900
) -> float:
    """When the median over seeds of the best-so-far curve first reaches ``value``."""
    grid = [budget * i / points for i in range(1, points + 1)]
    med, _, _ = _median_curve(runs, budget, grid)
    return next((t for t, v in zip(grid, med) if v <= value), math.inf)


def _median_curve(runs: Sequence[RunResult], budget: float, grid: Sequence[float]) -> Any:
    def at(run: RunResult, t: float) -> float:
        best = math.inf
        for time_s, value in run.best_curve(budget):
            if time_s <= t:
                best = value
        return best

    rows = [[at(r, t) for t in grid] for r in runs]
    med = [statistics.median(col) for col in zip(*rows)]
    lo = [min(col) for col in zip(*rows)]
    hi = [max(col) for col in zip(*rows)]
    return med, lo, hi


def plot(runs: Sequence[RunResult], cfg: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budget = cfg.time_budget_s
    grid = [budget * i / 200 for i in range(1, 201)]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for strategy in cfg.strategies:
        mine = [r for r in runs if r.strategy == strategy]
        med, lo, hi = _median_curve(mine, budget, grid)
        finite = [i for i, v in enumerate(med) if math.isfinite(v)]
        if not finite:
            continue
        xs = [grid[i] for i in finite]
        line = ax.step(xs, [med[i] for i in finite], where="post", label=strategy)[0]
        band = [i for i in finite if math.isfinite(hi[i])]
        ax.fill_between(
            [grid[i] for i in band],
            [lo[i] for i in band],
            [hi[i] for i in band],
            step="post",
            alpha=0.15,
            color=line.get_color(),
        )
    ax.set_yscale("log")
    ax.set_xlabel("search time (CPU seconds, one thread)")
    ax.set_ylabel("best FID so far (tiny-extractor proxy)")
    ax.set_title(f"digits {cfg.resolution}x{cfg.resolution}, median of {len(cfg.seeds)} seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt_times(values: Sequence[float]) -> str:
    return ", ".join("never" if not math.isfinite(v) else f"{v:.0f}" for v in values)


def _median_or_inf(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.inf


def write_markdown(
    runs: Sequence[RunResult],
    summaries: Sequence[Summary],
    cfg: Config,
    path: Path,
    *,
    command: str,
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
    elapsed_s: float,
) -> None:
    budget = cfg.time_budget_s
    lines = [
        "# Search efficiency: random vs TPE vs TPE + Hyperband",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}; load average "
        f"(1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/{load_before[2]:.2f}, "
        f"after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}; the benchmark "
        f"took {elapsed_s / 60:.1f} minutes of wall time.",
        "",
        f"Setting: `digits` at {cfg.resolution}x{cfg.resolution}, space `dcgan-cpu` (see the "
        f"script{_ema_note(cfg)}), {cfg.trial_budget} generator steps per trial with "
        f"{cfg.eval_points} FID "
        f"evaluations, {cfg.fid_samples} fake / {cfg.real_samples} real samples per FID, tiny "
        f"random-weight TorchScript extractor (FID is a proxy), seeds {list(cfg.seeds)}, "
        f"{budget:.0f} CPU seconds per search (inline executor, 1 torch thread). Time is process "
        "CPU time of the search (see the script's docstring for why not wall time).",
        "",
        "| strategy | trials in budget (median) | pruned | failed | final best FID (median) "
        "| CPU s to reach random's final best, per seed | speedup vs random (median) "
        f"| {INTERVAL_LEVEL:.0%} interval of that median (bootstrap over seeds) "
        "| median curve reaches random's median final best at (CPU s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    random_runs = [r for r in runs if r.strategy == "random"]
    random_final = statistics.median(r.final_best(budget) for r in random_runs)
    for s in summaries:
        med_speed = statistics.median(s.speedup) if s.speedup else 0.0
        mine = [r for r in runs if r.strategy == s.strategy]
        t_curve = median_curve_time_to(mine, random_final, budget)
        lo, hi = bootstrap_median_interval(s.speedup)
        lines.append(
            f"| {s.strategy} | {s.trials:g} | {s.pruned:g} | {s.failed:g} | {s.final_best:.5f} "
            f"| {_fmt_times(s.time_to_random_best)} | {med_speed:.2f}x | {lo:.2f}x-{hi:.2f}x "
            f"| {_fmt_times([t_curve])} |"
        )
    lines += [
        "",
        "Speedup = random search's time to its own final best / the strategy's time to reach that "
        "FID (0 when never reached within the budget); for random itself it is 1 by definition. "
        "The interval is a percentile bootstrap of the per-seed median: how far it could move "
        "with another draw of as many seeds. "
        "The last column reads the plot instead: when each strategy's median best-so-far curve "
        f"first reaches random search's median final best ({random_final:.5f}).",
        "",
        "Per run (CPU seconds and wall seconds actually spent, including the trial running when "
        "the budget ran out):",
        "",
        "| strategy | seed | trials | final best FID | time to own best (CPU s) | CPU s | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        best = r.final_best(budget)
        lines.append(
            f"| {r.strategy} | {r.seed} | {len(r.within_budget(budget))} | {best:.5f} "
            f"| {r.time_to_reach(best, budget):.0f} | {r.cpu_s:.0f} | {r.wall_s:.0f} |"
        )
    lines += _length_table(runs, cfg)
    lines += ["", f"![best FID against time]({path.with_suffix('.png').name})", ""]
    path.write_text("\n".join(lines))


def _length_table(runs: Sequence[RunResult], cfg: Config) -> list[str]:
    rows = by_search_length(runs, cfg)
    strategies = [s for s in cfg.strategies if s != "random"]
    if not rows or not strategies:
        return []
    lines = [
        "",
        "By search length: the same runs cut to their first T CPU seconds (a search's first T "
        "seconds are a search of budget T). Per strategy: the per-seed median speedup against "
        "random search, how many seeds reached 3x, and the median-curve ratio (random's "
        "median-curve time to its median final best / the strategy's).",
        "",
        "| search length (CPU s) | random trials (median) | "
        + " | ".join(f"{s}: per-seed median (seeds >= 3x) | {s}: median curve" for s in strategies)
        + " |",
        "|---|---|" + "---|---|" * len(strategies),
    ]
    for row in rows:
        cells = []
        for s in strategies:
            speed = row.speedup.get(s, [])
            med = statistics.median(speed) if speed else 0.0
            hits = sum(x >= 3.0 for x in speed)
            cells.append(f"{med:.2f}x ({hits}/{len(speed)}) | {row.curve_speedup.get(s, 0.0):.1f}x")
        lines.append(f"| {row.length_s:.0f} | {row.random_trials:g} | " + " | ".join(cells) + " |")
    return lines


# --- main ------------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None, *, program: str = "benchmarks/search_efficiency.py"
) -> int:
    """Run (or re-read) the comparison; ``program`` is the script named in the results' command
    line (a wrapper that adds strategies names itself)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Reduced version (< 5 minutes).")
    parser.add_argument("--seeds", type=int, help="Number of seeds (0..N-1).")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="First seed (seeds FIRST..FIRST+N-1): fresh seeds for a confirmation run.",
    )
    parser.add_argument("--time-budget", type=float, help="CPU seconds per search.")
    parser.add_argument("--trial-budget", type=int, help="Generator steps per trial.")
    parser.add_argument("--resolution", type=int, help="Image resolution (8 is digits' own).")
    parser.add_argument("--fid-samples", type=int, help="Fake samples per FID evaluation.")
    parser.add_argument("--eval-points", type=int, help="FID evaluations per trial.")
    parser.add_argument(
        "--ema-decay",
        type=float,
        help="Score each trial's generator as an exponential moving average of its weights with "
        "this decay in (0, 1) (default: the last weights, no average).",
    )
    parser.add_argument("--strategies", help="Comma-separated subset of " + ",".join(STRATEGIES))
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="Searches run at once, one process each (default: 2, or 1 on a 1-CPU machine).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="Output path without suffix (default: benchmarks/results/search_efficiency, "
        "or /tmp/search_efficiency_quick with --quick).",
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="Where to write every trial's finish time and FID (default: the output path .json).",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="Re-analyse --json files instead of running searches. Several files are merged "
        "(runs of other strategies with the same setting); --time-budget then cuts every run "
        "to a shorter budget (a search's first T seconds are a search of budget T).",
    )
    args = parser.parse_args(argv)

    cfg = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.first_seed < 0:
        parser.error(f"--first-seed must be a non-negative integer, got {args.first_seed}")
    # Refused before anything runs or is written: a nonsense run would overwrite the committed
    # results that the README quotes.
    refuse_below(
        parser,
        [
            ("--seeds", args.seeds, 1),
            ("--trial-budget", args.trial_budget, 1),
            ("--fid-samples", args.fid_samples, 2),
            ("--eval-points", args.eval_points, 1),
            ("--jobs", args.jobs, 1),
        ],
    )
    if args.resolution is not None and (args.resolution < 8 or args.resolution % 8):
        # dcgan-cpu's generators upsample x2 up to 3 times from a square stem
        parser.error(f"--resolution must be a positive multiple of 8, got {args.resolution}")
    if args.time_budget is not None and not (
        math.isfinite(args.time_budget) and args.time_budget > 0
    ):
        parser.error(
            f"--time-budget must be a positive number of CPU seconds, got {args.time_budget}"
        )
    if args.seeds or args.first_seed:
        n = args.seeds or len(cfg.seeds)
        overrides["seeds"] = tuple(range(args.first_seed, args.first_seed + n))
    if args.time_budget:
        overrides["time_budget_s"] = args.time_budget
    if args.trial_budget:
        overrides["trial_budget"] = args.trial_budget
    if args.resolution:
        overrides["resolution"] = args.resolution
    if args.fid_samples:
        overrides["fid_samples"] = args.fid_samples
    if problem := ema_decay_problem(args.ema_decay):
        parser.error(problem)
    if args.ema_decay is not None:
        overrides["ema_decay"] = args.ema_decay
    if args.eval_points:
        overrides["eval_points"] = args.eval_points
    if args.strategies:
        chosen = tuple(s.strip() for s in args.strategies.split(",") if s.strip())
        unknown = [s for s in chosen if s not in STRATEGIES]
        if unknown or not chosen:
            parser.error(f"--strategies must be among {list(STRATEGIES)}")
        overrides["strategies"] = chosen
    cfg = Config(**{**asdict(cfg), **overrides})
    out = args.out or (
        Path(tempfile.gettempdir()) / "search_efficiency_quick"
        if args.quick
        else REPO / "benchmarks" / "results" / "search_efficiency"
    )
    out.parent.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    load_before = os.getloadavg()
    if args.from_json:
        cfg, runs, saved = _load_runs(args.from_json)
        if args.time_budget:
            if args.time_budget > cfg.time_budget_s:
                parser.error(
                    f"--time-budget {args.time_budget:g} is longer than the saved runs' "
                    f"{cfg.time_budget_s:g} CPU s"
                )
            cfg = Config(**{**asdict(cfg), "time_budget_s": args.time_budget})
        command = saved.get("command", "")
        load_before = tuple(saved.get("load_before", load_before))
        load_after = tuple(saved.get("load_after", os.getloadavg()))
        elapsed = saved.get("elapsed_s", 0.0)
    else:
        runs = _run_all(cfg, args.jobs)
        elapsed = time.perf_counter() - started
        load_after = os.getloadavg()
        command = f"python {program} " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
    json_path = args.json or (None if args.from_json else out.with_suffix(".json"))
    if json_path:
        json_path.write_text(
            json.dumps(
                {
                    "config": asdict(cfg),
                    "runs": [asdict(r) for r in runs],
                    "command": command.strip(),
                    "load_before": load_before,
                    "load_after": load_after,
                    "elapsed_s": elapsed,
                },
                indent=1,
                default=str,
            )
        )
    if not any(r.strategy == "random" for r in runs):
        # Speedups are against random search: a run without it is one half of a comparison.
        print(f"no random-search runs to compare with; merge {json_path} with a run that has "
              "them: --from-json RANDOM.json THIS.json")  # fmt: skip
        return 0
    summaries = summarize(runs, cfg)
    plot(runs, cfg, out.with_suffix(".png"))
    write_markdown(
        runs,
        summaries,
        cfg,
        out.with_suffix(".md"),
        command=command.strip(),
        load_before=load_before,
        load_after=load_after,
        elapsed_s=elapsed,
    )
    for s in summaries:
        print(
            f"{s.strategy:14s} trials {s.trials:g} pruned {s.pruned:g} best {s.final_best:.5f} "
            f"to random's best: {_fmt_times(s.time_to_random_best)} CPU s"
        )
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.png')}")
    hb = next((s for s in summaries if s.strategy == "tpe+hyperband"), None)
    if hb is None:
        # 0.00 would read as "never reached random's best"; there is nothing to divide by.
        print("speedup_vs_random: n/a (no tpe+hyperband runs)")
        return 0
    speedup = _median_or_inf(hb.speedup) if hb.speedup else 0.0
    print(f"speedup_vs_random: {speedup:.2f}")
    return 0


def _load_runs(paths: Sequence[Path]) -> tuple[Config, list[RunResult], dict[str, Any]]:
    """The runs of one or more ``--json`` files, with their common setting (strategies merged)."""
    cfg: Config | None = None
    runs: list[RunResult] = []
    first: dict[str, Any] = {}
    for path in paths:
        try:
            saved, this, file_runs = _read_saved(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # ValueError covers malformed JSON; KeyError/TypeError a file of another shape.
            raise SystemExit(
                f"{path}: not a saved run of this benchmark ({type(exc).__name__}: {exc})"
            ) from None
        first = first or saved
        if cfg is None:
            cfg = this
        else:
            same = asdict(cfg) | {"strategies": None}, asdict(this) | {"strategies": None}
            if same[0] != same[1]:
                raise SystemExit(f"{path}: its setting differs from {paths[0]}'s; cannot merge")
            extra = tuple(s for s in this.strategies if s not in cfg.strategies)
            cfg = Config(**{**asdict(cfg), "strategies": cfg.strategies + extra})
        runs.extend(file_runs)
    assert cfg is not None
    return cfg, runs, first


def _read_saved(path: Path) -> tuple[dict[str, Any], Config, list[RunResult]]:
    saved = json.loads(path.read_text())
    c = saved["config"]
    cfg = Config(**{**c, "seeds": tuple(c["seeds"]), "strategies": tuple(c["strategies"])})
    runs = []
    for r in saved["runs"]:
        events = [
            TrialEvent(**{**e, "history": {int(k): v for k, v in e["history"].items()}})
            for e in r["events"]
        ]
        runs.append(RunResult(r["strategy"], r["seed"], events, r["cpu_s"], r["wall_s"]))
    return saved, cfg, runs


def _run_all(cfg: Config, n_jobs: int) -> list[RunResult]:
    with tempfile.TemporaryDirectory(prefix="gannas-bench-") as tmp:
        workdir = Path(tmp)
        os.environ["GANNAS_CACHE_DIR"] = str(workdir / "cache")
        from trainers.metrics.testing import write_tiny_torchscript_extractor

        extractor = str(workdir / "tiny.pt")
        write_tiny_torchscript_extractor(extractor, dim=32, seed=0)
        space_file = str(workdir / "dcgan-cpu.yaml")
        Path(space_file).write_text(space_yaml(cfg))
        _warm_up(cfg, extractor, space_file, workdir)
        jobs = [
            (strategy, seed, cfg, extractor, space_file, str(workdir))
            for seed in cfg.seeds
            for strategy in cfg.strategies  # interleaved: each seed runs every strategy in turn
        ]
        runs: list[RunResult] = []
        if n_jobs > 1:
            ctx = multiprocessing.get_context("spawn")
            warm_args = (cfg, extractor, space_file, str(workdir))
            with ctx.Pool(n_jobs, initializer=_warm_worker, initargs=warm_args) as pool:
                for run in pool.imap(_run_job, jobs):
                    runs.append(run)
                    _print_run(run, cfg)
        else:
            for job in jobs:
                run = _run_job(job)
                runs.append(run)
                _print_run(run, cfg)
    return runs


def _print_run(run: RunResult, cfg: Config) -> None:
    budget = cfg.time_budget_s
    events = run.within_budget(budget)
    print(
        f"{run.strategy:14s} seed {run.seed}: {len(events)} trials "
        f"({sum(e.state == 'PRUNED' for e in events)} pruned), best "
        f"{run.final_best(budget):.5f}, {run.cpu_s:.0f} CPU s / {run.wall_s:.0f} wall s",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
