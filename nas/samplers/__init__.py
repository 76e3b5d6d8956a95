"""Custom Optuna samplers for architecture search."""

from __future__ import annotations

from nas.samplers.evolution import RegularizedEvolutionSampler

__all__ = ["RegularizedEvolutionSampler"]
