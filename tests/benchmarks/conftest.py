"""Loading a benchmark script as a module, for the tests of its analysis functions."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def load_benchmark() -> Callable[[str], ModuleType]:
    """``load_benchmark("search_efficiency")`` imports ``benchmarks/search_efficiency.py``."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(
            f"{name}_under_test", BENCHMARKS / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        # dataclasses look their module up in sys.modules while the module is being executed
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        return module

    return load
