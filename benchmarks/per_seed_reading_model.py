"""What a per-seed 3x asks of a sampler: a model of ``search_efficiency.py``'s speedup reading.

    .venv/bin/python benchmarks/per_seed_reading_model.py \
        --out benchmarks/results/per_seed_reading_model.md
    # the model against saved runs of search_efficiency.py (or of its ceiling and variants)
    .venv/bin/python benchmarks/per_seed_reading_model.py \
        --check benchmarks/results/search_efficiency_ceiling.json

This is a model, not a measurement. It computes what issue 5's reading (random search's time to
its own final best, divided by the strategy's time to reach that FID, median over seeds) would
be for an idealised sampler, so that the measured readings can be put next to it.

The model:

* Random search runs ``N`` trials of equal cost whose outcomes are independent draws. Only their
  ranks matter, so each outcome is its quantile ``u`` in random search's own distribution of
  outcomes (0 = best possible): uniform on (0, 1). Random's final best is the lowest of its
  ``N`` quantiles, ``p``, reached at trial ``pos``.
* The sampler is ``k`` times as likely as random search to draw an outcome that good, on every
  trial from its first: ``P(outcome <= q) = min(1, k q)``. After ``startup`` trials that are
  random search's own first trials (TPE's start-up trials share random search's seed), its
  first trial at or below ``p`` is geometric with success probability ``min(1, k p)``.
* The sampler also has ``N`` trials of the same cost. A seed where it never reaches ``p`` reads
  0, as in the benchmark.

What it leaves out: that pruned trials cost less (Hyperband), that a learning sampler's ``k``
grows during the search, and that trials' costs differ. ``k`` is an average over the search for
a sampler that learns.

What it shows: the per-seed median grows about linearly in ``k`` (0.4 k at ``N`` = 50), so a
3x reading needs ``k`` near 8 from the first trial. The reason is the spread of random search's
own result: ``pos`` is uniform over the budget, and its final best ``p`` is often a far tail
draw (``p`` is close to exponential, with mean ``1/(N + 1)``), which even a sampler ``k`` times
as good takes ``1/(k p)`` trials to match. And ten seeds' median moves widely around its true value: the
table's last columns give that spread.

``--check JSON...`` puts the model next to saved benchmark runs. For each strategy it counts, per
seed, the trials within the budget that ended at or below random search's final best ("hits").
Under the model a search expects ``k N / (N + 1)`` of them, so their mean over seeds estimates
``k`` per random-search trial's worth of time (a Hyperband search runs more, cheaper trials in
that time, which the count already includes). Trials shared with random search at the start are
read off the runs: the leading trials whose first FID equals random search's. The check then
prints the model's per-seed median for that ``k`` next to the measured one. For a sampler with a
fixed region ``k`` is the same all along and the two should agree; for a learning sampler ``k``
grows during the search, so the hits of the first half of the budget are shown as well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class Reading:
    k: float
    per_seed_median: float
    """The per-seed ratio's median over all simulated seeds (the reading's true value)."""
    share_at_3x: float
    """Share of seeds whose ratio is at least 3."""
    share_reached: float
    """Share of seeds where the sampler reaches random's final best within its ``N`` trials."""
    few_seeds_median: tuple[float, float, float]
    """5 %, 50 % and 95 % quantiles of the median of ``seeds`` seeds (what one run reads)."""
    few_seeds_at_3x: float
    """Share of ``seeds``-seed runs whose median is at least 3."""


