"""CLI commands for the later stages of a search (retrain, Pareto front). Registered on import."""

from __future__ import annotations
