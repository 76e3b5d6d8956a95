"""Cost objectives searched together with FID (``--objectives fid,params|macs|latency``)."""

from __future__ import annotations

import time
from typing import Any


def count_macs(generator: Any) -> int:
    """Multiply-accumulates of one forward pass for a single latent vector.

    Counted with forward hooks on convolutions and linear layers, which carry nearly all of a
    generator's arithmetic; activations and normalisations are ignored.
    """
    import torch
    from torch import nn

    total = 0

    def conv_hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.ConvTranspose2d):
            spatial = inputs[0].shape[-2] * inputs[0].shape[-1]
            kernel = module.weight.numel()  # in * out/groups * kh * kw
            total += int(spatial * kernel)
        elif isinstance(module, nn.Conv2d):
            out_spatial = output.shape[-2] * output.shape[-1]
            kernel = module.weight[0].numel()  # in/groups * kh * kw, per output channel
            total += int(out_spatial * kernel * module.out_channels)
        elif isinstance(module, nn.Linear):
            total += int(module.in_features * module.out_features)

    hooks = [
        m.register_forward_hook(conv_hook)
        for m in generator.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    try:
        was_training = generator.training
        generator.eval()
        device = next(generator.parameters()).device
        with torch.no_grad():
            generator(torch.zeros(1, generator.latent_dim, device=device))
        generator.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return total


def measure_latency_ms(generator: Any, *, batch: int = 16, repeats: int = 5) -> float:
    """Median wall time of one forward pass of ``batch`` samples on the generator's device."""
    import torch

    device = next(generator.parameters()).device
    z = torch.randn(batch, generator.latent_dim, device=device)
    generator.eval()
    times = []
    with torch.no_grad():
        generator(z)  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            generator(z)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start) * 1000)
    return sorted(times)[len(times) // 2]


def objective_value(name: str, generator: Any) -> float:
    from search_spaces import count_parameters

    if name == "params":
        return float(count_parameters(generator))
    if name == "macs":
        return float(count_macs(generator))
    if name == "latency":
        return measure_latency_ms(generator)
    raise ValueError(f"unknown objective {name!r}")
