"""An exponential moving average of a model's weights, evaluated instead of the live generator.

After each update, every floating-point parameter of the copy is
``ema = decay * ema + (1 - decay) * live``. Buffers are copied from the live model rather than
averaged: BatchNorm running statistics are already moving averages, integer buffers (e.g.
``num_batches_tracked``) cannot be averaged, and spectral-norm power-iteration vectors must match
the current weights' singular directions. The copy starts equal to the live model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Holds :attr:`module`, a frozen copy of ``model`` whose weights track ``model``'s average."""

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model)
        self.module.requires_grad_(False)
        self.module.eval()

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average one step towards ``model``'s current weights."""
        ema_params = dict(self.module.named_parameters())
        for name, live in model.named_parameters():
            averaged = ema_params[name]
            if averaged.dtype.is_floating_point:
                averaged.lerp_(live.detach(), 1.0 - self.decay)
            else:
                averaged.copy_(live.detach())
        ema_buffers = dict(self.module.named_buffers())
        for name, buffer in model.named_buffers():
            ema_buffers[name].copy_(buffer)
