"""Sampling a space into an :class:`ArchConfig` through a narrow suggester protocol.

``sample_config`` asks a :class:`Suggester` for each active parameter by its section-qualified name,
so an ``optuna.trial.Trial`` drives it in a search and :class:`RandomSuggester` in tests, without
this package importing Optuna.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel, ValidationError

from gannas.errors import SpaceError
from search_spaces._schema import (
    SECTIONS,
    CategoricalParam,
    FixedParam,
    FloatParam,
    IntParam,
    SearchSpace,
    format_problems,
    get_family,
    validation_problems,
)
from search_spaces.config import ArchConfig, TrainingConfig

ChoiceT = TypeVar("ChoiceT")


@runtime_checkable
class Suggester(Protocol):
    """What :func:`sample_config` needs from a trial; ``optuna.trial.Trial`` satisfies it."""

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int: ...

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float: ...


class RandomSuggester:
    """Uniform (or log-uniform) random suggestions from a private ``random.Random(seed)``.

    Bounds are inclusive, as in Optuna. Asking twice for the same name returns the first answer,
    as a trial does; :attr:`params` holds every suggestion by name.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self.params: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[ChoiceT]) -> ChoiceT:
        if name not in self.params:
            self.params[name] = self._rng.choice(list(choices))
        return self.params[name]  # type: ignore[no-any-return]

    def suggest_int(
        self, name: str, low: int, high: int, *, step: int = 1, log: bool = False
    ) -> int:
        if name not in self.params:
            if log:
                # Log-uniform over [low - 0.5, high + 0.5] then rounded, like Optuna, so both
                # ends keep a fair share.
                exponent = self._rng.uniform(math.log(low - 0.5), math.log(high + 0.5))
                self.params[name] = min(max(round(math.exp(exponent)), low), high)
            else:
                self.params[name] = self._rng.randrange(low, high + 1, step)
        return self.params[name]  # type: ignore[no-any-return]

    def suggest_float(
        self, name: str, low: float, high: float, *, step: float | None = None, log: bool = False
    ) -> float:
        if name not in self.params:
            if step is not None:
                count = math.floor((high - low) / step + 1e-9)
                value = low + self._rng.randint(0, count) * step
            elif log:
                value = math.exp(self._rng.uniform(math.log(low), math.log(high)))
            else:
                value = self._rng.uniform(low, high)
            self.params[name] = min(max(value, low), high)
        return self.params[name]  # type: ignore[no-any-return]


def sample_values(space: SearchSpace, suggester: Suggester) -> dict[str, dict[str, Any]]:
    """The sampled value of every active parameter, by section then name (inactive ones absent)."""
    values: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for p in space.parameters():
        if p.param.is_active(values, p.section):
            values[p.section][p.name] = p.param.suggest(suggester, p.qualname)
    return values


