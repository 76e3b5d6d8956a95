"""Refusing nonsense benchmark settings before anything runs or is written.

A benchmark run writes the results files that the README quotes; a setting such as a negative
time budget once ran, printed a meaningless number and overwrote them. Every script checks its
numbers with :func:`refuse_below` before it starts, and exits with argparse's message (exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Sequence


def refuse_below(
    parser: argparse.ArgumentParser,
    checks: Iterable[tuple[str, float | Sequence[float] | None, float]],
) -> None:
    """``checks``: (option, value or values given, least allowed). ``None`` (not given) passes;
    a value below the least, or one that is not a finite number, is refused by name."""
    for option, given, least in checks:
        if given is None:
            continue
        values = given if isinstance(given, (list, tuple)) else [given]
        if not values:
            parser.error(f"{option} needs at least one value")
        for value in values:
            if not (math.isfinite(value) and value >= least):
                parser.error(f"{option} must be at least {least:g}, got {value:g}")


def refuse_unknown(
    parser: argparse.ArgumentParser, option: str, given: Sequence[str], known: Sequence[str]
) -> None:
    """Refuse any of ``given`` that is not in ``known``, naming both."""
    unknown = [name for name in given if name not in known]
    if unknown or not given:
        parser.error(f"{option} must be among {', '.join(known)}; got {', '.join(given) or 'none'}")