def per_seed_ratios(
    k: float, n_trials: int, n_seeds: int, rng: np.random.Generator, startup: int = 0
) -> np.ndarray:
    """Simulated per-seed ratios (0 where the sampler never reached random's final best)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if not 0 <= startup < n_trials:
        raise ValueError(f"startup must be in [0, {n_trials}), got {startup}")
    quantiles = rng.random((n_seeds, n_trials))
    pos = quantiles.argmin(axis=1) + 1
    best = quantiles.min(axis=1)
    # After the shared start-up trials the sampler draws on its own: first hit is geometric.
    first_hit = startup + rng.geometric(np.minimum(1.0, k * best))
    if startup:
        # A final best among the start-up trials is the sampler's too, at the same trial.
        first_hit = np.where(pos <= startup, pos, first_hit)
    return np.where(first_hit <= n_trials, pos / first_hit, 0.0)


def reading(
    k: float,
    *,
    n_trials: int,
    seeds: int,
    startup: int = 0,
    sims: int = 20_000,
    seed: int = 0,
) -> Reading:
    rng = np.random.default_rng(seed)
    ratios = per_seed_ratios(k, n_trials, sims * seeds, rng, startup)
    runs = np.median(ratios.reshape(sims, seeds), axis=1)
    lo, mid, hi = np.quantile(runs, [0.05, 0.5, 0.95])
    return Reading(
        k=k,
        per_seed_median=float(np.median(ratios)),
        share_at_3x=float(np.mean(ratios >= 3)),
        share_reached=float(np.mean(ratios > 0)),
        few_seeds_median=(float(lo), float(mid), float(hi)),
        few_seeds_at_3x=float(np.mean(runs >= 3)),
    )


def k_for(target: float, *, n_trials: int, startup: int = 0, sims: int = 20_000) -> float:
    """The smallest ``k`` (to 1 %) whose per-seed median reaches ``target``, by bisection."""
    lo, hi = 1.0, 2.0

    def median(k: float) -> float:
        return reading(k, n_trials=n_trials, seeds=1, startup=startup, sims=sims).per_seed_median

    while median(hi) < target:
        lo, hi = hi, hi * 2
        if hi > 1e4:
            raise ValueError(f"no k up to 1e4 reaches a per-seed median of {target}")
    while hi / lo > 1.01:
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if median(mid) < target else (lo, mid)
    return hi


@dataclass(frozen=True)
class Check:
    strategy: str
    seeds: int
    random_trials: float
    """Random search's trials within the budget (median over seeds): the model's ``N``."""
    shared_startup: int
    """Leading trials shared with random search (median over seeds)."""
    hits: float
    """Trials within the budget at or below random's final best, mean over seeds."""
    first_half_hits: float
    """The same, within the first half of the budget."""
    k: float
    predicted: float | None
    """The model's per-seed median for ``k`` (``None`` when no seed had a hit)."""
    measured: float
    """The benchmark's per-seed median speedup."""


def shared_start(random_events: Sequence[Any], events: Sequence[Any]) -> int:
    """How many leading trials two searches share: their first reported FIDs are equal.

    Shared start-up trials have the same parameters and training seed, so their training and
    FIDs are identical; a pruned copy still reports the same first FID.
    """
    n = 0
    for a, b in zip(random_events, events):
        first_a = a.history[min(a.history)] if a.history else a.fid
        first_b = b.history[min(b.history)] if b.history else b.fid
        if first_a is None or first_a != first_b:
            break
        n += 1
    return n


def check(runs: Sequence[Any], cfg: Any, sims: int = 20_000) -> list[Check]:
    """The model's per-seed median next to the measured one, for each strategy of ``runs``."""
    import statistics

    import search_efficiency as bench

    budget = cfg.time_budget_s
    random_runs = {r.seed: r for r in runs if r.strategy == "random"}
    measured = {s.strategy: s.speedup for s in bench.summarize(runs, cfg)}
    out = []
    for strategy in cfg.strategies:
        if strategy == "random":
            continue
        hits, early, n_random, shared = [], [], [], []
        for run in (r for r in runs if r.strategy == strategy and r.seed in random_runs):
            ref = random_runs[run.seed]
            target = ref.final_best(budget)
            done = [e for e in run.within_budget(budget) if e.fid is not None and e.fid <= target]
            hits.append(len(done))
            early.append(sum(e.cpu_s <= budget / 2 for e in done))
            n_random.append(len(ref.within_budget(budget)))
            shared.append(shared_start(ref.events, run.events))
        if not hits or not measured.get(strategy):
            continue
        n = statistics.median(n_random)
        startup = int(statistics.median(shared))
        mean_hits = statistics.fmean(hits)
        k = mean_hits * (n + 1) / n
        predicted = None
        if k > 0:
            predicted = reading(
                k, n_trials=round(n), seeds=1, startup=min(startup, round(n) - 1), sims=sims
            ).per_seed_median
        out.append(
            Check(
                strategy=strategy,
                seeds=len(hits),
                random_trials=n,
                shared_startup=startup,
                hits=mean_hits,
                first_half_hits=statistics.fmean(early),
                k=k,
                predicted=predicted,
                measured=statistics.median(measured[strategy]),
            )
        )
    return out


