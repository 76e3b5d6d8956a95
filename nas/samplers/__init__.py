"""Custom Optuna samplers for architecture search."""

from __future__ import annotations

from nas.samplers.evolution import RegularizedEvolutionSampler
from nas.samplers.grid_points import GridPointsSampler

__all__ = ["GridPointsSampler", "RegularizedEvolutionSampler"]
