"""How a space is searched: sampler and pruner factories tuned for short, noisy GAN searches.

A gannas search runs tens of trials, each a short GAN training whose FID is noisy and only
available at a few evaluation steps. Optuna's defaults assume hundreds of cheap trials reporting
every epoch, so every default here is chosen for the short case, and each says why.

Pruning in multi-objective studies: Optuna 5 refuses ``Trial.report`` and ``Trial.should_prune``
when a study has more than one direction (both raise ``NotImplementedError``), and its pruners read
``study.direction``, which raises ``RuntimeError`` for such studies. The storage itself keeps
intermediate values for any trial, though. gannas therefore prunes multi-objective studies on the
FIRST objective (FID) alone: the worker writes FID as the intermediate value through
:func:`report_intermediate`, and :func:`should_prune` hands the pruner a single-objective view of
the study (same trials, same storage, only the first direction). The pruned architectures are the
ones whose FID is clearly behind, whatever their cost objectives: a generator that does not
train is not worth a place on a Pareto front.

Optuna 5's TPE has the same blind spot: it ranks pruned trials with ``study.direction`` and so
crashes in a multi-objective study that has pruned trials with intermediate values. The ``tpe``
sampler made here ranks them by the first objective instead. Optuna's default sampler (a plain
``TPESampler``) must therefore never drive a pruned multi-objective gannas study.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)
from optuna.samplers import BaseSampler, GridSampler, NSGAIISampler, RandomSampler, TPESampler
from optuna.storages import BaseStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from gannas.errors import GannasError
from nas.samplers import GridPointsSampler, RegularizedEvolutionSampler
from nas.samplers.cost_model import TrialCostModel

__all__ = [
    "DEFAULT_STARTUP_TRIALS",
    "DEFAULT_TPE_COST_EXPONENT",
    "DEFAULT_TPE_STARTUP_TRIALS",
    "GRID_MAX_POINTS",
    "PRUNER_NAMES",
    "SAMPLER_NAMES",
    "FirstObjectivePruner",
    "hyperband_last_rung",
    "make_pruner",
    "make_sampler",
    "report_intermediate",
    "should_prune",
]

DEFAULT_STARTUP_TRIALS = 10
"""The NSGA-II and evolution population: a search of 30-60 trials cannot spend more than about a
fifth of them on one generation, and fewer than 10 noisy FIDs make a tournament of two."""

DEFAULT_TPE_STARTUP_TRIALS = 3
"""Random trials before TPE starts modelling (Optuna's default is 10). Measured in
``benchmarks/search_efficiency.py`` (TPE + Hyperband, 120 CPU s per search, ~47 random trials):
against 5 start-up trials, over 20 seeds (0-19, two same-day runs,
``benchmarks/results/search_efficiency_startup_ab.md``), 3 reached random search's final best FID
sooner in 12 seeds and later in 5 (3 ties; median paired ratio 1.15x), ended with a better best
FID in 13 (median 0.0036 against 0.0048), and reached 3x random's speed in 7 seeds against 3.
Earlier, 5 had beaten 10 the same way. Random start-up trials are the part of a search that
cannot beat random search, and a search of tens of trials has few to spare. The multivariate
TPE after 3 trials has a "good" group of one trial, but its kernels keep a prior over the whole
space, so it does not collapse onto it."""

DEFAULT_TPE_COST_EXPONENT = 0.0
"""How much TPE weighs a candidate's predicted cost (see :class:`_TPESampler`); 0 ignores it.

Off by default, on measurement. In ``benchmarks/search_efficiency.py`` (10 seeds, 120 CPU s per
search, one day, TPE + Hyperband) an exponent of 1 ran 80 trials per search instead of 57, ended
with a better median best FID (0.0036 against 0.0048; better in 6 seeds, worse in 3), and its
median best-so-far curve reached random search's median final best sooner (23 against 35 CPU s).
But its per-seed time to random search's final best, the benchmark's goal, did not improve
(median speedup 1.53x against 1.56x; faster in 3 of the 9 seeds where either got there). A search
that prefers generators that train fast at a short budget may also hand the final stage
architectures that lose at the full budget, which that benchmark (no final stage) cannot show.
Turn it on (``--cost-exponent 1`` or ``search.cost_exponent`` in the space file) for searches
bounded by time."""

GRID_MAX_POINTS = 100_000
"""Largest grid accepted: GridSampler materialises the whole product, and no GAN search runs
anywhere near this many trials."""


@dataclass(frozen=True, slots=True)
class _SamplerOptions:
    seed: int | None
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None
    n_startup_trials: int
    cost_exponent: float = 0.0


def _tpe(opts: _SamplerOptions) -> BaseSampler:
    # multivariate: GAN hyperparameters interact (lr_g with lr_d, depth with width), and the
    #   univariate TPE cannot see that.
    # group: with conditional parameters (gp_weight only under wgan_gp) the multivariate model
    #   is fitted per group of co-occurring parameters instead of falling back to independent
    #   sampling of everything outside the intersection.
    # constant_liar: several Ray workers ask while others are still training; running trials
    #   count as bad so parallel workers do not all pile onto the same point.
    # Multi-objective studies get MOTPE from the same class.
    with warnings.catch_warnings():
        # ``group`` is marked experimental in Optuna; using it is a deliberate choice.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return _TPESampler(
            n_startup_trials=opts.n_startup_trials,
            multivariate=True,
            group=True,
            constant_liar=True,
            seed=opts.seed,
            cost_exponent=opts.cost_exponent,
        )


class _TPESampler(TPESampler):
    """TPE that accepts pruned trials in multi-objective studies, and can weigh trial cost.

    Optuna 5's TPE ranks pruned trials by their last intermediate value using ``study.direction``,
    which raises ``RuntimeError`` in a multi-objective study: Optuna assumes such studies have no
    intermediate values, but gannas prunes them on FID (see :func:`should_prune`). This sampler
    gives TPE a study whose ``direction`` is the first objective's, so pruned trials are ranked by
    their intermediate FID; completed trials are still ranked on all objectives (``directions``).

    With ``cost_exponent`` > 0 (single-objective studies), TPE's acquisition ``log l(x)/g(x)`` of
    each candidate is lowered by ``cost_exponent * log(predicted seconds per step)``
    (:class:`nas.samplers.cost_model.TrialCostModel`, fitted on the study's finished trials): an
    improvement per second rather than per trial. The candidates are still drawn from TPE's
    ``l(x)``, so the cost only decides among points TPE already finds promising.
    """

    def __init__(self, *, cost_exponent: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cost_exponent = cost_exponent
        self._cost_model: TrialCostModel | None = None

    def _sample(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        # Optuna's hook between drawing candidates and ranking them is ``_compute_acquisition_func``
        # (private; tests/nas/test_cost_aware_tpe.py fails if it stops being called). The cost
        # model for this group of parameters is fitted here, where the search space is known.
        self._cost_model = None
        if self._cost_exponent > 0 and len(study.directions) == 1:
            finished = study._get_trials(
                deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=False
            )
            self._cost_model = TrialCostModel.fit(finished, search_space)
        try:
            return super()._sample(study, trial, search_space)
        finally:
            self._cost_model = None

    def _compute_acquisition_func(self, samples: Any, mpe_below: Any, mpe_above: Any) -> Any:
        acquisition = super()._compute_acquisition_func(samples, mpe_below, mpe_above)
        if self._cost_model is None:
            return acquisition
        return acquisition - self._cost_exponent * self._cost_model.predict_log(samples)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return super().sample_relative(_with_first_direction(study), trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return super().sample_independent(
            _with_first_direction(study), trial, param_name, param_distribution
        )


class _FirstDirectionStudy:
    """A study whose ``direction`` is its first direction; everything else is the study's own."""

    def __init__(self, study: Study) -> None:
        self._gannas_study = study

    @property
    def direction(self) -> StudyDirection:
        return self._gannas_study.directions[0]

    def __getattr__(self, name: str) -> Any:
        if name == "_gannas_study":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._gannas_study, name)


def _with_first_direction(study: Study) -> Study:
    if len(study.directions) == 1:
        return study
    # Duck-typed: TPE only reads attributes of the study it is given.
    return cast(Study, _FirstDirectionStudy(study))


def _random(opts: _SamplerOptions) -> BaseSampler:
    return RandomSampler(seed=opts.seed)


def _nsga2(opts: _SamplerOptions) -> BaseSampler:
    # Optuna's default population of 50 would leave a 40-trial search inside its first, random
    # generation. One generation of ``n_startup_trials`` gives a few real generations.
    return NSGAIISampler(population_size=max(2, opts.n_startup_trials), seed=opts.seed)


def _evolution(opts: _SamplerOptions) -> BaseSampler:
    # Population = the random start; tournament = a quarter of it, AmoebaNet's ratio (25 of 100).
    population = max(2, opts.n_startup_trials)
    return RegularizedEvolutionSampler(
        population_size=population,
        sample_size=max(2, math.ceil(population / 4)),
        seed=opts.seed,
    )


def _grid(opts: _SamplerOptions) -> BaseSampler:
    if isinstance(opts.grid, Sequence) and not isinstance(opts.grid, (str, bytes)):
        return _grid_of_points(opts.grid, opts.seed)
    if not opts.grid:
        raise GannasError(
            "the grid sampler needs a grid: a mapping of parameter name (e.g. generator.depth) "
            f"to a list of values, but got {opts.grid!r}"
        )
    values = {name: _grid_values(name, spec) for name, spec in opts.grid.items()}
    n_points = math.prod(len(v) for v in values.values())
    if n_points > GRID_MAX_POINTS:
        raise GannasError(
            f"the grid has {n_points} points, more than the {GRID_MAX_POINTS} a grid search can "
            "enumerate; use fewer values per parameter or another sampler (tpe, evolution)"
        )
    # The seed shuffles the order in which grid points are visited.
    return GridSampler(values, seed=opts.seed)


def _grid_of_points(points: Sequence[Any], seed: int | None) -> BaseSampler:
    if not points:
        raise GannasError("the grid sampler needs a grid, but got an empty list of points")
    if len(points) > GRID_MAX_POINTS:
        raise GannasError(
            f"the grid has {len(points)} points, more than the {GRID_MAX_POINTS} a grid search "
            "can enumerate; use fewer values per parameter or another sampler (tpe, evolution)"
        )
    for point in points:
        if not isinstance(point, Mapping):
            raise GannasError(
                f"a grid given as a list must list points (mappings of parameter name to value), "
                f"but got {point!r}"
            )
        for name, value in point.items():
            _grid_values(name, [value])  # the same value types as a product grid
    # The seed shuffles the order in which grid points are visited.
    return GridPointsSampler(points, seed=seed)


_SAMPLERS: dict[str, Callable[[_SamplerOptions], BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "nsga2": _nsga2,
    "evolution": _evolution,
    "grid": _grid,
}
SAMPLER_NAMES: tuple[str, ...] = tuple(_SAMPLERS)


def make_sampler(
    name: str,
    *,
    seed: int | None,
    n_objectives: int = 1,
    grid: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    n_startup_trials: int | None = None,
    cost_exponent: float | None = None,
) -> BaseSampler:
    """The Optuna sampler called ``name`` (one of :data:`SAMPLER_NAMES`), set up for short searches.

    * ``tpe``: multivariate, grouped (conditional spaces), constant-liar (parallel workers) TPE;
      MOTPE when ``n_objectives > 1``.
    * ``random``: uniform random search, the baseline every other sampler must beat.
    * ``nsga2``: NSGA-II with a population of ``n_startup_trials``; the natural choice for
      FID-versus-cost Pareto searches.
    * ``evolution``: :class:`~nas.samplers.RegularizedEvolutionSampler` with a population of
      ``n_startup_trials`` and a tournament of a quarter of it; multi-objective studies evolve on
      the first objective (FID).
    * ``grid``: every combination of ``grid``, a mapping of qualified parameter name to a list of
      values (an Optuna distribution or a ``{type: int|categorical|float, ...}`` spec with a
      finite number of values is enumerated). Every searched parameter must be in the grid.
      ``grid`` may instead be a list of points, each a mapping of every parameter a trial
      samples to its value (:func:`search_spaces.space_grid_points`, for conditional spaces):
      each point is visited once (:class:`~nas.samplers.GridPointsSampler`).

    Args:
        name: The sampler's name.
        seed: Seed of the sampler's random draws; ``None`` for a fresh one.
        n_objectives: Number of objectives of the study (FID first).
        grid: The grid, for ``grid`` only.
        n_startup_trials: Random trials before modelling starts (TPE) or population size
            (NSGA-II, evolution); when ``None``, :data:`DEFAULT_TPE_STARTUP_TRIALS` for TPE and
            :data:`DEFAULT_STARTUP_TRIALS` for the others. Ignored by ``random`` and ``grid``.
        cost_exponent: ``tpe`` only, single-objective studies: how strongly a candidate's
            predicted seconds per step lower its rating (0: not at all, 1: improvement per
            second); :data:`DEFAULT_TPE_COST_EXPONENT` when ``None``.

    Raises:
        GannasError: unknown name, bad numbers, or a grid that cannot be enumerated.
    """
    builder = _SAMPLERS.get(name)
    if builder is None:
        raise GannasError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLER_NAMES)}")
    if n_objectives < 1:
        raise GannasError(f"n_objectives must be at least 1, but got {n_objectives}")
    if seed is not None and seed < 0:
        raise GannasError(f"the sampler seed must be a non-negative integer, but got {seed}")
    default = DEFAULT_TPE_STARTUP_TRIALS if name == "tpe" else DEFAULT_STARTUP_TRIALS
    startup = default if n_startup_trials is None else n_startup_trials
    if startup < 1:
        raise GannasError(f"n_startup_trials must be at least 1, but got {startup}")
    cost = DEFAULT_TPE_COST_EXPONENT if cost_exponent is None else float(cost_exponent)
    if not (math.isfinite(cost) and cost >= 0):
        raise GannasError(f"cost_exponent must be a non-negative number, but got {cost_exponent}")
    if grid is not None and name != "grid":
        raise GannasError(f"a grid was given but the sampler is {name!r}; use sampler 'grid'")
    # n_objectives only needs checking: every sampler here handles any number of objectives.
    return builder(
        _SamplerOptions(seed=seed, grid=grid, n_startup_trials=startup, cost_exponent=cost)
    )


