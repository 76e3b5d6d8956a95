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
per-seed speedup is TPE's or the benchmark's. The :data:`RUNG_MODELS` are gannas's TPE whose
model reads every trial's FID at one evaluation step, as BOHB's does (:func:`tpe_reading` over a
:class:`StudyView`), instead of completed trials' final FIDs. The :data:`EVOLUTION_VARIANTS` put
gannas's regularized evolution, with other population and tournament sizes than its defaults,
where TPE would be.
"""

from __future__ import annotations

import copy
import math
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import search_efficiency as bench  # noqa: E402 - after the path set-up, as a script

from optuna.samplers import BaseSampler, GPSampler  # noqa: E402
from optuna.study import Study  # noqa: E402
from optuna.trial import FrozenTrial, TrialState  # noqa: E402

from nas import strategies  # noqa: E402
from nas.samplers import RegularizedEvolutionSampler  # noqa: E402


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
    # Fewer candidates per proposal than 24: less exploitation (1: a draw from the "good"
    # density itself, as Thompson sampling would).
    "tpe-ei1+hyperband": {"n_ei_candidates": 1},
    "tpe-ei8+hyperband": {"n_ei_candidates": 8},
    # One random start-up trial: the model starts after the first result.
    "tpe-1-startup+hyperband": {"n_startup_trials": 1},
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


# --- TPE reading a view of the study ------------------------------------------------------

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
"""The states of a trial that has a result: completed, or pruned with its last FID."""


class StudyView:
    """A study as TPE reads it: its trials (all states) passed through ``transform``, then
    filtered by the states asked for. Everything else is the study's own."""

    def __init__(
        self, study: Study, transform: Callable[[list[FrozenTrial]], list[FrozenTrial]]
    ) -> None:
        self._study, self._transform = study, transform

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _view(self, trials: list[FrozenTrial], states: Any) -> list[FrozenTrial]:
        return [t for t in self._transform(trials) if states is None or t.state in states]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._view(self._study.get_trials(deepcopy=deepcopy), states)

    # TPE reads trials through Study's private, cached accessor; it is wrapped the same way.
    def _get_trials(
        self, deepcopy: bool = True, states: Any = None, use_cache: bool = False
    ) -> list[FrozenTrial]:
        return self._view(self._study._get_trials(deepcopy=deepcopy, use_cache=use_cache), states)


def tpe_reading(view: Callable[[Study], Any]) -> Callable[[Any], BaseSampler]:
    """A builder (from make_sampler's options) of gannas's TPE whose model reads ``view(study)``
    instead of the study; trials are still asked and told through the real study."""

    def build(opts: Any) -> BaseSampler:
        base = strategies._TPESampler

        class TPEReadingView(base):  # type: ignore[misc, valid-type]
            def infer_relative_search_space(self, study: Any, trial: Any) -> Any:
                return super().infer_relative_search_space(view(study), trial)

            def sample_relative(self, study: Any, trial: Any, search_space: Any) -> Any:
                return super().sample_relative(view(study), trial, search_space)

            def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
                return super().sample_independent(view(study), trial, name, dist)

        strategies._TPESampler = TPEReadingView  # type: ignore[misc]
        try:
            return strategies._tpe(opts)
        finally:
            strategies._TPESampler = base  # type: ignore[misc]

    return build


def model_rung(finished: Sequence[FrozenTrial], min_trials: float) -> int | None:
    """The evaluation step TPE models under BOHB's rule: the largest step that at least
    ``min_trials`` finished trials reported an FID at; the first step while none has that many."""
    counts = Counter(step for t in finished for step in t.intermediate_values)
    enough = [step for step, n in counts.items() if n >= min_trials]
    if enough:
        return max(enough)
    return min(counts) if counts else None


def at_model_rung(min_trials: float) -> Callable[[list[FrozenTrial]], list[FrozenTrial]]:
    """Transform for :class:`StudyView`: every finished trial, completed or pruned, becomes a
    completed one valued at its FID of :func:`model_rung`'s step (those that did not reach that
    step are left out); running trials stay as they are."""

    def transform(trials: list[FrozenTrial]) -> list[FrozenTrial]:
        rung = model_rung([t for t in trials if t.state in FINISHED], min_trials)
        out = []
        for t in trials:
            if t.state in FINISHED:
                if rung not in t.intermediate_values:
                    continue
                t = copy.copy(t)
                t.state = TrialState.COMPLETE
                t.values = [t.intermediate_values[rung]]
            out.append(t)
        return out

    return transform


RUNG_MODELS: dict[str, float] = {
    "tpe-rung15-model+hyperband": math.inf,
    "tpe-bohb10-model+hyperband": 10,
    "tpe-bohb16-model+hyperband": 16,
}
"""Strategy label -> ``min_trials`` of a TPE that models one rung, as BOHB does: every trial's FID
at the largest evaluation step that at least that many trials reached (BOHB asks for the number
of parameters + 1, 20 in ``dcgan-cpu``; 16 and 10 switch sooner, as a search of 60-odd trials
needs; ``inf`` always models the first evaluation).

gannas's TPE models completed trials' final FIDs and ranks pruned ones below them, so early on,
when Hyperband has pruned most trials, it learns from few; a rung model learns from all of them,
at the price of a noisier FID (Spearman about 0.8 with the final one at half the budget)."""

EVOLUTION_VARIANTS: dict[str, tuple[int, int]] = {
    "evolution-p3-s3+hyperband": (3, 3),
    "evolution-p5-s2+hyperband": (5, 2),
    "evolution-p5-s5+hyperband": (5, 5),
    "evolution-p10-s10+hyperband": (10, 10),
    "evolution-p20-s5+hyperband": (20, 5),
}
"""Strategy label -> (population, tournament) of gannas's regularized evolution, with Hyperband.
gannas's own (``evolution+hyperband`` in ``search_efficiency.py``) is 10 and 3. A smaller
population starts evolving after fewer random trials; a tournament as large as the population
always mutates the best of the newest trials, a local search around the incumbent."""


def _evolution(population: int, tournament: int) -> Callable[[Any], BaseSampler]:
    def build(opts: Any) -> BaseSampler:
        return RegularizedEvolutionSampler(
            population_size=population, sample_size=tournament, seed=opts.seed
        )

    return build


OTHER_SAMPLERS: dict[str, Callable[[Any], BaseSampler]] = {
    "gp+hyperband": _gp,
    **{
        label: tpe_reading(lambda study, n=n: StudyView(study, at_model_rung(n)))
        for label, n in RUNG_MODELS.items()
    },
    **{label: _evolution(*sizes) for label, sizes in EVOLUTION_VARIANTS.items()},
}
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
