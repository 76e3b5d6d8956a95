"""Settings for the whole suite."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    # The suite builds tiny models. On a 2-core machine, torch's intra-op threads cost far more
    # than they save on such small ops (measured 10-20x slower with 2 threads while other
    # processes share the cores), so every test runs torch on one thread unless it sets its own.
    import torch

    torch.set_num_threads(1)
