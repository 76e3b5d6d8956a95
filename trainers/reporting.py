"""The narrow channel through which a training run reports evaluations and learns it should stop.

Adapters for Optuna trials or Ray live in ``nas/``; ``trainers`` only knows this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

__all__ = ["NullReporter", "RecordingReporter", "Reporter"]


@runtime_checkable
class Reporter(Protocol):
    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """Receive the metrics evaluated after ``step`` generator steps."""
        ...

    def should_stop(self) -> bool:
        """Asked after each report: ``True`` ends training early (a pruned trial)."""
        ...


class NullReporter:
    """Discards reports and never stops training."""

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def should_stop(self) -> bool:
        return False


class RecordingReporter:
    """Keeps every report in :attr:`reports`; stops once ``stop_after(step, metrics)`` is true for
    the latest report (never, without a predicate)."""

    def __init__(
        self, stop_after: Callable[[int, Mapping[str, float]], bool] | None = None
    ) -> None:
        self.reports: list[tuple[int, dict[str, float]]] = []
        self._stop_after = stop_after

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.reports.append((step, dict(metrics)))

    def should_stop(self) -> bool:
        if self._stop_after is None or not self.reports:
            return False
        step, metrics = self.reports[-1]
        return bool(self._stop_after(step, metrics))
