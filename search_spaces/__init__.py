"""Search spaces: YAML schema and validation, sampling into an ArchConfig, families and builders.

``import search_spaces`` does not import torch: the builders and the family registry (whose modules
define torch layers) are imported on first use through the module ``__getattr__``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from search_spaces._loader import (
    builtin_space_names,
    builtin_space_text,
    load_space,
    resolve_space,
    space_from_text,
)
from search_spaces._sampling import (
    RandomSuggester,
    Suggester,
    check_buildable,
    sample_config,
    sample_values,
    space_distributions,
    space_grid_points,
)
from search_spaces._schema import (
    OBJECTIVE_DIRECTIONS,
    PRUNERS,
    SAMPLERS,
    SECTIONS,
    CategoricalParam,
    FixedParam,
    FloatParam,
    IntParam,
    QualifiedParam,
    SearchSettings,
    SearchSpace,
)
from search_spaces.config import ArchConfig, TrainingConfig

if TYPE_CHECKING:  # pragma: no cover
    from search_spaces.builders import build_discriminator, build_generator, count_parameters
    from search_spaces.families import FAMILIES, Family, register_family

_LAZY = {
    "build_generator": "search_spaces.builders",
    "build_discriminator": "search_spaces.builders",
    "count_parameters": "search_spaces.builders",
    "FAMILIES": "search_spaces.families",
    "Family": "search_spaces.families",
    "register_family": "search_spaces.families",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this hook
    return value


__all__ = [
    "SearchSpace",
    "SearchSettings",
    "QualifiedParam",
    "CategoricalParam",
    "IntParam",
    "FloatParam",
    "FixedParam",
    "SECTIONS",
    "SAMPLERS",
    "PRUNERS",
    "OBJECTIVE_DIRECTIONS",
    "load_space",
    "resolve_space",
    "space_from_text",
    "builtin_space_names",
    "builtin_space_text",
    "sample_config",
    "sample_values",
    "space_distributions",
    "check_buildable",
    "space_grid_points",
    "Suggester",
    "RandomSuggester",
    "ArchConfig",
    "TrainingConfig",
    "build_generator",
    "build_discriminator",
    "count_parameters",
    "FAMILIES",
    "Family",
    "register_family",
]
