"""Settings for the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # The suite builds tiny models. On a 2-core machine, torch's intra-op threads cost far more
    # than they save on such small ops (measured 10-20x slower with 2 threads while other
    # processes share the cores), so every test runs torch on one thread unless it sets its own.
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def set_umask() -> Iterator[Callable[[int], None]]:
    """``set_umask(0o027)`` sets the process umask for the rest of the test (restored afterwards),
    so checks of file modes do not depend on the umask the suite was started with. Child processes
    started by the test inherit it."""
    original = os.umask(0o022)
    os.umask(original)

    def set_to(mask: int) -> None:
        os.umask(mask)

    yield set_to
    os.umask(original)
