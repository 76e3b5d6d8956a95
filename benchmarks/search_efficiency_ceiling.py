"""What would knowing the good region buy? A reference for ``search_efficiency.py``'s speedup.

    # where the good trials lie: two long random searches on seeds the comparison never uses
    .venv/bin/python benchmarks/search_efficiency.py --strategies random --first-seed 100 \
        --seeds 2 --time-budget 330 --out benchmarks/results/search_landscape
    .venv/bin/python benchmarks/search_efficiency_ceiling.py \
        --landscape benchmarks/results/search_landscape.json
    # the oracle against random search and TPE + Hyperband on the compared seeds (~43 min)
    .venv/bin/python benchmarks/search_efficiency_ceiling.py --first-seed 40 \
        --strategies random,tpe+hyperband,oracle-region,oracle-region+hyperband \
        --out benchmarks/results/search_efficiency_ceiling
    # with the narrow oracle too (seeds 60-69, ~42 min with --jobs 2; 70-79 without the box)
    .venv/bin/python benchmarks/search_efficiency_ceiling.py --first-seed 60 --jobs 2 \
        --strategies random,tpe+hyperband,oracle-region+hyperband,oracle-narrow+hyperband \
        --out benchmarks/results/search_efficiency_ceiling_seeds_60_69

Issue 5's goal reads per seed: random search's time to its own final best FID, divided by TPE +
Hyperband's time to reach that FID, median over seeds, at least 3. Every TPE setting measured
stayed at or below about 2x. This script asks whether the limit is the sampler's at all.

``oracle-region`` is handed, for free, what a search would have to learn: from its first trial
on it samples only inside :data:`REGION`, the part of the space where the landscape's best
trials lie (read off two long random searches on seeds the comparison does not use), and the
rest of the space at random. ``oracle-region+hyperband`` adds gannas's Hyperband pruner. They
are references, not strategies: no search knows the region before it starts. They bound what
learning the box faster can buy, not what every sampler can reach: one that concentrates
further can end lower. ``oracle-narrow+hyperband`` is such a sampler: it also keeps only some
values of three categorical parameters (:data:`NARROW_CHOICES`), a region a third the size.

The box alone stayed short of 3x (2.38x per seed over seeds 40-69); the narrow region read 9.9x
and 19.1x on seeds 60-69 and 70-79. So neither how early random search happens to draw its best nor the luck of
training seeds (``benchmarks/seed_noise.py``: one architecture's FID spans up to 2x over five
training seeds) caps the per-seed reading: what a sampler needs is to concentrate that hard
from its first trials.

The ``contact-*`` strategies (:class:`ContactSampler`) ask how much of that a search could learn
by itself: each is random search until one of its trials lands in a region, and from then on
samples only inside it, as if one trial, whatever its FID, were enough to know the region is
good. With stages from coarse to fine (``lr_g`` first, then both learning rates, the box, the
narrow region) each contact narrows the search further. ``oracle-lr-g+hyperband`` is told only
the bound on ``lr_g``. These were screened on the surrogate of
``search_efficiency_surrogate.py``, not run for real.

``--landscape JSON`` writes, for saved random-search runs, which parameter values the best tenth
of trials have, and how much of the search and of that best tenth lies inside :data:`REGION`.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_efficiency_tpe_variants as variants  # noqa: E402 - after the path set-up

from optuna.distributions import (  # noqa: E402
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler  # noqa: E402
from optuna.study import Study  # noqa: E402
from optuna.trial import FrozenTrial  # noqa: E402

bench = variants.bench

REGION: dict[str, tuple[float, float]] = {
    "training.lr_g": (2e-4, 3e-3),
    "training.lr_d": (1e-4, 3e-3),
    "generator.depth": (2, 2),
    "discriminator.width": (16, 32),
}
"""Parameter -> inclusive (low, high) inside which the oracle samples (highs: the space's own).

Read off ``benchmarks/results/search_landscape.json`` (274 completed random trials of seeds 100
and 101; ``--landscape`` writes ``search_landscape.md``): every trial in the best tenth had
``lr_g`` of at least 2.3e-4; a generator of depth 2 was four times as likely to end there as
one of depth 3, and no trial with a discriminator 8 wide did. Those four bounds hold 12 % of the
trials, 67 % of the best tenth and all four trials in the best 1.4 % (random search's final
best in a 120 s search is the best of 50-70 trials). In a scratch run the region was not
read from (seed 200, 330 CPU s, 149 trials; not committed) they held 13 % of the trials and all
three in its best 1.4 %."""


NARROW_CHOICES: dict[str, tuple[Any, ...]] = {
    "generator.norm": ("batch", "instance"),
    "training.loss": ("bce", "hinge"),
    "training.beta1": (0.0,),
}
"""Categorical parameter -> the choices ``oracle-narrow`` keeps, on top of :data:`REGION`.

The values whose share in the landscape's best tenth was under half the other values' (no
normalisation: 3 of 93 trials against 11/86 and 13/95; WGAN-GP: 4/82 against 12/99 and 11/93;
``beta1`` 0.5: 8/135 against 19/139). Read off the same landscape as :data:`REGION`. With them
the region is 3.6 % of the 274 trials (10), holding 3 of the best 4 and 6 of the best 14: in
the best 4 it is about 2.5 times as dense as :data:`REGION` (12 %; 4 of 4), in the best 14
about 1.5 times (13 of 14).
Ten trials are few: this is a sharper guess at the good region, not a measured one. The
generator's activation (SiLU: 17/87 against 6/92 and 4/95) is left open because narrowing it too
leaves 4 trials."""


def in_region(
    params: Mapping[str, Any],
    region: Mapping[str, tuple[float, float]] = REGION,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> bool:
    """Whether a trial's parameters lie inside ``region`` and ``choices`` (a missing one does not)."""
    inside = all(name in params and lo <= params[name] <= hi for name, (lo, hi) in region.items())
    return inside and all(
        name in params and params[name] in allowed for name, allowed in (choices or {}).items()
    )


def narrowed(distribution: BaseDistribution, bounds: tuple[float, float]) -> BaseDistribution:
    """``distribution`` cut to ``bounds`` within its own range, keeping its log scale and step."""
    lo, hi = bounds
    if isinstance(distribution, IntDistribution):
        low, high = max(distribution.low, int(lo)), min(distribution.high, int(hi))
        if distribution.step != 1:
            # keep the grid of the original distribution: low + k * step
            first = distribution.low + math.ceil((low - distribution.low) / distribution.step) * (
                distribution.step
            )
            low, high = first, first + (high - first) // distribution.step * distribution.step
        return IntDistribution(low, high, log=distribution.log, step=distribution.step)
    if isinstance(distribution, FloatDistribution) and distribution.step is None:
        low, high = max(distribution.low, lo), min(distribution.high, hi)
        return FloatDistribution(low, high, log=distribution.log)
    raise TypeError(f"cannot narrow {distribution!r}")


def narrowed_choices(
    distribution: BaseDistribution, allowed: Sequence[Any]
) -> CategoricalDistribution:
    """A categorical ``distribution`` cut to the choices in ``allowed``, in its own order."""
    if not isinstance(distribution, CategoricalDistribution):
        raise TypeError(f"cannot narrow {distribution!r} to choices")
    kept = tuple(c for c in distribution.choices if c in allowed)
    if not kept:
        raise ValueError(f"none of {list(allowed)} is among {list(distribution.choices)}")
    return CategoricalDistribution(kept)


class RegionSampler(RandomSampler):
    """Random search that samples the parameters of ``region`` (numeric bounds) and ``choices``
    (categorical values kept) inside them, the rest anywhere."""

    def __init__(
        self,
        region: Mapping[str, tuple[float, float]],
        *,
        seed: int | None,
        choices: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        super().__init__(seed=seed)
        self._region = dict(region)
        self._choices = dict(choices or {})

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        if param_name in self._region:
            param_distribution = narrowed(param_distribution, self._region[param_name])
        elif param_name in self._choices:
            # The value comes back as the choice itself, which the trial stores as its index
            # among the space's full choices: the study sees an ordinary trial of the space.
            param_distribution = narrowed_choices(param_distribution, self._choices[param_name])
        return super().sample_independent(study, trial, param_name, param_distribution)


def _oracle(opts: Any) -> BaseSampler:
    # No random start-up trials: the oracle has nothing to learn.
    return RegionSampler(REGION, seed=opts.seed)


def _narrow_oracle(opts: Any) -> BaseSampler:
    return RegionSampler(REGION, seed=opts.seed, choices=NARROW_CHOICES)


LR_G: dict[str, tuple[float, float]] = {"training.lr_g": REGION["training.lr_g"]}
""":data:`REGION`'s bound on the generator's learning rate alone (about half the space)."""
RATES: dict[str, tuple[float, float]] = {
    name: REGION[name] for name in ("training.lr_g", "training.lr_d")
}
""":data:`REGION`'s two learning-rate bounds."""


def _lr_g_oracle(opts: Any) -> BaseSampler:
    return RegionSampler(LR_G, seed=opts.seed)


CEILINGS: dict[str, tuple[str, Any]] = {
    "oracle-region": ("none", _oracle),
    "oracle-region+hyperband": ("hyperband", _oracle),
    "oracle-narrow+hyperband": ("hyperband", _narrow_oracle),
    "oracle-lr-g+hyperband": ("hyperband", _lr_g_oracle),
}
"""Strategy label -> (gannas pruner, sampler builder). ``oracle-region*`` sample with
:class:`RegionSampler` over :data:`REGION`; ``oracle-narrow+hyperband`` over :data:`REGION` and
:data:`NARROW_CHOICES`; ``oracle-lr-g+hyperband`` knows only ``REGION``'s bound on ``lr_g``."""

# --- oracles that learn the region on contact ----------------------------------------------

Stage = tuple[Mapping[str, tuple[float, float]], Mapping[str, Sequence[Any]]]
"""A region: numeric bounds (as :data:`REGION`) and categorical choices kept (as
:data:`NARROW_CHOICES`)."""


class ContactSampler(RegionSampler):
    """Random search until a finished trial lands in one of ``stages``; from then on it samples
    inside the finest stage that some finished trial lies in.

    A reference for a learner without prior knowledge: it is not told the region before it
    starts, only the moment its own search first touches it, and it then knows at once, whatever
    that trial's FID was, that the whole stage is good. No sampler learns a region from one noisy
    trial, so it is generous there; it is not a strict bound, since until the first contact it
    explores at random, which a learner may do better. Until then it draws exactly what random
    search with the same seed draws (one random generator, consumed in the same order).

    Args:
        stages: Regions from coarse to fine; a finer stage should lie inside the coarser ones.
        seed: Seed of the random draws.
    """

    def __init__(self, stages: Sequence[Stage], *, seed: int | None) -> None:
        super().__init__({}, seed=seed)
        self._stages = [(dict(region), dict(choices)) for region, choices in stages]
        self._staged_for: int | None = None  # the trial whose stage _region/_choices hold

    def _stage(self, study: Study) -> Stage:
        finished = study._get_trials(deepcopy=False, states=variants.FINISHED, use_cache=False)
        current: Stage = ({}, {})
        for region, choices in self._stages:
            if any(in_region(t.params, region, choices) for t in finished):
                current = (region, choices)
        return current

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        # One stage per trial, read at its first parameter: every parameter of a trial is drawn
        # in the same stage even if another trial finishes meanwhile, and the study's trials are
        # read once per trial rather than once per parameter.
        if self._staged_for != trial.number:
            self._region, self._choices = self._stage(study)
            self._staged_for = trial.number
        return super().sample_independent(study, trial, param_name, param_distribution)


BOX: Stage = (REGION, {})
NARROW: Stage = (REGION, NARROW_CHOICES)
CONTACT_STAGES: dict[str, list[Stage]] = {
    "contact-box+hyperband": [BOX],
    "contact-narrow+hyperband": [NARROW],
    "contact-box-narrow+hyperband": [BOX, NARROW],
    "contact-lr-box+hyperband": [(LR_G, {}), (RATES, {}), BOX],
    "contact-lr-box-narrow+hyperband": [(LR_G, {}), (RATES, {}), BOX, NARROW],
}
"""Strategy label -> the stages its :class:`ContactSampler` learns, coarse to fine. The
``contact-lr-*`` ones learn a single bound first (``lr_g`` >= 2e-4, about half the space), so
their first contact is nearly certain: that is close to being told the bound. Their readings show
how much a sampler that narrowed one parameter group at a time, each from its first trial there,
would buy."""


def _contact(stages: Sequence[Stage]) -> Any:
    return lambda opts: ContactSampler(stages, seed=opts.seed)


_CONTACTS = {label: ("hyperband", _contact(stages)) for label, stages in CONTACT_STAGES.items()}
for _label, (_pruner, _builder) in {**CEILINGS, **_CONTACTS}.items():
    # variants.run_strategy puts OTHER_SAMPLERS' builders where TPE would be, for that search only.
    variants.OTHER_SAMPLERS[_label] = _builder
    bench.STRATEGIES[_label] = ("tpe", _pruner, None)


# --- the landscape ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Landscape:
    trials: int
    top_trials: int
    top_threshold: float
    """FID at or below which a trial is in the best tenth."""
    categorical: dict[str, dict[str, tuple[int, int]]]
    """Parameter -> value -> (trials in the best tenth, trials) for parameters with few values."""
    numeric: dict[str, tuple[float, float, float]]
    """Parameter -> (min, median, max) over the best tenth, for parameters with many values."""
    region: dict[str, tuple[float, float]]
    """The region the two shares below are of (:data:`REGION` unless told otherwise)."""
    choices: dict[str, tuple[Any, ...]]
    """Categorical values the region keeps, on top of ``region`` (none unless told otherwise)."""
    region_share: float
    """Share of all completed trials inside ``region``."""
    region_top_share: float
    """Share of the best tenth inside ``region``."""


def landscape(
    runs: Sequence[Any],
    region: Mapping[str, tuple[float, float]] = REGION,
    top: float = 0.1,
    choices: Mapping[str, Sequence[Any]] | None = None,
) -> Landscape:
    """Where the best ``top`` share of the completed trials of ``runs`` lie in the space."""
    done = [e for r in runs for e in r.events if e.fid is not None and e.params]
    if not done:
        raise ValueError("no completed trials with recorded parameters in these runs")
    done.sort(key=lambda e: e.fid)
    n_top = max(1, round(top * len(done)))
    best = done[:n_top]
    names = sorted({name for e in done for name in e.params})
    categorical: dict[str, dict[str, tuple[int, int]]] = {}
    numeric: dict[str, tuple[float, float, float]] = {}
    for name in names:
        values = [e.params[name] for e in done if name in e.params]
        if len(set(values)) <= 4:
            everywhere = Counter(str(v) for v in values)
            among_best = Counter(str(e.params[name]) for e in best if name in e.params)
            categorical[name] = {v: (among_best[v], n) for v, n in sorted(everywhere.items())}
        else:
            good = [float(e.params[name]) for e in best if name in e.params]
            if good:
                numeric[name] = (min(good), statistics.median(good), max(good))
    return Landscape(
        trials=len(done),
        top_trials=n_top,
        top_threshold=best[-1].fid,
        categorical=categorical,
        numeric=numeric,
        region=dict(region),
        choices={name: tuple(allowed) for name, allowed in (choices or {}).items()},
        region_share=sum(in_region(e.params, region, choices) for e in done) / len(done),
        region_top_share=sum(in_region(e.params, region, choices) for e in best) / n_top,
    )


def _region_text(land: Landscape) -> str:
    parts = [f"`{k}` in [{lo:g}, {hi:g}]" for k, (lo, hi) in land.region.items()]
    parts += [
        f"`{k}` in {{{', '.join(str(c) for c in allowed)}}}" for k, allowed in land.choices.items()
    ]
    return ", ".join(parts)


def landscape_markdown(
    land: Landscape, command: str, runs_command: str = "", narrow: Landscape | None = None
) -> str:
    lines = [
        "# Where the best trials of random search lie (`dcgan-cpu`, digits 8x8)",
        "",
        f"`{command}`" + (f", reading the runs of `{runs_command}`" if runs_command else ""),
        "",
        (
            f"{land.trials} completed random-search trials; the best tenth ({land.top_trials} "
            f"trials) ended at FID <= {land.top_threshold:.4f}."
        ),
        "",
        "| parameter | value: trials in the best tenth / trials |",
        "|---|---|",
    ]
    for name, counts in land.categorical.items():
        cells = ", ".join(f"{v}: {good}/{n}" for v, (good, n) in counts.items())
        lines.append(f"| `{name}` | {cells} |")
    lines += ["", "| parameter | best tenth: min / median / max |", "|---|---|"]
    for name, (lo, mid, hi) in land.numeric.items():
        lines.append(f"| `{name}` | {lo:.3g} / {mid:.3g} / {hi:.3g} |")
    lines += [
        "",
        (
            f"The oracle's region ({_region_text(land)}) holds {land.region_share:.0%} of the "
            f"trials and {land.region_top_share:.0%} of the best tenth."
        ),
    ]
    if narrow is not None:
        lines += [
            "",
            (
                f"The narrow oracle's region ({_region_text(narrow)}) holds "
                f"{narrow.region_share:.1%} of the trials and {narrow.region_top_share:.0%} of "
                "the best tenth."
            ),
        ]
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--landscape" not in args:
        return bench.main(args, program="benchmarks/search_efficiency_ceiling.py")
    parser = argparse.ArgumentParser(description="Where the best trials of saved runs lie.")
    parser.add_argument("--landscape", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, help="Markdown file (default: JSON's name, .md).")
    parsed = parser.parse_args(args)
    _, runs, saved = bench._load_runs(parsed.landscape)
    random_runs = [r for r in runs if r.strategy == "random"]
    try:
        land = landscape(random_runs)
    except ValueError as exc:
        parser.error(str(exc))
    narrow = landscape(random_runs, choices=NARROW_CHOICES)
    out = parsed.out or parsed.landscape[0].with_suffix(".md")
    command = "python benchmarks/search_efficiency_ceiling.py " + " ".join(args)
    out.write_text(landscape_markdown(land, command, saved.get("command", ""), narrow))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