def check_markdown(checks: Sequence[Check], sources: Sequence[str]) -> str:
    lines = [
        f"Model against {', '.join(f'`{s}`' for s in sources)}:",
        "",
        (
            "| strategy | seeds | random's trials | shared start-up | hits per search "
            "(first half) | k | model's per-seed median | measured |"
        ),
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for c in checks:
        predicted = "n/a" if c.predicted is None else f"{c.predicted:.2f}x"
        lines.append(
            f"| {c.strategy} | {c.seeds} | {c.random_trials:g} | {c.shared_startup} "
            f"| {c.hits:.1f} ({c.first_half_hits:.1f}) | {c.k:.1f} | {predicted} "
            f"| {c.measured:.2f}x |"
        )
    return "\n".join([*lines, ""])


def markdown(rows: Sequence[Reading], *, n_trials: int, seeds: int, startup: int, command: str,
             k_at_3: float) -> str:  # fmt: skip
    lines = [
        "# What a per-seed reading asks of a sampler (a model, not a measurement)",
        "",
        f"`{command}`",
        "",
        (
            f"Random search: {n_trials} trials of equal cost. The sampler: {startup} start-up "
            f"trials shared with random search, then every trial k times as likely as random "
            f"search to be at or below random's final best; {n_trials} trials in all. "
            f"See the script's docstring for what the model leaves out."
        ),
        "",
        (
            f"| k | per-seed median | seeds at >= 3x | seeds reached | median of {seeds} seeds: "
            f"5 % / 50 % / 95 % | runs of {seeds} seeds reading >= 3x |"
        ),
        "|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lo, mid, hi = r.few_seeds_median
        lines.append(
            f"| {r.k:g} | {r.per_seed_median:.2f}x | {r.share_at_3x:.0%} | {r.share_reached:.0%} "
            f"| {lo:.2f}x / {mid:.2f}x / {hi:.2f}x | {r.few_seeds_at_3x:.0%} |"
        )
    lines += [
        "",
        f"A per-seed median of 3x needs k = {k_at_3:.1f} from the sampler's first trial on.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="Random search's trials (N).")
    parser.add_argument("--seeds", type=int, default=10, help="Seeds in one benchmark run.")
    parser.add_argument("--startup", type=int, default=0, help="Start-up trials shared.")
    parser.add_argument("--k", default="1,2,3,4,6,8,12,16", help="Comma-separated k values.")
    parser.add_argument("--out", type=Path, help="Markdown file to write.")
    parser.add_argument(
        "--check",
        type=Path,
        nargs="+",
        metavar="JSON",
        help="Saved runs of search_efficiency.py to put the model next to (merged, as its "
        "--from-json does).",
    )
    args = parser.parse_args(argv)
    if args.check:
        import search_efficiency as bench

        cfg, runs, _ = bench._load_runs(args.check)
        if not any(r.strategy == "random" for r in runs):
            parser.error("the saved runs have no random search to compare with")
        text = check_markdown(check(runs, cfg), [str(p) for p in args.check])
        print(text)
        if args.out:
            args.out.write_text(text)
        return 0
    try:
        ks = [float(v) for v in args.k.split(",") if v.strip()]
    except ValueError:
        parser.error(f"--k must be comma-separated numbers, got {args.k!r}")
    if not ks or any(k <= 0 for k in ks):
        parser.error(f"--k values must be positive, got {args.k!r}")
    if args.trials < 2:
        parser.error(f"--trials must be at least 2, got {args.trials}")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    if not 0 <= args.startup < args.trials:
        parser.error(f"--startup must be in [0, {args.trials}), got {args.startup}")
    rows = [reading(k, n_trials=args.trials, seeds=args.seeds, startup=args.startup) for k in ks]
    command = "python benchmarks/per_seed_reading_model.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    text = markdown(
        rows,
        n_trials=args.trials,
        seeds=args.seeds,
        startup=args.startup,
        command=command.strip(),
        k_at_3=k_for(3.0, n_trials=args.trials, startup=args.startup),
    )
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
