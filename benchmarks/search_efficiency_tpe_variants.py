"""TPE settings other than gannas's, run through ``search_efficiency.py`` as extra strategies.

    .venv/bin/python benchmarks/search_efficiency_tpe_variants.py --first-seed 20 \
        --strategies random,tpe+hyperband,tpe-univariate+hyperband,tpe-ei128+hyperband,\
tpe-gamma25+hyperband --out benchmarks/results/search_efficiency_tpe_variants

Every option of ``search_efficiency.py`` works here; this script only adds the strategies of
:data:`TPE_VARIANTS`, each TPE + Hyperband with some of TPESampler's keyword arguments changed
from what :func:`nas.strategies.make_sampler` passes. They answer whether another TPE setting
reaches random search's final best sooner than gannas's default, without a user-facing option for
settings the measurements did not choose. The override is scoped to the one search that runs
it (:func:`tpe_options`); the warm-up and every other strategy use gannas's own TPE.

One strategy is not TPE: ``gp+hyperband`` puts Optuna's Gaussian-process sampler where gannas's
TPE would be (:func:`sampler_instead_of_tpe`), as a reference for whether what limits the
per-seed speedup is TPE's or the benchmark's.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_efficiency as bench  # noqa: E402 - after the path set-up, as a script

from optuna.samplers import BaseSampler, GPSampler  # noqa: E402

from nas import strategies  # noqa: E402


def _quarter(n: int) -> int:
    # Optuna's default is min(ceil(0.1 n), 25): a single "good" trial up to the 10th trial.
    return min(math.ceil(0.25 * n), 25)


TPE_VARIANTS: dict[str, dict[str, Any]] = {
    # Independent TPE: one density ratio per parameter, which learns a parameter's good values
    # from every trial instead of from whole good configurations.
    "tpe-univariate+hyperband": {"multivariate": False, "group": False},
    # 128 candidates per proposal instead of 24: more exploitation of the density ratio.
    "tpe-ei128+hyperband": {"n_ei_candidates": 128},
    # The best quarter of trials form the "good" density instead of the best tenth.
    "tpe-gamma25+hyperband": {"gamma": _quarter},
    # Two random start-up trials instead of three: 3 found random's final best sooner than 5
    # (search_efficiency_startup_ab.md), by more than the two trials' time.
    "tpe-2-startup+hyperband": {"n_startup_trials": 2},
    # A tenth of the prior's weight: with few trials the uniform prior dominates TPE's densities
    # (a categorical value seen once in the good group gets about (1/3 + 1) / 2 of the good
    # density with weight 1, and 0.94 with 0.1), so TPE concentrates on what it found sooner.
    "tpe-prior0.1+hyperband": {"prior_weight": 0.1},
}
"""Strategy label -> TPESampler keyword arguments that replace gannas's for that strategy."""


@contextmanager
def tpe_options(overrides: Mapping[str, Any]) -> Iterator[None]:
    """Within the block, ``make_sampler("tpe", ...)`` builds TPE with ``overrides`` applied."""
    original = strategies._TPESampler

    class _Variant(original):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{**kwargs, **overrides})

    strategies._TPESampler = _Variant  # type: ignore[misc]
    try:
        yield
    finally:
        strategies._TPESampler = original  # type: ignore[misc]


def _gp(opts: Any) -> BaseSampler:
    # The same number of random start-up trials as gannas's TPE; Optuna's GP models completed
    # trials only (pruned ones do not enter it) and samples gp_weight, which only wgan_gp has,
    # independently.
    return GPSampler(seed=opts.seed, n_startup_trials=opts.n_startup_trials)


OTHER_SAMPLERS: dict[str, Callable[[Any], BaseSampler]] = {"gp+hyperband": _gp}
"""Strategy label -> builder of a sampler used instead of TPE (from make_sampler's options)."""


@contextmanager
def sampler_instead_of_tpe(builder: Callable[[Any], BaseSampler]) -> Iterator[None]:
    """Within the block, ``make_sampler("tpe", ...)`` returns ``builder(options)`` instead."""
    original = strategies._SAMPLERS["tpe"]
    strategies._SAMPLERS["tpe"] = builder
    try:
        yield
    finally:
        strategies._SAMPLERS["tpe"] = original


_run_strategy = bench.run_strategy


def run_strategy(strategy: str, seed: int, *args: Any) -> bench.RunResult:
    """``search_efficiency.run_strategy``, with the strategy's TPE options or sampler in force."""
    if strategy in OTHER_SAMPLERS:
        with sampler_instead_of_tpe(OTHER_SAMPLERS[strategy]):
            return _run_strategy(strategy, seed, *args)
    with tpe_options(TPE_VARIANTS.get(strategy, {})):
        return _run_strategy(strategy, seed, *args)


for _label in [*TPE_VARIANTS, *OTHER_SAMPLERS]:
    bench.STRATEGIES[_label] = ("tpe", "hyperband", None)
# The pool's jobs call search_efficiency._run_job, which looks run_strategy up in its module.
bench.run_strategy = run_strategy


if __name__ == "__main__":
    sys.exit(bench.main(program="benchmarks/search_efficiency_tpe_variants.py"))