# --- grid values ----------------------------------------------------------------------------

_GridScalar = str | int | float | bool | None


def _grid_values(name: str, spec: Any) -> list[_GridScalar]:
    """The list of values of one grid parameter, from a list, a distribution or a YAML spec."""
    if isinstance(spec, Mapping):
        spec = _spec_to_distribution(name, spec)
    if isinstance(spec, BaseDistribution):
        return _enumerate(name, spec)
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise GannasError(
            f"grid parameter {name!r} must be a list of values, but got {spec!r} "
            f"({type(spec).__name__})"
        )
    values = list(spec)
    if not values:
        raise GannasError(f"grid parameter {name!r} has an empty list of values")
    for value in values:
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise GannasError(
                f"grid parameter {name!r} has the value {value!r} ({type(value).__name__}); "
                "grid values must be str, int, float, bool or null"
            )
    return values


def _spec_to_distribution(name: str, spec: Mapping[str, Any]) -> BaseDistribution:
    kind = spec.get("type")
    try:
        if kind == "categorical":
            return CategoricalDistribution(list(spec["choices"]))
        if kind == "int":
            return IntDistribution(
                int(spec["low"]),
                int(spec["high"]),
                log=bool(spec.get("log", False)),
                step=int(spec.get("step", 1)),
            )
        if kind == "float":
            step = spec.get("step")
            return FloatDistribution(
                float(spec["low"]),
                float(spec["high"]),
                log=bool(spec.get("log", False)),
                step=None if step is None else float(step),
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise GannasError(
            f"grid parameter {name!r} has an invalid range {dict(spec)!r}: {exc}"
        ) from exc
    raise GannasError(
        f"grid parameter {name!r} must be a list of values or a spec with type "
        f"categorical, int or float, but got {dict(spec)!r}"
    )


def _enumerate(name: str, distribution: BaseDistribution) -> list[_GridScalar]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        return list(range(distribution.low, distribution.high + 1, distribution.step))
    if isinstance(distribution, FloatDistribution):
        if distribution.step is None:
            raise GannasError(
                f"grid parameter {name!r} is a continuous float range "
                f"[{distribution.low}, {distribution.high}], which a grid cannot enumerate; "
                "give an explicit list of values (or a step) for it"
            )
        n = int(math.floor((distribution.high - distribution.low) / distribution.step + 1e-9)) + 1
        return [round(distribution.low + i * distribution.step, 12) for i in range(n)]
    raise GannasError(f"grid parameter {name!r} has an unsupported distribution {distribution!r}")


# --- pruners --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PrunerOptions:
    min_resource: int
    max_resource: int
    reduction_factor: int


def _median(opts: _PrunerOptions) -> BasePruner:
    # n_startup_trials=3 / n_min_trials=3: a median of one or two noisy FID curves would prune
    #   half the search on the luck of the first trials; three is the least that is a median.
    # n_warmup_steps=min_resource: FID before the first evaluation point says nothing about a GAN
    #   (early training is chaotic), and it is also the first step SH/Hyperband decide at, so all
    #   pruners share one meaning of "earliest pruning step".
    return MedianPruner(
        n_startup_trials=3,
        n_warmup_steps=opts.min_resource,
        interval_steps=1,
        n_min_trials=3,
    )


def _successive_halving(opts: _PrunerOptions) -> BasePruner:
    # Rungs at min_resource * reduction_factor**k generator steps: the first decision comes at the
    # first FID evaluation, and each later one after reduction_factor times more training.
    return SuccessiveHalvingPruner(
        min_resource=opts.min_resource,
        reduction_factor=opts.reduction_factor,
        min_early_stopping_rate=0,
    )


def _hyperband(opts: _PrunerOptions) -> BasePruner:
    # Explicit resources (never "auto"): every Ray worker builds its own pruner, and "auto" would
    # make each guess the budget from whichever trials it happens to see.
    return HyperbandPruner(
        min_resource=opts.min_resource,
        max_resource=hyperband_last_rung(
            opts.min_resource, opts.max_resource, opts.reduction_factor
        ),
        reduction_factor=opts.reduction_factor,
    )


def hyperband_last_rung(min_resource: int, max_resource: int, reduction_factor: int) -> int:
    """The largest resource Hyperband's brackets are spread over: the last rung before the budget.

    Optuna's Hyperband over ``[min_resource, max_resource]`` has one bracket whose first rung is
    ``max_resource`` itself. That bracket can never prune (nothing is saved by stopping a trial
    that has trained its full budget, and :class:`FirstObjectivePruner` keeps every such trial),
    yet Optuna sends it about 30 % of the trials: Hyperband's hedge for when early FIDs say
    nothing. Early FIDs of a GAN do say something (in the setting of
    ``benchmarks/search_efficiency.py`` the FID at half the budget has a Spearman correlation of
    0.83 with the final FID; ``benchmarks/seed_noise.py``), so the brackets are spread over the
    rungs where pruning still saves training: from the first evaluation up to
    ``max_resource / reduction_factor``, which with the controller's evaluation steps
    (``budget / 2**k``) and the default factor 2 is the last evaluation before the budget. Every
    trial then meets at least one pruning decision. Measured in that benchmark (5 seeds, 120 CPU s
    each, the same day): TPE + this Hyperband reached random search's final best FID sooner than
    TPE + the full-range Hyperband in 3 seeds, as soon in one, and in the fifth neither did; the
    median speedup against random was 1.86x and 1.75x in two runs, against 1.49x
    (``benchmarks/results/search_efficiency_5_seeds_2026-12-01.md``, "Findings").
    """
    return max(min_resource, max_resource // reduction_factor)


_PRUNERS: dict[str, Callable[[_PrunerOptions], BasePruner] | None] = {
    "none": None,
    "median": _median,
    "successive_halving": _successive_halving,
    "hyperband": _hyperband,
}
PRUNER_NAMES: tuple[str, ...] = tuple(_PRUNERS)


def make_pruner(
    name: str,
    *,
    min_resource: int,
    max_resource: int,
    reduction_factor: int = 2,
    n_objectives: int = 1,
) -> BasePruner:
    """The pruner called ``name`` (one of :data:`PRUNER_NAMES`), measured in generator steps.

    Steps are the step numbers at which trials report FID (``eval_at`` of the training loop).

    * ``none``: never prune (:class:`~optuna.pruners.NopPruner`).
    * ``median``: prune a trial whose best FID so far is worse than the median of completed trials
      at the same step, from ``min_resource`` on, once three trials have completed.
    * ``successive_halving``: asynchronous SH with rungs at ``min_resource * reduction_factor**k``.
    * ``hyperband``: Hyperband over ``[min_resource, max_resource]``.

    Every pruner except ``none`` comes wrapped in a :class:`FirstObjectivePruner`, which prunes
    multi-objective studies on the first objective and never prunes at ``max_resource`` (a trial
    that reached the full budget has already paid for its training: pruning it then saves nothing
    and throws a finished result away).

    Args:
        name: The pruner's name.
        min_resource: The first step at which a trial may be pruned: the first FID evaluation
            step. Earlier FIDs of a GAN are noise.
        max_resource: The full budget in generator steps (the last evaluation step).
        reduction_factor: Keep the best ``1/reduction_factor`` at each rung. 2 rather than
            SuccessiveHalvingPruner's default 4 (or 3): the controller evaluates FID at
            ``budget / 2**k`` (:func:`nas.settings.eval_steps`), so with 2 every rung
            (``min_resource * 2**k``) falls on an evaluation. With 3 the rungs after the first
            fall between evaluations, so successive halving decides once and Hyperband's second
            bracket never prunes before the budget. A gentler cut also suits GAN FIDs: in
            ``benchmarks/search_efficiency.py`` a quarter of the architectures that ended in the
            best 10% ranked outside the best third at the first evaluation, while nearly all
            ranked in the best half.
        n_objectives: Number of objectives of the study (FID first).

    Raises:
        GannasError: unknown name or inconsistent resources.
    """
    if name not in _PRUNERS:
        raise GannasError(f"unknown pruner {name!r}; expected one of {', '.join(PRUNER_NAMES)}")
    if n_objectives < 1:
        raise GannasError(f"n_objectives must be at least 1, but got {n_objectives}")
    builder = _PRUNERS[name]
    if builder is None:
        return NopPruner()
    if min_resource < 1:
        raise GannasError(
            f"min_resource (the first evaluation step) must be at least 1, but got {min_resource}"
        )
    if max_resource < min_resource:
        raise GannasError(
            f"max_resource (the budget, {max_resource} steps) must be at least min_resource "
            f"(the first evaluation step, {min_resource})"
        )
    if reduction_factor < 2:
        raise GannasError(f"reduction_factor must be at least 2, but got {reduction_factor}")
    inner = builder(
        _PrunerOptions(
            min_resource=min_resource,
            max_resource=max_resource,
            reduction_factor=reduction_factor,
        )
    )
    return FirstObjectivePruner(inner, max_resource=max_resource)


class FirstObjectivePruner(BasePruner):
    """Runs a single-objective Optuna pruner on the first objective of any study.

    For a multi-objective study the inner pruner sees a view of the study whose only direction is
    the first one (FID); its trials, intermediate values and system attributes are the real ones,
    read and written through the real storage (Hyperband's rung bookkeeping included). For a
    single-objective study the view is the study itself.

    Intermediate values must hold the first objective: write them with
    :func:`report_intermediate` (``Trial.report`` refuses multi-objective studies), and ask with
    :func:`should_prune` (``Trial.should_prune`` refuses them too).

    Unlike Optuna's own HyperbandPruner, this wrapper does not make samplers see only the trials
    of one Hyperband bracket: a search of tens of trials cannot afford to split its history.

    Args:
        inner: A single-objective Optuna pruner.
        max_resource: When given, trials are never pruned at or after this step (the budget).
    """

    def __init__(self, inner: BasePruner, *, max_resource: int | None = None) -> None:
        self._inner = inner
        self._max_resource = max_resource

    @property
    def inner(self) -> BasePruner:
        return self._inner

    @property
    def max_resource(self) -> int | None:
        return self._max_resource

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None:
            return False
        if self._max_resource is not None and step >= self._max_resource:
            return False
        return bool(self._inner.prune(_first_objective_view(study), trial))


def should_prune(
    study: Study,
    trial: int | FrozenTrial | Trial,
    pruner: BasePruner | None = None,
) -> bool:
    """Whether ``trial`` should stop now, for single- and multi-objective studies alike.

    Use this instead of ``Trial.should_prune``, which raises ``NotImplementedError`` in
    multi-objective studies.

    Args:
        study: The study the trial belongs to.
        trial: The trial: its storage id (``trial._trial_id``, as a Ray worker holds it, not its
            number), a FrozenTrial or a Trial. Its latest intermediate values are always re-read
            from the storage, so a stale FrozenTrial is fine.
        pruner: The pruner to ask; the study's own when ``None``. A plain single-objective pruner
            is wrapped in :class:`FirstObjectivePruner` for multi-objective studies.
    """
    trial_id = trial if isinstance(trial, int) else trial._trial_id
    latest = study._storage.get_trial(trial_id)
    chosen = study.pruner if pruner is None else pruner
    if len(study.directions) > 1 and not isinstance(chosen, FirstObjectivePruner):
        chosen = FirstObjectivePruner(chosen)
    return bool(chosen.prune(study, latest))


def report_intermediate(
    study: Study, trial: int | FrozenTrial | Trial, step: int, value: float
) -> None:
    """Store ``value`` (the trial's FID) at ``step``, in single- and multi-objective studies.

    ``Trial.report`` raises ``NotImplementedError`` in multi-objective studies; the storage does
    not care, so this writes there directly. As with ``Trial.report``, the first value reported at
    a step is kept and later ones at the same step are ignored.

    Raises:
        ValueError: a negative step (pruners count steps from zero).
    """
    if step < 0:
        raise ValueError(f"step must be non-negative, but got step={step}")
    trial_id = trial if isinstance(trial, int) else trial._trial_id
    if step in study._storage.get_trial(trial_id).intermediate_values:
        return
    study._storage.set_trial_intermediate_value(trial_id, int(step), float(value))


# --- the single-objective view of a multi-objective study -----------------------------------


class _FirstDirectionStorage:
    """Delegates everything to a storage, except that studies report only their first direction.

    Optuna's pruners (and Hyperband's bracket sub-studies, which build a new ``Study`` from the
    storage) read the direction from the storage, so the view must live at the storage level.
    """

    def __init__(self, storage: BaseStorage) -> None:
        self._storage = storage

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._storage.get_study_directions(study_id)[:1]

    def __getattr__(self, name: str) -> Any:
        if name == "_storage":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._storage, name)


def _first_objective_view(study: Study) -> Study:
    if len(study.directions) == 1:
        return study
    storage: Any = _FirstDirectionStorage(study._storage)
    return Study(
        study_name=study.study_name,
        storage=storage,
        sampler=study.sampler,
        pruner=study.pruner,
    )
