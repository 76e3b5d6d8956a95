"""Pure builders: an :class:`ArchConfig` in, a freshly initialised ``nn.Module`` out.

No file, global state, Optuna or Ray is touched; the modules' initial weights depend only on
torch's global RNG, so ``torch.manual_seed(s)`` before a build makes it reproducible.
Every way a config can be wrong surfaces as a :class:`~gannas.errors.SpaceError` naming the field,
what was expected and what was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from gannas.errors import SpaceError
from search_spaces.config import ArchConfig, first_problem
from search_spaces.families import FAMILIES, Family

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

__all__ = ["build_discriminator", "build_generator", "count_parameters", "validate_arch"]


def _family(cfg: ArchConfig) -> Family:
    try:
        return FAMILIES[cfg.family]
    except KeyError:
        known = ", ".join(repr(name) for name in sorted(FAMILIES))
        raise SpaceError(f"unknown model family {cfg.family!r}; expected one of {known}") from None


def _validation_message(
    section: str, family: str, model: type[BaseModel], error: ValidationError
) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            parts.append(
                f"{section}.{field} is not a {family} {section} parameter (known: {known})"
            )
        else:
            parts.append(f"{section}.{field}: {item['msg']}, got {item['input']!r}")
    return f"invalid {family} {section} parameters: " + "; ".join(parts)


def _params(
    section: str, family: Family, model: type[BaseModel], values: dict[str, object]
) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as error:
        raise SpaceError(_validation_message(section, family.name, model, error)) from None


def _as_arch(cfg: ArchConfig | Mapping[str, Any]) -> ArchConfig:
    """``cfg``, or a mapping (an ``arch.json`` as read by ``json.load``) validated into one."""
    if isinstance(cfg, ArchConfig):
        return cfg
    if isinstance(cfg, Mapping):
        try:
            return ArchConfig.model_validate(cfg)
        except ValidationError as error:
            raise SpaceError(f"invalid architecture: {first_problem(error)}") from None
    raise SpaceError(
        f"expected an ArchConfig or the mapping of an arch.json, got {type(cfg).__name__}"
    )


def validate_arch(cfg: ArchConfig | Mapping[str, Any]) -> tuple[BaseModel, BaseModel]:
    """The validated generator and discriminator parameters of ``cfg``, without importing torch.

    ``cfg`` may also be the mapping of an ``arch.json``. Raises :class:`SpaceError` for an
    unknown family, an unknown or invalid parameter, or a generator/discriminator that cannot be
    built at ``cfg.resolution``.
    """
    cfg = _as_arch(cfg)
    family = _family(cfg)
    params_g = _params("generator", family, family.generator_params, cfg.generator)
    params_d = _params("discriminator", family, family.discriminator_params, cfg.discriminator)
    try:
        family.check_resolution(params_g, params_d, cfg.resolution)
    except ValueError as error:
        raise SpaceError(
            f"{family.name} models cannot be built at resolution {cfg.resolution}: {error}"
        ) from None
    return params_g, params_d


def build_generator(cfg: ArchConfig | Mapping[str, Any]) -> nn.Module:
    """The generator of ``cfg``: ``z (N, latent_dim) -> (N, channels, R, R)`` in ``[-1, 1]``.

    The module has an int attribute ``latent_dim``. ``cfg`` may also be the mapping of an
    ``arch.json``.
    """
    cfg = _as_arch(cfg)
    params_g, _ = validate_arch(cfg)
    return _family(cfg).build_generator(params_g, cfg.resolution, cfg.channels)


def build_discriminator(cfg: ArchConfig | Mapping[str, Any]) -> nn.Module:
    """The discriminator of ``cfg``: ``x (N, channels, R, R) -> (N,)`` raw scores."""
    cfg = _as_arch(cfg)
    _, params_d = validate_arch(cfg)
    return _family(cfg).build_discriminator(params_d, cfg.resolution, cfg.channels)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter elements (a spectral-normalised weight counts once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