def _validate(model: type[BaseModel], data: dict[str, Any], *, section: str, source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = [
            (f"{section}.{path}" if path else section, message)
            for path, message in validation_problems(err)
        ]
        raise SpaceError(format_problems(f"{source}: sampled configuration", problems)) from None


def sample_config(
    space: SearchSpace, suggester: Suggester, *, resolution: int, channels: int
) -> ArchConfig:
    """Sample one configuration: suggested values, family defaults for the rest, all validated."""
    source = f"search space {space.name!r}"
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise SpaceError(f"resolution: expected a positive integer, found {resolution!r}")
    if channels not in (1, 3) or isinstance(channels, bool):
        raise SpaceError(f"channels: expected 1 or 3, found {channels!r}")
    family = get_family(space.family)
    values = sample_values(space, suggester)
    generator = _validate(
        family.generator_params, values["generator"], section="generator", source=source
    )
    discriminator = _validate(
        family.discriminator_params, values["discriminator"], section="discriminator", source=source
    )
    training = _validate(TrainingConfig, values["training"], section="training", source=source)
    try:
        family.check_resolution(generator, discriminator, resolution)
    except ValueError as err:
        raise SpaceError(
            f"{source}: the sampled configuration cannot be built at resolution {resolution}: {err}"
        ) from None
    return ArchConfig(
        family=space.family,
        resolution=resolution,
        channels=1 if channels == 1 else 3,  # checked above; narrows the type to Literal
        generator=generator.model_dump(mode="json"),
        discriminator=discriminator.model_dump(mode="json"),
        training=training,
    )


BUILDABLE_DRAWS = 1000
"""Random configurations :func:`check_buildable` tries (about 0.06 s for the built-in spaces)."""


def check_buildable(
    space: SearchSpace, *, resolution: int, channels: int, draws: int = BUILDABLE_DRAWS
) -> None:
    """Raise :class:`SpaceError` when none of ``draws`` seeded random configurations of
    ``space`` can be built at ``resolution``.

    A fixed value the family cannot build there (``depth: 5`` at 16x16), or a range with no
    value it can, passes validation of the file alone, which knows no resolution, and then fails
    every trial of a search. A space where fewer than one draw in a thousand can be built would
    waste nearly every trial too, so it is refused alike, with the first draw's problem.
    """
    first: SpaceError | None = None
    for seed in range(draws):
        try:
            sample_config(space, RandomSuggester(seed), resolution=resolution, channels=channels)
            return
        except SpaceError as err:
            first = first or err
    raise SpaceError(
        f"none of {draws} random configurations of search space {space.name!r} can be built at "
        f"resolution {resolution}, so every trial would fail; the first: {first}"
    )


def space_grid_points(space: SearchSpace, *, max_points: int | None = None) -> list[dict[str, Any]]:
    """Every valid assignment of the space's searched parameters, by qualified name.

    Unlike the product of :func:`space_distributions`, a conditional parameter appears only in
    the points where its ``when:`` holds, so no two points sample the same configuration.
    ``max_points`` stops the enumeration with :class:`SpaceError` once exceeded (a grid that
    large is no grid search). A continuous float (no ``step``) raises :class:`SpaceError`.
    """
    values_of = space_distributions(space)
    params = list(space.parameters())
    points: list[dict[str, Any]] = []
    sampled: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    point: dict[str, Any] = {}

    def walk(i: int) -> None:
        if max_points is not None and len(points) > max_points:
            return
        if i == len(params):
            points.append(dict(point))
            return
        p = params[i]
        if not p.param.is_active(sampled, p.section):
            walk(i + 1)
            return
        if isinstance(p.param, FixedParam):
            sampled[p.section][p.name] = p.param.value
            walk(i + 1)
        else:
            for value in values_of[p.qualname]:
                sampled[p.section][p.name] = point[p.qualname] = value
                walk(i + 1)
            del point[p.qualname]
        del sampled[p.section][p.name]

    walk(0)
    if max_points is not None and len(points) > max_points:
        raise SpaceError(
            f"search space {space.name!r} has more than {max_points} grid points; use fewer "
            "values per parameter or another sampler (tpe, evolution)"
        )
    return points


def space_distributions(space: SearchSpace) -> dict[str, list[Any]]:
    """Every searched parameter's list of values by qualified name, e.g. for Optuna's GridSampler.

    Fixed parameters are not searched and are left out. A continuous float (no ``step``) has no
    finite list of values, so a space with one raises :class:`SpaceError`.
    """
    grid: dict[str, list[Any]] = {}
    for p in space.parameters():
        param = p.param
        if isinstance(param, FixedParam):
            continue
        if isinstance(param, CategoricalParam):
            grid[p.qualname] = list(param.choices)
        elif isinstance(param, IntParam) or (
            isinstance(param, FloatParam) and param.step is not None
        ):
            grid[p.qualname] = list(param.values())
        else:
            raise SpaceError(
                f"search space {space.name!r}: {p.qualname}: expected a discrete parameter for a "
                "grid, found a continuous float; add `step:` to it"
            )
    return grid
